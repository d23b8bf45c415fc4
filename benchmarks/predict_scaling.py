"""``simplenet-edu predict`` on a folder of 200 and of 2,000 images: does its memory stay flat, and its
speed per image steady, as the folder grows?

    python -m benchmarks.predict_scaling [--counts 200 2000] [--repeats 1] [--smoke] [--output results/predict_scaling]

Trains a small model on the demo set (the default configuration's 256 px input, few steps: speed and
memory do not depend on how well the heads are trained), exports it to ONNX, and fills folders with
links to the demo's test images (so the disk holds each picture once). Each run is the real command,
``main(["predict", ...])`` with heat maps at each image's own size, in a **fresh process** whose peak
memory is its high-water mark (``VmHWM``); runs alternate between the counts (200, 2,000, 200, ...) so
that load from elsewhere slows both alike. For the torch checkpoint and the ONNX export:

- peak memory at each count, and the ratio of the largest count's to the smallest's (``predict``
  streams: a batch of 8 images in memory, each result written as it comes; target: within 1.2x);
- images per second, over the whole command (model loading included) and at the margin, from the
  difference between the two counts (what one more image costs).

Why ratios, and why fresh processes: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, command, made_by, write_md_json
from simplenet_edu import SimpleNet, SimpleNetConfig
from simplenet_edu import data as data_lib

# One predict run in this interpreter: seconds of the command, its exit code, peak memory in MB.
WORKER = """\
import sys, time
start = time.perf_counter()
from simplenet_edu.apps.cli import main
code = main(sys.argv[1:])
seconds = time.perf_counter() - start
hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1]
print(code, seconds, int(hwm) / 1024)
"""


def predict_once(model_arg: str, model: Path, images: Path, out_dir: Path) -> dict:
    """``simplenet-edu predict`` in a fresh interpreter: ``{"seconds", "peak_rss_mb"}``."""
    argv = ["--quiet", "predict", model_arg, str(model), "--images", str(images), "--output-dir", str(out_dir)]
    if model_arg == "--checkpoint":
        argv += ["--device", "cpu"]
    done = subprocess.run([sys.executable, "-c", WORKER, *argv], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0 or not done.stdout.split():
        raise RuntimeError(f"predict failed: {done.stderr[-2000:]}")
    code, seconds, peak = done.stdout.split()[-3:]
    if code != "0":
        raise RuntimeError(f"predict exited with {code}: {done.stderr[-2000:]}")
    return {"seconds": float(seconds), "peak_rss_mb": float(peak)}


def fill(folder: Path, sources: list[Path], n: int) -> Path:
    """``folder`` with ``n`` images: links to ``sources`` in turn (hard links where the file system
    allows, so that the pictures are stored once)."""
    folder.mkdir(parents=True)
    for i in range(n):
        source, target = sources[i % len(sources)], folder / f"{i:05d}.png"
        try:
            os.link(source, target)
        except OSError:
            target.symlink_to(source.resolve())
    return folder


def measure(models: dict[str, tuple[str, Path]], folders: dict[int, Path], scratch: Path, repeats: int) -> dict:
    """Per model file and count: the median seconds and the largest peak memory over ``repeats`` runs,
    taken in turns."""
    runs = {kind: {n: [] for n in folders} for kind in models}
    for repeat in range(repeats):
        for kind, (model_arg, path) in models.items():
            for n, folder in folders.items():
                result = predict_once(model_arg, path, folder, scratch / f"out-{kind}-{n}-{repeat}")
                runs[kind][n].append(result)
                print(f"{kind}, {n} images: {result['seconds']:.1f} s, peak {result['peak_rss_mb']:.0f} MB",
                      file=sys.stderr, flush=True)
    return summarise(runs)


def summarise(runs: dict[str, dict[int, list[dict]]]) -> dict:
    """``{model file: {count: [{"seconds", "peak_rss_mb"}, ...]}}`` -> per model file its rows (median
    seconds, largest peak, images per second), the peak ratio of the largest count to the smallest,
    and the marginal images per second between them."""
    table = {}
    for kind, by_count in runs.items():
        rows = {n: {"n_images": n, "seconds": statistics.median(r["seconds"] for r in results),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in results)} for n, results in by_count.items()}
        for row in rows.values():
            row["images_per_second"] = row["n_images"] / row["seconds"]
        small, large = rows[min(rows)], rows[max(rows)]
        extra = large["seconds"] - small["seconds"]
        table[kind] = {
            "rows": list(rows.values()),
            "peak_rss_ratio": large["peak_rss_mb"] / small["peak_rss_mb"],
            "marginal_images_per_second": (large["n_images"] - small["n_images"]) / extra if extra > 0 else None,
        }
    return table


def to_markdown(results: dict) -> str:
    counts = [row["n_images"] for row in next(iter(results["models"].values()))["rows"]]
    lines = [f"# predict on {' and '.join(f'{n:,}' for n in counts)} images", "",
             made_by(results["command"]) + ".", "",
             f"Model: {results['config']['backbone']}, {results['config']['image_size']} px input, "
             f"{results['threads']} torch threads, heat maps (overlays) at each image's own size "
             f"({results['image_size']} px demo images). Each run: the whole `simplenet-edu predict` command in a "
             f"fresh process (model loading included); peak memory: its high-water mark (VmHWM), the largest "
             f"over {results['repeats']} run(s); seconds: the median. Marginal: images per second from the "
             "difference between the two counts (what one more image costs).", "",
             "| model file | images | seconds | images/s | peak MB | peak MB, largest / smallest count | "
             "marginal images/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, table in results["models"].items():
        for i, row in enumerate(table["rows"]):
            ratio = f"**{table['peak_rss_ratio']:.3f}**" if i == len(table["rows"]) - 1 else ""
            marginal = table["marginal_images_per_second"]
            marginal = "" if i != len(table["rows"]) - 1 or marginal is None else f"{marginal:.1f}"
            lines.append(f"| {kind} | {row['n_images']:,} | {row['seconds']:.1f} | {row['images_per_second']:.1f} | "
                         f"{row['peak_rss_mb']:.0f} | {ratio} | {marginal} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[200, 2000], help="folder sizes (default 200 2000)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per model file and count, in turns (default 1)")
    parser.add_argument("--models", nargs="+", choices=["torch", "onnx"], default=["torch", "onnx"],
                        help="which model files to run (default both)")
    parser.add_argument("--smoke", action="store_true", help="tiny (64 px, 8 and 16 images): checks that it runs")
    parser.add_argument("--output", type=Path, help="writes OUTPUT.md and OUTPUT.json (e.g. results/predict_scaling)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "benchmark", help="where the demo set is made")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    config = SimpleNetConfig.quick(image_size=64, steps=5) if args.smoke else SimpleNetConfig(steps=50)
    config = dataclasses.replace(config, device="cpu")
    counts = [8, 16] if args.smoke else sorted(set(args.counts))
    size = config.image_size
    root = data_lib.make_demo_dataset(args.data_dir / f"predict_scaling_{size}", "brick", image_size=size,
                                      n_train=12, n_test_good=4, n_test_per_defect=2)
    with tempfile.TemporaryDirectory(prefix="predict-scaling-") as scratch:
        scratch = Path(scratch)
        model = SimpleNet(config).fit(root, progress=False)
        models = {}
        if "torch" in args.models:
            models["torch"] = ("--checkpoint", model.save(scratch / "model.pt"))
        if "onnx" in args.models:
            from simplenet_edu.deploy.export import export_onnx

            models["onnx"] = ("--model", export_onnx(model, scratch / "model.onnx").path)
        sources = sorted((root / "test").glob("*/*.png"))
        folders = {n: fill(scratch / f"images-{n}", sources, n) for n in counts}
        measured = measure(models, folders, scratch, args.repeats)

    import torch

    results = {"command": command("predict_scaling", argv), "config": config.to_dict(), "image_size": size,
               "counts": counts, "repeats": args.repeats, "threads": torch.get_num_threads(),
               "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
               "models": measured}
    text = to_markdown(results)
    print(text)
    if args.output:
        write_md_json(args.output, text, results)
        print(f"results written to {args.output.with_suffix('.md')} and {args.output.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

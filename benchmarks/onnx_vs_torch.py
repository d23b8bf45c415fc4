"""ONNX Runtime against torch: inference time per image on the CPU, as a ratio, in one run.

    python -m benchmarks.onnx_vs_torch [--quick | --smoke] [--output FILE.json]

Trains a small model on the demo set (the default configuration's 256 px input, few steps: speed does
not depend on how well the heads are trained), exports it (``simplenet_edu.deploy.export.export_onnx``), then
times, interleaved (torch, onnxruntime, torch, ...) and reduced to medians:

- ``predict`` on a batch of 8 test images and on one image: ``SimpleNet.predict`` (the folded scorer,
  torch's fastest path here) against ``OnnxModel.predict`` (onnxruntime, CPU), both on one thread and
  both on torch's default thread count; the figure is ``onnxruntime / torch`` time per image (below
  1: onnxruntime is faster);
- a cold start: ``simplenet-edu predict`` on a folder of 8 images in a fresh process, ``--model
  model.onnx`` against ``--checkpoint model.pt`` (what a line PC pays per run: imports, loading, 8
  images, the PNGs and CSV), with each process's peak memory (``VmHWM``) and whether it imported torch.

Why ratios, and why interleaved: benchmarks/README.md.
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
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT, command, interleaved_medians, write_json
from simplenet_edu import SimpleNet, SimpleNetConfig
from simplenet_edu import data as data_lib
from simplenet_edu.deploy.export import export_onnx
from simplenet_edu.deploy.runtime import OnnxModel


# Peak memory from /proc/self/status VmHWM: ru_maxrss would keep the parent's high-water mark from the fork.
COLD = """\
import sys, time
start = time.perf_counter()
from simplenet_edu.apps.cli import main
code = main(sys.argv[1:])
seconds = time.perf_counter() - start
hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1]
print(code, seconds, int(hwm) / 1024, int('torch' in sys.modules))
"""


def cold_start(argv: list[str]) -> tuple[float, float, bool]:
    """Seconds and peak MB of ``simplenet-edu ARGV`` in a fresh interpreter, and whether it imported torch."""
    done = subprocess.run([sys.executable, "-c", COLD, "--quiet", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    code, seconds, peak_mb, torch_loaded = done.stdout.split()[-4:]
    assert code == "0", done.stdout
    return float(seconds), float(peak_mb), torch_loaded == "1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="SimpleNetConfig.quick(): 128 px")
    size.add_argument("--smoke", action="store_true", help="tiny: checks that the script runs")
    parser.add_argument("--repeats", type=int, help="timings per side (default 15; --smoke 2)")
    parser.add_argument("--output", help="JSON file for the results")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "benchmark"), help="where the demo set is made")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    if args.smoke:
        config, name, repeats, cold_repeats = SimpleNetConfig.quick(image_size=64, steps=5), "smoke", 2, 1
    elif args.quick:
        config, name, repeats, cold_repeats = SimpleNetConfig.quick(steps=50), "quick", 15, 3
    else:
        config, name, repeats, cold_repeats = SimpleNetConfig(steps=50), "default", 15, 3
    config = dataclasses.replace(config, device="cpu")
    repeats = args.repeats or repeats
    side = config.image_size
    root = data_lib.make_demo_dataset(Path(args.data_dir) / f"onnx_{name}", "brick", image_size=side,
                                      n_train=12, n_test_good=4, n_test_per_defect=2)
    threads = torch.get_num_threads()
    print(f"# ONNX Runtime vs torch, CPU ({name}: {side} px, {config.backbone}, {threads} threads)\n", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = SimpleNet(config).fit(root, progress=False)
        checkpoint = model.save(scratch / "model.pt")
        paths = sorted((root / "test").glob("*/*.png"))[:8]
        images = torch.stack([data_lib.load_image(p, model.resize_shape, model.image_shape) for p in paths])
        start = time.perf_counter()
        report = export_onnx(model, scratch / "model.onnx", images=images)
        export_seconds = time.perf_counter() - start
        onnx_mb = report.path.stat().st_size / 1e6
        array = images.numpy()

        # At one thread and at torch's default: on a shared machine, several threads per process can
        # lose more to other processes' load than one does, and not equally for both runtimes.
        rows = {}
        for n_threads in sorted({1, threads}):
            torch.set_num_threads(n_threads)
            onnx_model = OnnxModel(report.path, threads=n_threads)
            for batch in (8, 1):
                timed = interleaved_medians({
                    "torch": lambda: model.predict(images[:batch]),
                    "onnxruntime": lambda: onnx_model.predict(array[:batch]),
                }, repeats, warmup=True)
                rows[f"threads_{n_threads}_batch_{batch}"] = {
                    "threads": n_threads, "batch": batch,
                    "ms_per_image_torch": 1000 * timed["torch"] / batch,
                    "ms_per_image_onnxruntime": 1000 * timed["onnxruntime"] / batch,
                    "onnxruntime_over_torch": timed["onnxruntime"] / timed["torch"],
                }
        torch.set_num_threads(threads)

        folder = scratch / "images"
        folder.mkdir()
        for path in paths:
            (folder / f"{path.parent.name}_{path.name}").write_bytes(path.read_bytes())
        runs = {"onnx": [], "torch": []}
        for _ in range(cold_repeats):
            runs["onnx"].append(cold_start(["predict", "--model", str(report.path), "--images", str(folder),
                                            "--output-dir", str(scratch / "out_onnx")]))
            runs["torch"].append(cold_start(["predict", "--checkpoint", str(checkpoint), "--images", str(folder),
                                             "--output-dir", str(scratch / "out_torch"), "--device", "cpu"]))
        cold = {kind: {"seconds": statistics.median(r[0] for r in values),
                       "peak_rss_mb": statistics.median(r[1] for r in values),
                       "imports_torch": any(r[2] for r in values)} for kind, values in runs.items()}
        cold["onnx_over_torch_seconds"] = cold["onnx"]["seconds"] / cold["torch"]["seconds"]

    results = {
        "command": command("onnx_vs_torch", argv),
        "setting": name, "config": config.to_dict(), "threads": threads, "repeats": repeats,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__, "cpus": os.cpu_count()},
        "export_seconds": export_seconds, "export_max_score_difference": report.max_score_difference,
        "export_max_map_difference": report.max_map_difference, "onnx_mb": onnx_mb,
        "predict": rows, "cold_start_8_images": cold,
    }
    print("| figure | torch | onnxruntime | onnxruntime / torch |")
    print("|---|---|---|---|")
    for row in rows.values():
        print(f"| predict, batch {row['batch']}, {row['threads']} thread{'s' * (row['threads'] > 1)}: ms per "
              f"image | {row['ms_per_image_torch']:.1f} | {row['ms_per_image_onnxruntime']:.1f} | "
              f"**{row['onnxruntime_over_torch']:.2f}** |")
    print(f"| `simplenet-edu predict`, 8 images, fresh process: s | {cold['torch']['seconds']:.2f} | "
          f"{cold['onnx']['seconds']:.2f} | **{cold['onnx_over_torch_seconds']:.2f}** |")
    print(f"| ... its peak memory: MB | {cold['torch']['peak_rss_mb']:.0f} | {cold['onnx']['peak_rss_mb']:.0f} | "
          f"{cold['onnx']['peak_rss_mb'] / cold['torch']['peak_rss_mb']:.2f} |")
    print(f"| ... imports torch | {cold['torch']['imports_torch']} | {cold['onnx']['imports_torch']} | |")
    print(f"\nexport: {export_seconds:.1f} s; onnxruntime - torch at most {report.max_score_difference:.2g} on "
          f"scores, {report.max_map_difference:.2g} on maps ({len(images)} images)")
    if args.output:
        write_json(Path(args.output), results)
        print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

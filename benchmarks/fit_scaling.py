"""Does ``fit`` stay within bounded memory on thousands of training images? Peak memory and seconds of
``SimpleNet(SimpleNetConfig()).fit(folder)`` at 200, 1,000 and 5,000 synthetic training images.

Each fit runs in a fresh process (peak memory is a process's high-water mark, ``VmHWM``), on a folder of
seeded synthetic images (crops of scikit-image's CC0 brick texture, flipped and lightly noised, 256 px
JPEGs) written once under the work folder. The figures are ratios: peak memory at 5,000 images over
that at 1,000 (target: at most 1.5), and seconds per image. ``--reference DIR`` fits with the code of
another checkout too (its ``simplenet_edu/``), at ``--reference-counts`` (default 200 and 1,000: that
code keeps every image and every patch in memory, so 5,000 would need about 12 GB)::

    python -m benchmarks.fit_scaling --output results/fit_scaling
    python -m benchmarks.fit_scaling --reference /tmp/before --output results/fit_scaling
    python -m benchmarks.fit_scaling --counts 20 60 --image-size 64 --smoke      # seconds: checks that it runs

Writes ``OUTPUT.md`` and ``OUTPUT.json``. Timings on a shared machine are noisy; the memory figures are not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, command, made_by, write_md_json

WORKER = r"""
import json, resource, sys, time
from pathlib import Path
import torch
from simplenet_edu import SimpleNet, SimpleNetConfig
folder, image_size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
overrides = {} if image_size == 256 else {"image_size": image_size}
if steps:
    overrides["steps"] = steps
model = SimpleNet(SimpleNetConfig(device="cpu", **overrides))

def rss_mb(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) / 1024

before = rss_mb("VmRSS")
start = time.perf_counter()
model.fit(folder, progress=False)
seconds = time.perf_counter() - start
calibration = getattr(model, "calibration", None) or {}
print(json.dumps({"seconds_fit": seconds, "rss_before_mb": before, "peak_rss_mb": rss_mb("VmHWM"),
                  "n_train": model.n_train, "n_normal": calibration.get("n_normal", model.n_holdout),
                  **{k: model.timings.get(k) for k in ("seconds_features", "seconds_train", "seconds_folds")}}))
"""


def synthetic_folder(root: Path, count: int, size: int = 256, seed: int = 0) -> Path:
    """``root/train/good`` with ``count`` seeded synthetic images (written once; reused when complete)."""
    from PIL import Image
    from skimage import data as textures

    folder = root / f"synthetic-{count}-{size}" / "train" / "good"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder.parents[1]
    folder.mkdir(parents=True, exist_ok=True)
    texture = textures.brick()                               # 512 x 512 grayscale, CC0
    texture = np.stack([texture] * 3, axis=-1).astype(np.float32)
    rng = np.random.default_rng(seed)
    side = int(size * 1.5)
    for i in range(count):
        top, left = rng.integers(0, texture.shape[0] - side + 1), rng.integers(0, texture.shape[1] - side + 1)
        crop = texture[top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.clip(crop * rng.uniform(0.9, 1.1) + rng.normal(0, 4, crop.shape), 0, 255).astype(np.uint8)
        Image.fromarray(crop).resize((size, size), Image.BILINEAR).save(folder / f"{i:05d}.jpg", quality=92)
    return folder.parents[1]


def run_fit(folder: Path, image_size: int, steps: int, tree: Path | None = None) -> dict:
    """One fit in a fresh process (``tree``: the code of another checkout); its figures."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    if tree is not None:
        env["PYTHONPATH"] = str(Path(tree).resolve())
    done = subprocess.run([sys.executable, "-c", WORKER, str(folder), str(image_size), str(steps)],
                          capture_output=True, text=True, env=env, cwd=tree or ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"fit on {folder} failed: {done.stderr.strip().splitlines()[-3:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict], reference_rows: list[dict], ratio_pair: tuple[int, int] | None) -> str:
    lines = ["| code | training images | fit s | ms per image | peak RSS MB | added by fit MB | threshold images |",
             "|---|---|---|---|---|---|---|"]
    for label, table in (("this", rows), ("reference", reference_rows)):
        for r in table:
            lines.append(f"| {label} | {r['count']:,} | {r['seconds_fit']:.1f} | {1000 * r['seconds_fit'] / r['count']:.1f} | "
                         f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['rss_before_mb']:.0f} | {r['n_normal']} |")
    text = "\n".join(lines) + "\n"
    if ratio_pair:
        by = {r["count"]: r for r in rows}
        small, large = ratio_pair
        text += (f"\nPeak memory at {large:,} images / at {small:,}: **{by[large]['peak_rss_mb'] / by[small]['peak_rss_mb']:.2f}x** "
                 f"(target: at most 1.5x); seconds: {by[large]['seconds_fit'] / by[small]['seconds_fit']:.2f}x for "
                 f"{large / small:.0f}x the images.\n")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--reference", type=Path, metavar="DIR", help="a checkout of other code to fit with too")
    parser.add_argument("--reference-counts", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=0, help="optimiser steps (default: the configuration's)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "simplenet-fit-scaling",
                        help="where the synthetic folders are written (and kept for a rerun)")
    parser.add_argument("--smoke", action="store_true", help="tiny: checks that the script runs")
    parser.add_argument("--output", type=Path, help="OUTPUT.md and .json (default results/fit_scaling; "
                                                    "--smoke: in the work folder)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.smoke:
        args.counts, args.reference_counts, args.image_size, args.steps = [20, 60], [20], 64, 5
    args.output = args.output or (args.work / "smoke" if args.smoke else ROOT / "results" / "fit_scaling")

    rows, reference_rows = [], []
    for count in args.counts:
        folder = synthetic_folder(args.work, count, args.image_size)
        rows.append({"count": count, **run_fit(folder, args.image_size, args.steps)})
        print(f"fit_scaling: {count} images: {rows[-1]['seconds_fit']:.1f} s, peak {rows[-1]['peak_rss_mb']:.0f} MB",
              file=sys.stderr, flush=True)
        if args.reference and count in args.reference_counts:
            reference_rows.append({"count": count, **run_fit(folder, args.image_size, args.steps, args.reference)})
            print(f"fit_scaling: reference, {count} images: {reference_rows[-1]['seconds_fit']:.1f} s, peak "
                  f"{reference_rows[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    pair = (sorted(args.counts)[-2], sorted(args.counts)[-1]) if len(args.counts) >= 2 else None
    recorded = command("fit_scaling", argv)
    table = markdown(rows, reference_rows, pair)
    header = (f"# `fit` at thousands of training images\n\n{made_by(recorded)}: each fit in a fresh process, "
              f"{args.image_size} px synthetic images, the CPU default"
              + (f" with {args.steps} steps" if args.steps else "") + ". Peak RSS includes the ~700-900 MB of "
              "importing torch, timm and the backbone ('added by fit': the peak less the process's memory just "
              "before `fit`).\n\n")
    print(table)
    ratios = {}
    if pair:
        by = {r["count"]: r for r in rows}
        ratios = {"peak_rss_ratio": by[pair[1]]["peak_rss_mb"] / by[pair[0]]["peak_rss_mb"],
                  "seconds_ratio": by[pair[1]]["seconds_fit"] / by[pair[0]]["seconds_fit"], "counts": list(pair)}
    write_md_json(args.output, header + table, {"command": recorded, "image_size": args.image_size, "steps": args.steps,
                                                "rows": rows, "reference_rows": reference_rows, **ratios})


if __name__ == "__main__":
    main()

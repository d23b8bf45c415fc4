"""Elongated parts: what does keeping the aspect ratio gain over squashing to a square, and from which ratio?

No set of the development suite is elongated (cookie, the longest, is 1.33 : 1), so this script makes
long parts from ``metal_plate`` (512 x 512) at run time, in a temporary folder outside the project:
horizontal strips of 512 x round(512 / a) pixels for each aspect ``a = width / height``:

- train/good and test/good: one strip per image, at a vertical offset drawn with seed 0;
- each defect image: the strip centred on its mask's centroid (clamped to the image), the mask cropped
  alike, so that the defect lies inside; a strip whose cropped mask is empty is dropped (counted).

Each strip set is run with the CPU default squashed to 256 x 256 (``keep_aspect=False``) and with its
short side at 256 and the aspect kept (``keep_aspect=True``), every seed, on cached features as
``benchmarks.sweep`` runs a recipe (last step, the library's metrics)::

    python -m benchmarks.elongated --ratios 1.5 2 3 4 --seeds 0 1 2 --output results/elongated_strips
    python -m benchmarks.elongated --render results/elongated_strips.json     # the table again, no training

writes ``.md`` and ``.json``. Backbone, aggregation and inference grow with the pixel count, which the
table gives as the cost (timings on a shared machine are too noisy for a per-image figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import SUITE_DIR, SetFeatures, cell, command, made_by, seeds_note, spread, write_md_json
from benchmarks.sweep import run_one
from simplenet_edu.simplenet.config import SimpleNetConfig
from simplenet_edu.stages.backbones import load_backbone
from simplenet_edu.utils.atomic import write_text


def make_strips(source: Path, target: Path, aspect: float, seed: int = 0) -> dict:
    """Strips of aspect ``aspect`` (width / height) cut from the MVTec-layout set ``source`` into
    ``target`` (see the module's docstring): ``{"defect_strips": kept, "dropped": n}``."""
    rng = np.random.default_rng(seed)
    kept = dropped = 0
    for split in ("train", "test"):
        (target / split / "good").mkdir(parents=True, exist_ok=True)
        for path in sorted((source / split / "good").iterdir()):
            image = Image.open(path)
            width, height = image.size
            strip = round(width / aspect)
            top = int(rng.integers(0, height - strip + 1))
            image.crop((0, top, width, top + strip)).save(target / split / "good" / f"{path.stem}.png")
    for defect in sorted(d.name for d in (source / "test").iterdir() if d.name != "good"):
        (target / "test" / defect).mkdir(parents=True, exist_ok=True)
        (target / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
        for path in sorted((source / "test" / defect).iterdir()):
            image = Image.open(path)
            mask_path = source / "ground_truth" / defect / f"{path.stem}_mask.png"
            mask = np.asarray(Image.open(mask_path).convert("L")) > 127
            width, height = image.size
            strip = round(width / aspect)
            rows = np.nonzero(mask.any(axis=1))[0]
            centre = int(rows.mean()) if len(rows) else height // 2
            top = int(np.clip(centre - strip // 2, 0, height - strip))
            cropped = mask[top:top + strip]
            if not cropped.any():
                dropped += 1
                continue
            kept += 1
            image.crop((0, top, width, top + strip)).save(target / "test" / defect / f"{path.stem}.png")
            Image.fromarray((cropped * 255).astype(np.uint8)).save(target / "ground_truth" / defect / f"{path.stem}_mask.png")
    return {"defect_strips": kept, "dropped": dropped}


def markdown(records: list[dict], seeds: list[int], recorded: str) -> str:
    lines = [f"# Elongated parts: squashed against aspect kept (metal_plate strips)\n",
             f"{made_by(recorded)}. Strips of metal_plate (512 px wide, 512 / a high) made at run time; "
             "the CPU default (its heads trained on every training strip), last step.\n",
             seeds_note(seeds) + "\n",
             "| aspect (w / h) | squashed: input | image AUROC | AUPRO | aspect kept: input | image AUROC | AUPRO "
             "| AUPRO gain | pixels (kept / squashed) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for record in records:
        squash, keep = record["squash"], record["keep"]
        gain = keep["aupro"][0] - squash["aupro"][0]
        pixels = (keep["size"][0] * keep["size"][1]) / (squash["size"][0] * squash["size"][1])
        lines.append(f"| {record['aspect']:g} | {squash['size'][0]} x {squash['size'][1]} | {cell(squash['image_auroc'])} "
                     f"| {cell(squash['aupro'])} | {keep['size'][0]} x {keep['size'][1]} | {cell(keep['image_auroc'])} "
                     f"| {cell(keep['aupro'])} | {gain:+.3f} | {pixels:.2f}x |")
    counts = ", ".join(f"{r['aspect']:g}: {r['strips']['defect_strips']} kept, {r['strips']['dropped']} dropped"
                       for r in records)
    lines.append(f"\nDefect strips per aspect: {counts}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suite", type=Path, default=SUITE_DIR)
    parser.add_argument("--output", type=Path, help="results/NAME: writes NAME.md and NAME.json")
    parser.add_argument("--render", type=Path, help="re-print a saved run's NAME.json (and rewrite NAME.md), no training")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        text = markdown(saved["records"], saved["seeds"], saved["command"])
        print(text)
        write_text(args.render.with_suffix(".md"), text)
        return
    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "1")))
    source = args.suite / "metal_plate"
    if not (source / "train" / "good").is_dir():
        sys.exit(f"elongated: skipped, {source} not found")
    recorded = command("elongated", argv)
    base = SimpleNetConfig(device="cpu", val_checkpoints=0)
    backbone = load_backbone(base.backbone)
    records = []
    with tempfile.TemporaryDirectory(prefix="simplenet-edu-strips-") as tmp:
        for aspect in args.ratios:
            name = f"metal_strips_{aspect:g}"
            root = Path(tmp) / name
            record = {"aspect": aspect, "strips": make_strips(source, root, aspect)}
            for mode, keep in (("squash", False), ("keep", True)):
                config = dataclasses.replace(base, keep_aspect=keep)
                features = SetFeatures(name, root, config, backbone)
                runs = [run_one(features, dataclasses.replace(config, seed=seed), backbone) for seed in args.seeds]
                record[mode] = {"size": list(features.size), "runs": runs,
                                **{key: spread([r[key] for r in runs]) for key in ("image_auroc", "pixel_auroc", "aupro")}}
                print(f"{name} {mode} {features.size}: image AUROC {cell(record[mode]['image_auroc'])}, "
                      f"AUPRO {cell(record[mode]['aupro'])}", file=sys.stderr, flush=True)
            records.append(record)
    text = markdown(records, args.seeds, recorded)
    print(text)
    if args.output:
        write_md_json(args.output, text, {"command": recorded, "seeds": args.seeds, "records": records}, indent=1)


if __name__ == "__main__":
    main()

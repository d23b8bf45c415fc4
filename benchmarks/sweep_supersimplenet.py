"""Sweep SuperSimpleNet recipes over the development suite: the table behind its CPU default.

SuperSimpleNet trains on upscaled feature grids that ``benchmarks.sweep`` does not cache, so every
job here is a whole ``benchmark.run_job`` (the library path of ``simplenet-edu evaluate --model
supersimplenet``): features, training and scoring, in this process. A recipe is a list of
``SuperSimpleNetConfig`` overrides; each ``--grid`` axis multiplies the recipes (``a=1+b=2`` ties
values, as in ``benchmarks.sweep``)::

    python -m benchmarks.sweep_supersimplenet --seeds 0 --grid noise_std=0.35,0.75 steps=200,400

prints one Markdown row per recipe: per set the mean over the seeds of image AUROC / AUPRO (sets
without masks: image AUROC only), the means over the sets, the worst seed-to-seed spread of image
AUROC (sample std) and the mean seconds of features + training per job. ``--output FILE.json`` keeps
every number.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (SUITE_DIR, command, find_sets, has_masks, parse_grid, sweep_header, sweep_note,
                               sweep_row, sweep_summary, write_json)
from simplenet_edu.apps.benchmark import run_job
from simplenet_edu.supersimplenet.config import SuperSimpleNetConfig

KEEP = ("image_auroc", "pixel_auroc", "aupro", "seconds_features", "seconds_train")


def seconds_column(results: dict[str, list[dict]]) -> str:
    """Mean seconds of features + training per job, the last column."""
    return f" {np.mean([r['seconds_features'] + r['seconds_train'] for rows in results.values() for r in rows]):.1f} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="*", default=[], help="axes, e.g. noise_std=0.35,0.75 steps=200,400")
    parser.add_argument("--base", nargs="*", default=[], help="overrides applied to every recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suite", type=Path, default=SUITE_DIR)
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--output", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    sets, skipped = find_sets(args.suite, demo=False, names=args.sets)
    for line in skipped:
        print(f"sweep: {line}", file=sys.stderr)
    if not sets:
        sys.exit("sweep: no set of the development suite found; nothing to do")
    base = parse_grid(args.base)[0] if args.base else {}
    recipes = parse_grid(args.grid)
    recorded = command("sweep_supersimplenet", argv)
    print(f"command: {recorded}\n\n{sweep_note(args.seeds)}\n")
    with_masks = {name for name, folder in sets.items() if has_masks(folder)}
    print(sweep_header(list(sets), with_masks, ("features + training s",)), flush=True)
    everything = []
    for recipe in recipes:
        config = SuperSimpleNetConfig.from_dict({**SuperSimpleNetConfig().to_dict(), **base, **recipe}).to_dict()
        results = {}
        for name, folder in sets.items():
            results[name] = []
            for seed in args.seeds:
                start = time.perf_counter()
                report = run_job(folder, config, seed, model_kind="supersimplenet")
                # None (no masks) left out: sweep_summary averages the keys a row has.
                results[name].append({k: report[k] for k in KEEP if report.get(k) is not None}
                                     | {"seed": seed, "wall_seconds": time.perf_counter() - start})
        label = ", ".join(f"{k}={v}" for k, v in recipe.items()) or "default"
        print(sweep_row(label, sweep_summary(results), list(sets)) + seconds_column(results), flush=True)
        everything.append({"recipe": recipe, "base": base, "results": results})
    if args.output:
        write_json(args.output, {"command": recorded, "runs": everything}, indent=1)


if __name__ == "__main__":
    main()

"""Sweep SuperSimpleNet recipes over the development suite: the table behind its CPU default.

SuperSimpleNet trains on upscaled feature grids that ``benchmarks/sweep.py`` does not cache, so every
job here is a whole ``benchmark.run_job`` (the library path of ``simplenet-edu evaluate --model
supersimplenet``): features, training and scoring, in this process. A recipe is a list of
``SuperSimpleNetConfig`` overrides; each ``--grid`` axis multiplies the recipes (``a=1+b=2`` ties
values, as in ``sweep.py``)::

    python benchmarks/sweep_supersimplenet.py --seeds 0 --grid noise_std=0.35,0.75 steps=200,400

prints one Markdown row per recipe: per set the mean over the seeds of image AUROC / AUPRO (sets
without masks: image AUROC only), the means over the sets, the worst seed-to-seed spread of image
AUROC and the mean seconds of features + training per job. ``--output FILE.json`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suite  # noqa: E402
import sweep  # noqa: E402

from simplenet_edu.apps.benchmark import run_job  # noqa: E402
from simplenet_edu.supersimplenet.config import SuperSimpleNetConfig  # noqa: E402


def seconds_column(results: dict[str, list[dict]]) -> str:
    """Mean seconds of features + training per job, the last column."""
    return f" {np.mean([r['seconds_features'] + r['seconds_train'] for rows in results.values() for r in rows]):.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="*", default=[], help="axes, e.g. noise_std=0.35,0.75 steps=200,400")
    parser.add_argument("--base", nargs="*", default=[], help="overrides applied to every recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suite", type=Path, default=suite.ROOT.parent / "shared" / "data")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    sets, skipped = suite.find_sets(args.suite, demo=False)
    for line in skipped:
        print(f"sweep: {line}", file=sys.stderr)
    if not sets:
        sys.exit("sweep: no set of the development suite found; nothing to do")
    base = sweep.parse_grid(args.base)[0] if args.base else {}
    recipes = sweep.parse_grid(args.grid) if args.grid else [{}]
    with_masks = {name for name, folder in sets.items() if (folder / "ground_truth").is_dir()}
    print(sweep.header_markdown(list(sets), with_masks, ("features + training s",)), flush=True)
    everything = []
    for recipe in recipes:
        config = SuperSimpleNetConfig.from_dict({**SuperSimpleNetConfig().to_dict(), **base, **recipe}).to_dict()
        results = {}
        for name, folder in sets.items():
            results[name] = []
            for seed in args.seeds:
                start = time.perf_counter()
                report = run_job(folder, config, seed, model_kind="supersimplenet")
                # None (no masks) left out: sweep.summarise averages the keys a row has.
                keep = ("image_auroc", "pixel_auroc", "aupro", "seconds_features", "seconds_train")
                results[name].append({k: report[k] for k in keep if report.get(k) is not None}
                                     | {"seed": seed, "wall_seconds": time.perf_counter() - start})
        label = ", ".join(f"{k}={v}" for k, v in recipe.items()) or "default"
        print(sweep.row_markdown(label, sweep.summarise(results), list(sets)) + seconds_column(results),
              flush=True)
        everything.append({"recipe": recipe, "base": base, "results": results})
    if args.output:
        suite.write_atomic(args.output, json.dumps({"command": " ".join(sys.argv), "runs": everything},
                                                   indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Quality and wall time of ``simplenet-edu evaluate`` over several seeds.

Runs the real command line once per seed, in a fresh process (so the wall time includes Python and
torch start-up, model building, feature extraction, training, scoring and metrics: what a user waits
for), and prints a Markdown table with the mean and spread.

    python benchmarks/evaluate_seeds.py --data ../shared/data/hazelnut_toy --seeds 0 1 2 \
        [--output results.json] [-- extra evaluate options, e.g. --preset quick]

Measure on an idle machine: another process on the two cores doubles the times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suite  # noqa: E402

KEYS = ("image_auroc", "pixel_auroc", "aupro", "f1_max", "seconds_features", "seconds_train",
        "ms_per_image_inference")


def run_once(data: Path, seed: int, extra: list[str]) -> dict:
    """``suite.run_once`` (one ``simplenet-edu evaluate`` in a fresh process), reduced to :data:`KEYS`."""
    report = suite.run_once(data, seed, extra)
    return {"seed": seed, "wall_seconds": report["wall_seconds"], **{key: report[key] for key in KEYS}}


def summarise(rows: list[dict]) -> dict:
    summary = {}
    for key in ("wall_seconds", *KEYS):
        values = [row[key] for row in rows if row[key] is not None]
        if values:
            summary[key] = {"mean": statistics.mean(values), "std": statistics.pstdev(values),
                            "min": min(values), "max": max(values)}
    return summary


def markdown(rows: list[dict], summary: dict) -> str:
    columns = ("seed", "image_auroc", "pixel_auroc", "aupro", "wall_seconds", "seconds_features",
               "seconds_train", "ms_per_image_inference")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c])
                                       for c in columns) + " |")
    lines.append("| mean +- std | " + " | ".join(
        f"{summary[c]['mean']:.4f} +- {summary[c]['std']:.4f}" if c in summary else "n/a" for c in columns[1:]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path)
    args, extra = parser.parse_known_args()
    extra = [arg for arg in extra if arg != "--"]
    rows = [run_once(args.data, seed, extra) for seed in args.seeds]
    summary = summarise(rows)
    print(markdown(rows, summary))
    if args.output:
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        tmp.write_text(json.dumps({"data": str(args.data), "options": extra, "rows": rows,
                                   "summary": summary}, indent=2) + "\n")
        os.replace(tmp, args.output)


if __name__ == "__main__":
    main()

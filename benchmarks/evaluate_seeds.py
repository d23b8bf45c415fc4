"""Quality and wall time of ``simplenet-edu evaluate`` on one set over several seeds.

Runs the real command line once per seed, in a fresh process (so the wall time includes Python and
torch start-up, model building, feature extraction, training, scoring and metrics: what a user waits
for), and prints a Markdown table, one row per seed and the mean ± std row (sample std)::

    python -m benchmarks.evaluate_seeds --data DIR --seeds 0 1 2 [--output results.json] \
        [-- extra evaluate options, e.g. --preset quick]
    python -m benchmarks.evaluate_seeds --render results/evaluate_hazelnut_default.json   # no training

Measure on an idle machine: another process on the two cores doubles the times.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import command, run_evaluate, seeds_note, spread, write_json
from simplenet_edu.utils.stats import format_mean_std

KEYS = ("image_auroc", "pixel_auroc", "aupro", "f1_max", "seconds_features", "seconds_train",
        "ms_per_image_inference")
COLUMNS = ("seed", "image_auroc", "pixel_auroc", "aupro", "wall_seconds", "seconds_features", "seconds_train",
           "ms_per_image_inference")


def run_once(data: Path, seed: int, extra: list[str]) -> dict:
    """One ``simplenet-edu evaluate`` in a fresh process, reduced to the wall seconds and :data:`KEYS`."""
    report = run_evaluate(data, seed, extra)
    return {"seed": seed, "wall_seconds": report["wall_seconds"], **{key: report[key] for key in KEYS}}


def summarise(rows: list[dict]) -> dict:
    """Per figure: mean and sample std over the seeds (std ``None`` for one seed), min and max."""
    summary = {}
    for key in ("wall_seconds", *KEYS):
        values = [row[key] for row in rows if row[key] is not None]
        if values:
            mean, std = spread(values)
            summary[key] = {"mean": mean, "std": std, "min": min(values), "max": max(values)}
    return summary


def markdown(rows: list[dict], summary: dict) -> str:
    lines = [seeds_note([row["seed"] for row in rows]), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c])
                                       for c in COLUMNS) + " |")
    lines.append("| mean ± std | " + " | ".join(
        format_mean_std(summary[c]["mean"], summary[c]["std"], 4) if c in summary else "n/a"
        for c in COLUMNS[1:]) + " |")
    return "\n".join(lines)


def render(path: Path) -> None:
    """Re-print a saved run's table from its JSON, without training, and rewrite the JSON's ``summary``."""
    saved = json.loads(path.read_text())
    summary = summarise(saved["rows"])
    print(markdown(saved["rows"], summary))
    write_json(path, {**saved, "summary": summary})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path)
    parser.add_argument("--render", type=Path, metavar="JSON", help="only re-print the table of a saved --output")
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parser.parse_known_args(argv)
    extra = [arg for arg in extra if arg != "--"]
    if args.render:
        return render(args.render)
    if args.data is None:
        parser.error("--data DIR is needed (or --render JSON)")
    rows = [run_once(args.data, seed, extra) for seed in args.seeds]
    summary = summarise(rows)
    print(markdown(rows, summary))
    if args.output:
        write_json(args.output, {"command": command("evaluate_seeds", argv), "data": str(args.data),
                                 "options": extra, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()

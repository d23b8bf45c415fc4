"""Two runs of ``benchmarks.suite`` side by side: per set, each model's mean ± std over the seeds.

    python -m benchmarks.suite_compare results/suite_supersimplenet.json results/suite_default.json \
        --names SuperSimpleNet SimpleNet [--output results/suite_supersimplenet_vs_simplenet]

Reads the two runs' saved per-seed results (no training) and prints a Markdown table (image AUROC,
pixel AUROC, AUPRO, the seconds of feature extraction + training and the wall seconds per run, each as
mean ± sample std, and the ratio of the two models' times), the mean rows last; writes OUTPUT.md and
OUTPUT.json (both runs' summaries and per-seed results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import cell, command, seeds_note, spread, write_md_json


def per_set(run: dict) -> dict[str, dict]:
    """``{set: {metric: (mean, sample std)}}`` from a suite JSON's per-seed results (``None`` where a
    set has no such metric)."""
    table = {}
    for name, rows in run["runs"].items():
        entry = {key: spread([r.get(key) for r in rows])
                 for key in ("image_auroc", "pixel_auroc", "aupro", "wall_seconds")}
        entry["fit_seconds"] = spread([r["seconds_features"] + r["seconds_train"] for r in rows])
        table[name] = entry
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--names", nargs=2, default=["first", "second"])
    parser.add_argument("--output", type=Path, help="writes OUTPUT.md and OUTPUT.json")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in (args.first, args.second)]
    tables = [per_set(run) for run in runs]
    a, b = args.names
    lines = ["| set | model | image AUROC | pixel AUROC | AUPRO | features + training s | wall s |",
             "|---|---|---|---|---|---|---|"]
    means = {name: {} for name in args.names}
    for name in tables[0]:
        for label, table in zip(args.names, tables):
            row = table.get(name)
            if row is None:
                continue
            lines.append(f"| {name} | {label} | {cell(row['image_auroc'])} | {cell(row['pixel_auroc'])} | "
                         f"{cell(row['aupro'])} | {cell(row['fit_seconds'], 1)} | {cell(row['wall_seconds'], 1)} |")
            for key, value in row.items():
                if value is not None:
                    means[label].setdefault(key, []).append(value[0])
        if name in tables[1]:
            ratio = tables[0][name]["fit_seconds"][0] / tables[1][name]["fit_seconds"][0]
            wall = tables[0][name]["wall_seconds"][0] / tables[1][name]["wall_seconds"][0]
            lines.append(f"| {name} | {a} / {b} time | | | | {ratio:.2f}x | {wall:.2f}x |")
    for label in args.names:
        m = {key: statistics.mean(values) for key, values in means[label].items()}
        lines.append(f"| **mean** | **{label}** | **{m['image_auroc']:.3f}** | **{m.get('pixel_auroc', float('nan')):.3f}** | "
                     f"**{m.get('aupro', float('nan')):.3f}** | **{m['fit_seconds']:.1f}** | **{m['wall_seconds']:.1f}** |")
    recorded = command("suite_compare", argv)
    text = "\n".join([
        f"Made by `{recorded}` from the saved runs `{args.first}` (`{runs[0]['command'].strip()}`) and "
        f"`{args.second}` (`{runs[1]['command'].strip()}`). {seeds_note(runs[0]['seeds'])} Pixel metrics only "
        "where the set has masks; the mean rows average the per-set means.", "", *lines]) + "\n"
    print(text)
    if args.output:
        write_md_json(args.output, text,
                      {"command": recorded, "names": args.names, "runs": dict(zip(args.names, runs))})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The development suite: the real ``simplenet-edu evaluate`` on every set, for several seeds, one table.

Runs the command line once per (set, seed) in a fresh process, so that the wall time is what a user
waits for (start-up, data check, features, training, scoring, metrics), on every set of the
development suite (``hazelnut_toy``, ``metal_plate``, ``cookie``, ``solar_cell``; ``--suite DIR``) and
on the three demo textures (painted here by ``make_demo_dataset``), and prints per set the mean ± std
over the seeds (sample std) of image AUROC, pixel AUROC, AUPRO and wall seconds, the mean rows last::

    python -m benchmarks.suite                                      # the CPU default, seeds 0 1 2
    python -m benchmarks.suite --name quick -- --preset quick       # anything after -- goes to evaluate
    python -m benchmarks.suite --render results/suite_default.json  # a saved run's table, no training

It writes ``results/suite_<name>.json`` and ``.md`` (``--name default`` by default). Where the suite's
folder is missing, its sets are skipped, saying so; the demo textures always run. Measure wall times
on an idle machine: a second process on two cores doubles them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import (DEMO, RESULTS, SUITE_DIR, cell, command, find_sets, made_by, run_evaluate,
                               seeds_note, spread, write_json)
from simplenet_edu.utils.atomic import write_text

METRICS = ("image_auroc", "pixel_auroc", "aupro", "wall_seconds")
KEEP = ("seed", "wall_seconds", "image_auroc", "pixel_auroc", "aupro", "f1_max", "threshold_normal",
        "seconds_features", "seconds_train", "ms_per_image_inference", "selected_step", "validation", "notes")


def _means(per_set: dict) -> dict:
    return {key: float(np.mean([s[key][0] for s in per_set.values() if s[key] is not None]))
            for key in METRICS if any(s[key] is not None for s in per_set.values())}


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Per set ``{metric: (mean, sample std)}`` over the seeds (``None`` where a set has no such metric,
    std ``None`` for one seed), the mean over the sets of each per-set mean, and (``mean_real``, where
    demo textures ran beside real sets) that mean over the real sets alone."""
    per_set = {name: {key: spread([r.get(key) for r in rows]) for key in METRICS} for name, rows in runs.items()}
    summary = {"per_set": per_set, "mean": _means(per_set)}
    real = {name: s for name, s in per_set.items() if name not in DEMO}
    if real and len(real) < len(per_set):
        summary["mean_real"] = _means(real)
    return summary


def markdown(summary: dict, seeds: list[int]) -> str:
    """The note on the spread, the table, one row per set, the mean rows last."""
    def mean_row(label, m):
        return (f"| **{label}** | **{m['image_auroc']:.3f}** | **{m.get('pixel_auroc', float('nan')):.3f}** | "
                f"**{m.get('aupro', float('nan')):.3f}** | **{m['wall_seconds']:.1f}** |")

    lines = [f"{seeds_note(seeds)} A mean row averages the per-set means (pixel metrics over the sets that "
             "have masks).", "", "| set | image AUROC | pixel AUROC | AUPRO | wall s |", "|---|---|---|---|---|"]
    for name, s in summary["per_set"].items():
        lines.append(f"| {name} | {cell(s['image_auroc'])} | {cell(s['pixel_auroc'])} | {cell(s['aupro'])} | "
                     f"{cell(s['wall_seconds'], 1)} |")
    if "mean_real" in summary:
        lines.append(mean_row("mean, real sets", summary["mean_real"]))
        lines.append(mean_row("mean, all sets", summary["mean"]))
    else:
        lines.append(mean_row("mean", summary["mean"]))
    return "\n".join(lines) + "\n"


def header(name: str, recorded: str, rendered_by: str | None = None) -> str:
    """The results file's title and provenance: the command that ran the suite (and, for a table
    rendered again from the saved runs, the command that rendered it)."""
    text = f"# Development suite: `{name}`\n\n{made_by(recorded)}: one `simplenet-edu evaluate` per set and " \
           "seed, in a fresh process; wall seconds include start-up."
    if rendered_by:
        text += f" Table rendered from the saved runs by `{rendered_by}`."
    return text + "\n\n"


def footer(skipped: list[str]) -> str:
    return "".join(f"\n{line}" for line in skipped)


def render(path: Path, argv: list[str] | None = None) -> None:
    """Re-print a saved run's table from its JSON, without training, and rewrite its ``.md`` and the
    JSON's ``summary`` (the per-seed results stay as they are)."""
    run = json.loads(path.read_text())
    summary = summarise(run["runs"])
    table = markdown(summary, run["seeds"])
    print(table)
    name = path.stem.removeprefix("suite_")
    write_text(path.with_suffix(".md"), header(name, run["command"], command("suite", argv)) + table
               + footer(run.get("skipped", [])))
    write_json(path, {**run, "summary": summary}, indent=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=SUITE_DIR, help="folder holding the development suite")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--no-demo", action="store_true", help="leave out the demo textures")
    parser.add_argument("--name", default="default", help="writes RESULTS/suite_NAME.json and .md")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only re-print the table of a saved run (results/suite_NAME.json) and rewrite its .md")
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parser.parse_known_args(argv)
    extra = [arg for arg in extra if arg != "--"]
    if args.render:
        return render(args.render, argv)

    sets, skipped = find_sets(args.suite, demo=not args.no_demo, names=args.sets)
    for line in skipped:
        print(f"suite: {line}", file=sys.stderr)
    runs = {}
    for name, folder in sets.items():
        runs[name] = []
        for seed in args.seeds:
            r = run_evaluate(folder, seed, extra)
            runs[name].append(r)
            print(f"suite: {name} seed {seed}: image AUROC {r['image_auroc']:.3f}, AUPRO "
                  f"{r['aupro'] if r.get('aupro') is None else round(r['aupro'], 3)}, {r['wall_seconds']:.1f} s",
                  file=sys.stderr, flush=True)
    summary = summarise(runs)
    recorded = command("suite", argv)
    table = markdown(summary, args.seeds)
    print(table)
    write_text(args.results / f"suite_{args.name}.md", header(args.name, recorded) + table + footer(skipped))
    write_json(args.results / f"suite_{args.name}.json", {
        "command": recorded, "evaluate_options": extra, "seeds": args.seeds, "skipped": skipped,
        "sets": {name: str(folder) for name, folder in sets.items()},
        "runs": {name: [{k: r.get(k) for k in KEEP} for r in rows] for name, rows in runs.items()},
        "config": next(iter(runs.values()))[0].get("config") if runs else None,
        "summary": summary}, indent=1)


if __name__ == "__main__":
    main()

"""The development suite: the real ``simplenet-edu evaluate`` on every set, for several seeds, one table.

Runs the command line once per (set, seed) in a fresh process, so that the wall time is what a user
waits for (start-up, data check, features, training, scoring, metrics), on every set of
``../shared/data`` (``hazelnut_toy``, ``metal_plate``, ``cookie``, ``solar_cell``) and on the three demo
textures (painted here by ``make_demo_dataset``), and prints per set the mean +- std over the seeds of
image AUROC, pixel AUROC, AUPRO and wall seconds, the mean row last::

    python benchmarks/suite.py                                  # the CPU default, seeds 0 1 2
    python benchmarks/suite.py --name quick -- --preset quick   # anything after -- goes to evaluate

It writes ``results/suite_<name>.json`` and ``.md`` (``--name default`` by default). Where
``../shared/data`` (or ``--suite DIR``) is missing, its sets are skipped, saying so; the demo textures
always run. Measure wall times on an idle machine: a second process on two cores doubles them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUITE = ("hazelnut_toy", "metal_plate", "cookie", "solar_cell")
DEMO = ("brick", "gravel", "grass")
METRICS = ("image_auroc", "pixel_auroc", "aupro", "wall_seconds")


def find_sets(suite: Path, demo: bool = True) -> tuple[dict[str, Path], list[str]]:
    """``({name: folder}, [skip messages])``: the suite's sets that exist, then the demo textures."""
    sets, skipped = {}, []
    for name in SUITE:
        folder = suite / name
        if (folder / "train" / "good").is_dir():
            sets[name] = folder
        else:
            skipped.append(f"{name}: skipped, {folder} not found")
    if demo:
        sys.path.insert(0, str(ROOT))
        from simplenet_edu.data import make_demo_dataset

        for name in DEMO:
            sets[name] = make_demo_dataset(ROOT / "data" / "demo", name)
    return sets, skipped


def run_once(data: Path, seed: int, extra: list[str]) -> dict:
    """One ``simplenet-edu evaluate`` in a fresh process: its JSON report plus the wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "simplenet_edu", "--quiet", "evaluate", "--data", str(data),
                   "--seed", str(seed), "--output", str(output), *extra]
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
        report = json.loads(output.read_text())
    return {"seed": seed, "wall_seconds": wall, **report}


def spread(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    return (float(np.mean(values)), float(np.std(values))) if values else None


def _means(per_set: dict) -> dict:
    return {key: float(np.mean([s[key][0] for s in per_set.values() if s[key] is not None]))
            for key in METRICS if any(s[key] is not None for s in per_set.values())}


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Per set ``{metric: (mean, std)}`` over the seeds (``None`` where a set has no such metric), the
    mean over the sets of each per-set mean, and (``mean_real``, where demo textures ran beside real
    sets) that mean over the real sets alone."""
    per_set = {name: {key: spread([r.get(key) for r in rows]) for key in METRICS} for name, rows in runs.items()}
    summary = {"per_set": per_set, "mean": _means(per_set)}
    real = {name: s for name, s in per_set.items() if name not in DEMO}
    if real and len(real) < len(per_set):
        summary["mean_real"] = _means(real)
    return summary


def markdown(summary: dict, seeds: list[int]) -> str:
    def cell(value, digits=3):
        return "-" if value is None else f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"

    def mean_row(label, m):
        return (f"| **{label}** | **{m['image_auroc']:.3f}** | **{m.get('pixel_auroc', float('nan')):.3f}** | "
                f"**{m.get('aupro', float('nan')):.3f}** | **{m['wall_seconds']:.1f}** |")

    lines = ["| set | image AUROC | pixel AUROC | AUPRO | wall s |", "|---|---|---|---|---|"]
    for name, s in summary["per_set"].items():
        lines.append(f"| {name} | {cell(s['image_auroc'])} | {cell(s['pixel_auroc'])} | {cell(s['aupro'])} | "
                     f"{cell(s['wall_seconds'], 1)} |")
    if "mean_real" in summary:
        lines.append(mean_row("mean, real sets", summary["mean_real"]))
        lines.append(mean_row("mean, all sets", summary["mean"]))
    else:
        lines.append(mean_row("mean", summary["mean"]))
    return "\n".join(lines) + f"\n\nMean ± std over seeds {', '.join(map(str, seeds))}; a mean row averages " \
                              "the per-set means (pixel metrics over the sets that have masks).\n"


def header(name: str, command: str) -> str:
    return f"# Development suite: `{name}`\n\nMade by `{command}` (one `simplenet-edu evaluate` per set " \
           f"and seed, in a fresh process; wall seconds include start-up).\n\n"


def render(path: Path) -> None:
    """Re-print a saved run's table (and rewrite its ``.md``) from its JSON, without training."""
    run = json.loads(path.read_text())
    summary = summarise(run["runs"])
    table = markdown(summary, run["seeds"])
    print(table)
    name = path.stem.removeprefix("suite_")
    write_atomic(path.with_suffix(".md"), header(name, run["command"]) + table
                 + "".join(f"\n{s}" for s in run.get("skipped", [])))
    write_atomic(path, json.dumps({**run, "summary": summary}, indent=1) + "\n")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_md_json(output: Path, text: str, data: dict) -> None:
    """A benchmark's results: ``OUTPUT.md`` (its printed table) and ``OUTPUT.json``, each atomically."""
    output = Path(output)
    write_atomic(output.with_suffix(".md"), text)
    write_atomic(output.with_suffix(".json"), json.dumps(data, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder holding the development suite (default ../shared/data)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--no-demo", action="store_true", help="leave out the demo textures")
    parser.add_argument("--name", default="default", help="writes results/suite_NAME.json and .md")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only re-print the table of a saved run (results/suite_NAME.json) and rewrite its .md")
    args, extra = parser.parse_known_args()
    extra = [arg for arg in extra if arg != "--"]
    if args.render:
        return render(args.render)

    sets, skipped = find_sets(args.suite, demo=not args.no_demo)
    for line in skipped:
        print(f"suite: {line}", file=sys.stderr)
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets}
    runs = {}
    for name, folder in sets.items():
        runs[name] = []
        for seed in args.seeds:
            runs[name].append(run_once(folder, seed, extra))
            r = runs[name][-1]
            print(f"suite: {name} seed {seed}: image AUROC {r['image_auroc']:.3f}, AUPRO "
                  f"{r['aupro'] if r.get('aupro') is None else round(r['aupro'], 3)}, {r['wall_seconds']:.1f} s",
                  file=sys.stderr, flush=True)
    summary = summarise(runs)
    command = "python benchmarks/suite.py " + " ".join(sys.argv[1:])
    table = markdown(summary, args.seeds)
    print(table)
    write_atomic(args.results / f"suite_{args.name}.md", header(args.name, command) + table + "".join(f"\n{s}" for s in skipped))
    keep = ("seed", "wall_seconds", "image_auroc", "pixel_auroc", "aupro", "f1_max", "threshold_normal",
            "seconds_features", "seconds_train", "ms_per_image_inference", "selected_step", "validation", "notes")
    write_atomic(args.results / f"suite_{args.name}.json", json.dumps({
        "command": command, "evaluate_options": extra, "seeds": args.seeds, "skipped": skipped,
        "sets": {name: str(folder) for name, folder in sets.items()},
        "runs": {name: [{k: r.get(k) for k in keep} for r in rows] for name, rows in runs.items()},
        "config": next(iter(runs.values()))[0].get("config") if runs else None,
        "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The normal threshold on the development suite: does it keep its promise on the test set's normal images?

Through the real ``simplenet-edu evaluate`` (a fresh process per run), on every set of the development
suite and for each seed: the thresholds from k folds (every training image scored out of fold, the
default) and from one held-out split (``--threshold-folds 0``); at ``threshold_normal`` the false-positive
rate on ``test/good`` with its 95 % upper bound (Clopper-Pearson, one-sided), and the recall on the
defective test images. With ``--reference DIR`` (a checkout of another commit, e.g. ``git archive HEAD``
unpacked) that code's ``evaluate`` runs too, so that the wall time of k folds is set against it: the
runs of one (set, seed) are interleaved, in an order that rotates with the seed, so that the machine's
load falls alike on each. On a machine that other jobs share, give each run one thread
(``OMP_NUM_THREADS=1``, recorded in the results): two torch threads wait on each other whenever
another process holds a core::

    OMP_NUM_THREADS=1 python -m benchmarks.thresholds --reference /tmp/before   # results/thresholds{,_cost}.{md,json}
    python -m benchmarks.thresholds --sets cookie --seeds 0          # one set, one seed
    python -m benchmarks.thresholds --render results/thresholds.json  # re-print a saved run, no training

``results/thresholds.json`` holds the two threshold sources as two suite runs (per set, one row per
seed: ``fpr_good``, ``fpr_good_upper``, ``recall``, ``n_normal``, ``normal_fpr_upper``, wall seconds...),
and ``results/thresholds_cost.json`` the k-fold runs beside the reference's, for the site's tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.common import (RESULTS, SUITE_DIR, cell, command, find_sets, made_by, run_evaluate, seeds_note,
                               spread, write_md_json)
from simplenet_edu.evaluation.metrics import fpr_upper_bound

FOLDS, HELD_OUT, BEFORE = "5 folds", "held-out", "before"
OPTIONS = {FOLDS: [], HELD_OUT: ["--threshold-folds", "0"]}
KEEP = ("image_auroc", "pixel_auroc", "aupro", "threshold_normal", "seconds_features", "seconds_train",
        "seconds_folds", "ms_per_image_inference", "n_train", "n_holdout")


def row_of(report: dict) -> dict:
    """The flat numbers of one run: at ``threshold_normal``, the test set's normal images (``fp`` of
    ``n_good``, their rate and its 95 % upper bound) and defective ones (recall); the normal training
    images that set the threshold (``n_normal``, the 95 % bound of what they showed)."""
    at = report["at_threshold_normal"]
    n_good, n_defect = at["fp"] + at["tn"], at["tp"] + at["fn"]
    calibration = report.get("threshold_calibration") or {}
    n_normal = calibration.get("n_normal", report.get("n_holdout"))
    flagged = calibration.get("flagged", 0)
    return {"seed": report["seed"], "wall_seconds": report["wall_seconds"], **{k: report.get(k) for k in KEEP},
            "fp": at["fp"], "n_good": n_good, "fpr_good": at["fpr"], "fpr_good_upper": fpr_upper_bound(at["fp"], n_good),
            "tp": at["tp"], "n_defect": n_defect, "recall": at["recall"],
            "n_normal": n_normal, "normal_flagged": flagged,
            "normal_fpr_upper": fpr_upper_bound(flagged, n_normal) if n_normal else None}


def order(seed: int, names: list[str]) -> list[str]:
    """The variants of one (set, seed) in turn, rotated by the seed."""
    shift = seed % len(names)
    return names[shift:] + names[:shift]


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if len(values) == len(rows) and values else None


def threshold_table(runs: dict[str, dict[str, list[dict]]], seeds: list[int]) -> str:
    """Per set and threshold source: the normal training images that set it (and the 95 % bound of
    what they showed), then on the test set at that threshold the false-positive rate on the normal
    images (mean ± std over the seeds; the mean of the per-seed 95 % upper bounds) and the recall."""
    lines = [f"{seeds_note(seeds)} Upper bounds: one-sided 95 %, Clopper-Pearson, the mean over the seeds of "
             "each seed's bound. Target false-positive rate 0.01 (`normal_max_fpr`).", "",
             "| set | thresholds from | normal images scored | their 95 % bound | FPR on test/good | its 95 % bound "
             "| recall | mean FPR on test/good, all sets |", "|---|---|---|---|---|---|---|---|"]
    names = list(runs)
    sets = list(next(iter(runs.values())))
    means = {name: _mean([{"v": _mean(runs[name][s], "fpr_good")} for s in sets], "v") for name in names}
    for set_name in sets:
        for name in names:
            rows = runs[name][set_name]
            good = f"{rows[0]['n_good']}"
            lines.append(
                f"| {set_name} | {name} | {rows[0]['n_normal']} | {_fmt(_mean(rows, 'normal_fpr_upper'))} | "
                f"{cell(spread([r['fpr_good'] for r in rows]))} (of {good}) | {_fmt(_mean(rows, 'fpr_good_upper'))} | "
                f"{cell(spread([r['recall'] for r in rows]))} | |")
    for name in names:
        lines.append(f"| **mean** | **{name}** | | | | | | **{_fmt(means[name])}** |")
    return "\n".join(lines) + "\n"


def cost_table(runs: dict[str, dict[str, list[dict]]], seeds: list[int]) -> str:
    """Per set: wall seconds of ``evaluate`` (start-up included) with k folds and with the reference
    code, their ratio (of the means), and where the k-fold run's time goes."""
    lines = [f"{seeds_note(seeds)} Wall seconds of one `simplenet-edu evaluate` in a fresh process, start-up "
             "included; the runs of a set and seed interleaved.", "",
             f"| set | wall s, {BEFORE} | wall s, {FOLDS} | {FOLDS} / {BEFORE} | features s | training s "
             "(shipped heads) | threshold folds s |", "|---|---|---|---|---|---|---|"]
    for set_name in runs[FOLDS]:
        folds, before = runs[FOLDS][set_name], runs[BEFORE][set_name]
        ratio = _mean(folds, "wall_seconds") / _mean(before, "wall_seconds")
        lines.append(f"| {set_name} | {cell(spread([r['wall_seconds'] for r in before]), 1)} | "
                     f"{cell(spread([r['wall_seconds'] for r in folds]), 1)} | {ratio:.2f}x | "
                     f"{cell(spread([r['seconds_features'] for r in folds]), 1)} | "
                     f"{cell(spread([r['seconds_train'] for r in folds]), 1)} | "
                     f"{cell(spread([r['seconds_folds'] for r in folds]), 1)} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write(results: Path, recorded: str, seeds: list[int], runs: dict, threads: str | None,
          rendered_by: str | None = None) -> str:
    """Both tables (printed, and written as ``thresholds.md`` / ``thresholds_cost.md`` with their JSON)."""
    source = f"{made_by(recorded)}: one `simplenet-edu evaluate` per set, seed and variant, in a fresh process" + \
             (f" with `OMP_NUM_THREADS={threads}`" if threads else "") + \
             (f"; rendered from the saved runs by `{rendered_by}`" if rendered_by else "") + "."
    text = ("# The normal threshold on the development suite\n\n" + source + "\n\n"
            + threshold_table({n: runs[n] for n in (FOLDS, HELD_OUT)}, seeds))
    suite_run = {name: {"runs": runs[name], "seeds": seeds} for name in runs}
    write_md_json(results / "thresholds", text, {"command": recorded, "threads": threads, "seeds": seeds,
                                                 "names": [FOLDS, HELD_OUT],
                                                 "runs": {n: suite_run[n] for n in (FOLDS, HELD_OUT)}}, indent=1)
    printed = text
    if BEFORE in runs:
        cost = "# What k folds cost: `evaluate` wall time\n\n" + source + "\n\n" + cost_table(runs, seeds)
        write_md_json(results / "thresholds_cost", cost, {"command": recorded, "threads": threads, "seeds": seeds,
                                                          "names": [FOLDS, BEFORE],
                                                          "runs": {n: suite_run[n] for n in (FOLDS, BEFORE)}}, indent=1)
        printed += "\n" + cost
    return printed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=SUITE_DIR, help="folder holding the development suite")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--reference", type=Path, metavar="DIR",
                        help="a checkout of other code (its simplenet_edu/ is run) to time k folds against")
    parser.add_argument("--results", type=Path, default=RESULTS, help="writes thresholds{,_cost}.md and .json here")
    parser.add_argument("--render", type=Path, metavar="JSON", help="re-print the tables of a saved thresholds.json")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        runs = {name: run["runs"] for name, run in saved["runs"].items()}
        cost_path = args.render.with_name("thresholds_cost.json")
        if cost_path.is_file():
            runs[BEFORE] = json.loads(cost_path.read_text())["runs"][BEFORE]["runs"]
        print(write(args.render.parent, saved["command"], saved["seeds"], runs, saved.get("threads"),
                    command("thresholds", argv)))
        return

    sets, skipped = find_sets(args.suite, demo=False, names=args.sets)
    for line in skipped:
        print(f"thresholds: {line}", file=sys.stderr)
    names = [FOLDS, HELD_OUT] + ([BEFORE] if args.reference else [])
    runs = {name: {set_name: [] for set_name in sets} for name in names}
    for set_name, folder in sets.items():
        for seed in args.seeds:
            for name in order(seed, names):
                report = run_evaluate(folder, seed, OPTIONS.get(name, []), tree=args.reference if name == BEFORE else None)
                runs[name][set_name].append(row_of(report))
                r = runs[name][set_name][-1]
                print(f"thresholds: {set_name} seed {seed} {name}: FPR test/good {r['fp']}/{r['n_good']}, recall "
                      f"{r['recall']:.2f}, {r['wall_seconds']:.1f} s", file=sys.stderr, flush=True)
    print(write(args.results, command("thresholds", argv), args.seeds, runs, os.environ.get("OMP_NUM_THREADS")))


if __name__ == "__main__":
    main()

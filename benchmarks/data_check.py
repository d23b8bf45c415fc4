"""What the up-front data check costs: its time on a set, and its share of a clean run.

    python -m benchmarks.data_check                          # the suite's solar_cell, CPU default
    python -m benchmarks.data_check --data DIR --preset quick --repeats 3
    python -m benchmarks.data_check --data DIR --check-only                  # the check alone

1. ``check_dataset(need_test=True)`` in fresh processes (so nothing is remembered between them):
   the median of ``--repeats`` runs, and the same call again in the same process (the per-file
   memo: what ``fit`` and ``evaluate`` pay after the command line's check).
2. One clean ``simplenet-edu evaluate`` in this process, with every ``check_dataset`` call timed:
   the overhead is the time spent inside the checks divided by the whole run's wall time, both from
   the same run, so load from elsewhere slows both sides alike.

Prints a Markdown table; writes nothing. Skips, saying why, when the set is absent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import SUITE_DIR

DEFAULT_DATA = SUITE_DIR / "solar_cell"


def _check_in_fresh_process(data: Path) -> dict:
    code = (
        # Imported first, as the command line has by then: the check's own time, not torch's import.
        "import json, time; import simplenet_edu.stages.backbones; from simplenet_edu.data import check_dataset\n"
        f"t = time.perf_counter(); c = check_dataset({str(data)!r}, need_test=True, image_size=256, "
        "backbone='efficientnet_lite0'); first = time.perf_counter() - t\n"
        f"t = time.perf_counter(); check_dataset({str(data)!r}, need_test=True); again = time.perf_counter() - t\n"
        "print(json.dumps({'first': first, 'again': again, 'images': len(c.train) + len(c.test)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def _timed_evaluate(data: Path, preset: str) -> tuple[float, float, int]:
    """Wall seconds of one ``simplenet-edu evaluate``, seconds inside check_dataset, and its call count."""
    import simplenet_edu.data as data_lib
    import simplenet_edu.data.checks as checks
    from simplenet_edu.apps.cli import main

    spent, calls = [], 0
    real = checks.check_dataset

    def timed(*args, **kwargs):
        nonlocal calls
        calls += 1
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    data_lib.check_dataset = timed  # the CLI, fit and evaluate all call data.check_dataset
    try:
        start = time.perf_counter()
        code = main(["--quiet", "evaluate", "--data", str(data), "--preset", preset, "--device", "cpu"])
        wall = time.perf_counter() - start
    finally:
        data_lib.check_dataset = real
    if code != 0:
        raise SystemExit(f"evaluate failed with exit code {code}")
    return wall, sum(spent), calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--preset", default="default", choices=["default", "quick", "paper"])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes for the check alone")
    parser.add_argument("--check-only", action="store_true", help="time the check alone, not a whole run")
    args = parser.parse_args(argv)
    if not (args.data / "train" / "good").is_dir():
        print(f"skipped: {args.data} is not an MVTec-layout folder (no train/good)")
        return

    runs = [_check_in_fresh_process(args.data) for _ in range(args.repeats)]
    first = statistics.median(r["first"] for r in runs)
    again = statistics.median(r["again"] for r in runs)
    print(f"| {args.data.name} ({runs[0]['images']} images) | seconds |")
    print("|---|---|")
    print(f"| check_dataset, fresh process (median of {args.repeats}) | {first:.2f} |")
    print(f"| check_dataset again, same process (memo) | {again:.3f} |")
    if args.check_only:
        return
    wall, inside, calls = _timed_evaluate(args.data, args.preset)
    print(f"| `simplenet-edu evaluate --preset {args.preset}`, whole run | {wall:.1f} |")
    print(f"| ... of which inside check_dataset ({calls} calls) | {inside:.2f} ({100 * inside / wall:.1f} %) |")


if __name__ == "__main__":
    main()

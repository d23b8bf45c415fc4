"""Speed-up of ``simplenet-edu benchmark --workers 2`` over one worker, and the overhead of Ray.

Runs the real command line (one fresh process per run, as a user would) on the three demo categories
with the same jobs each time, on three engines:

- ``--workers 1``: the jobs one after another in the command's own process (torch's default: one
  thread per core), and the same with ``OMP_NUM_THREADS=1``;
- ``--workers 2``: two local worker processes, half the cores' torch threads each;
- ``--ray ADDRESS``: one Ray task per job on a local Ray cluster that this script starts once
  (``ray.init``, as ``ray start --head`` would), each task asking for half the cores, so that it has
  the same parallelism as ``--workers 2``.

The runs are interleaved (w1, w2, ray, then ray, w2, w1, ...) and reduced to medians, so that a burst
of load from elsewhere on a shared machine slows every engine alike; the figures are the ratios
``w1 / w2`` (the speed-up of two workers) and ``ray / w2`` (Ray's overhead over local workers, per
run, the cluster already running), plus the one-off start of the cluster.

    python -m benchmarks.engines                          # quick preset, 3 categories x 2 seeds, 2 repeats
    python -m benchmarks.engines --repeats 3 --output results/engines.json
    python -m benchmarks.engines --no-ray                 # without Ray installed
    python -m benchmarks.engines --smoke --no-ray         # tiny: checks that the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, cli, command, write_json
from simplenet_edu.apps.benchmark import available_cores
from simplenet_edu.data import DEMO_CATEGORIES, make_demo_dataset

# --smoke: seconds of work per run, a check of the script and not a measurement.
SMOKE = dict(seeds=[0], repeats=1, image_size=64, n_train=8)
SMOKE_MODEL = ["--preset", "quick", "--device", "cpu", "--image-size", "64", "--steps", "5"]


def run_cli(data: Path, engine: list[str], model: list[str], seeds: list[int], env: dict | None = None) -> dict:
    """One ``simplenet-edu benchmark`` in a fresh process and a fresh output folder: wall seconds and
    the mean of the jobs' own wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = cli("benchmark", "--data", str(data), "--output", tmp, "--seeds", *map(str, seeds), *engine, *model)
        start = time.perf_counter()
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        table = json.loads((Path(tmp) / "table.json").read_text())
    return {"wall_seconds": wall, "job_seconds_mean": table["mean"]["wall_seconds_mean"],
            "image_auroc_mean": table["mean"]["image_auroc_mean"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "benchmark" / "engines")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=128, help="of the demo images")
    parser.add_argument("--n-train", type=int, default=20, help="training images per category")
    parser.add_argument("--no-ray", action="store_true", help="local engines only")
    parser.add_argument("--output", type=Path, help="JSON file for the figures")
    parser.add_argument("--smoke", action="store_true",
                        help="one seed, one repeat, 64 px, 8 training images, 5 steps: checks that the script runs")
    argv = sys.argv[1:] if argv is None else argv
    args, model = parser.parse_known_args(argv)
    model = [a for a in model if a != "--"]
    if args.smoke:
        vars(args).update(SMOKE)
        args.data_dir = args.data_dir.with_name(args.data_dir.name + "-smoke")
        model = model or SMOKE_MODEL
    model = model or ["--preset", "quick", "--device", "cpu"]

    for category in DEMO_CATEGORIES:
        make_demo_dataset(args.data_dir, category, image_size=args.image_size, n_train=args.n_train,
                          n_test_good=8, n_test_per_defect=2)
    cores = available_cores()
    half = max(1, cores // 2)
    engines = {"workers 1": ["--workers", "1"], "workers 2": ["--workers", "2"]}
    # The same single process limited to one torch thread: how much of the speed-up is two threads of
    # one process getting in each other's way rather than two processes working at once.
    single = {"OMP_NUM_THREADS": "1"}
    if cores > 1:
        engines["workers 1, 1 thread"] = ["--workers", "1"]
    ray_start = None
    if not args.no_ray:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        start = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start
        engines["ray"] = ["--ray", ray.get_runtime_context().gcs_address, "--cpus-per-job", str(half)]

    runs: dict[str, list[dict]] = {name: [] for name in engines}
    order = list(engines)
    try:
        for repeat in range(args.repeats):
            for name in order if repeat % 2 == 0 else order[::-1]:
                env = single if name == "workers 1, 1 thread" else None
                runs[name].append(run_cli(args.data_dir, engines[name], model, args.seeds, env))
                print(f"repeat {repeat + 1}, {name}: {runs[name][-1]['wall_seconds']:.1f} s", file=sys.stderr)
    finally:
        if ray_start is not None:
            ray.shutdown()

    median = {name: statistics.median(r["wall_seconds"] for r in rs) for name, rs in runs.items()}
    figures = {"speedup_2_workers_over_1": median["workers 1"] / median["workers 2"]}
    if "workers 1, 1 thread" in median:
        figures["speedup_2_workers_over_1_single_thread"] = median["workers 1, 1 thread"] / median["workers 2"]
        figures["one_thread_over_all_threads_1_worker"] = median["workers 1, 1 thread"] / median["workers 1"]
    if "ray" in median:
        figures["ray_over_2_workers"] = median["ray"] / median["workers 2"]
        figures["ray_minus_2_workers_seconds"] = median["ray"] - median["workers 2"]
        figures["ray_cluster_start_seconds"] = ray_start
    n_jobs = len(DEMO_CATEGORIES) * len(args.seeds)
    lines = [f"{n_jobs} jobs ({len(DEMO_CATEGORIES)} demo categories x seeds {args.seeds}, {args.image_size} px, "
             f"{args.n_train} training images; model options {' '.join(model)}); {cores} cores; "
             f"medians of {args.repeats} interleaved runs", "",
             "| engine | wall s (median) | runs | mean s per job |", "|---|---:|---|---:|"]
    for name, rs in runs.items():
        per_job = statistics.median(r["job_seconds_mean"] for r in rs)
        label = {"ray": "--ray (local cluster)", "workers 1, 1 thread": "--workers 1, OMP_NUM_THREADS=1"}.get(
            name, " ".join(engines[name]))
        lines.append(f"| {label} | {median[name]:.1f} | "
                     f"{', '.join(format(r['wall_seconds'], '.1f') for r in rs)} | {per_job:.1f} |")
    lines += ["", f"speed-up of 2 workers over 1: {figures['speedup_2_workers_over_1']:.2f}x"]
    if "workers 1, 1 thread" in median:
        lines += [f"speed-up of 2 workers over 1 worker of one thread: "
                  f"{figures['speedup_2_workers_over_1_single_thread']:.2f}x (one worker, one thread against all "
                  f"{cores} threads: {figures['one_thread_over_all_threads_1_worker']:.2f}x the time)"]
    if "ray" in median:
        lines += [f"Ray over 2 local workers: {figures['ray_over_2_workers']:.2f}x "
                  f"({figures['ray_minus_2_workers_seconds']:+.1f} s per run; starting the cluster once: "
                  f"{ray_start:.1f} s)"]
    print("\n".join(lines))
    if args.output:
        write_json(args.output, {"command": command("engines", argv), "cores": cores, "seeds": args.seeds,
                                 "image_size": args.image_size, "n_train": args.n_train, "model_options": model,
                                 "runs": runs, "median_wall_seconds": median, **figures})


if __name__ == "__main__":
    main()

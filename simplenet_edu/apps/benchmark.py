"""Benchmark: every category of a data set over several seeds, in one command, on local workers or Ray.

SimpleNet trains one model per category, so a benchmark (MVTec AD's 15 categories, VisA's 12, a
plant's 40 part numbers, times a few seeds) is a list of independent **jobs**, one per
``(category, seed)``: train on ``ROOT/<category>/train/good``, evaluate on ``ROOT/<category>/test``.
:func:`run_benchmark` plans the jobs, hands them to an engine and keeps ``DIR`` up to date:

- ``DIR/jobs/<category>/seed<k>.json``: one job's result, written atomically as it ends: the report of
  ``simplenet-edu evaluate`` (or the job's one-line error), the wall seconds, the host, and the
  *fingerprint* of the configuration that produced it;
- ``DIR/table.md`` and ``DIR/table.json``: the paper-style table, per category image AUROC, pixel AUROC
  and AUPRO as mean ± std over the seeds, the mean row and the wall seconds per job, rewritten after
  every job.

**Resume**: a rerun skips every job whose result file exists, succeeded and carries the same
fingerprint (model, configuration, result format); an interrupted run loses only the jobs in flight,
a changed configuration reruns them all, a failed job is tried again.

**Engines**:

- local processes (``workers``): each of ``workers`` spawned processes runs ``cores // workers`` torch
  threads, so two workers on two cores do not fight over them; on a machine with GPUs, worker ``i``
  sees GPU ``i % n_gpus`` only. ``workers=1`` runs the jobs in this process.
- Ray (``ray_address``): one Ray task per job on an existing cluster, asking for ``gpus_per_job`` GPUs
  (a fraction shares a GPU) when the cluster has GPUs, else ``cpus_per_job`` CPUs. Each task reads its
  category from ``ROOT`` itself, so ``ROOT`` must be a path that every node sees (a shared file
  system) and every node needs simplenet-edu installed; results travel back to the driver, which
  alone writes ``DIR``.

Every model is built and trained by :func:`run_job`, the one place that knows the model kinds.

>>> summary = run_benchmark("data/mvtec", "runs/mvtec", SimpleNetConfig.paper(), seeds=[0, 1, 2],
...                         workers=4)                                               # doctest: +SKIP
>>> print(to_markdown(summary))                                                     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from tqdm.auto import tqdm

from ..utils.atomic import write_text
from ..utils.errors import InputError

RESULT_FORMAT = 1                 # bump when a job's result changes meaning: old results then rerun
MODEL_KINDS = ("simplenet", "supersimplenet")   # every kind that run_job can build
METRICS = ("image_auroc", "pixel_auroc", "aupro")
RAY_INSTALL = 'pip install -e ".[cluster]" in the repository (or pip install "ray[default]")'
DEFAULT_RAY_CPUS = 2              # CPUs a job asks for on a cluster without GPUs


# ---------------------------------------------------------------------------------------------
# One job: train and evaluate one category with one seed
# ---------------------------------------------------------------------------------------------


def run_job(category_root: str | Path, config: dict, seed: int, model_kind: str = "simplenet",
            progress: bool = False) -> dict:
    """Train a model on ``category_root/train/good``, evaluate it on ``category_root/test``.

    Args:
        category_root: one MVTec-layout category folder.
        config: the model's configuration as a dict (``SimpleNetConfig.to_dict()``); ``seed`` replaces
            its ``seed``.
        seed: the job's seed.
        model_kind: one of :data:`MODEL_KINDS`.
        progress: progress bars of feature extraction, training and scoring.

    Returns:
        The report that ``simplenet-edu evaluate --output`` writes (image_auroc, pixel_auroc, aupro,
        thresholds, timings, config...). Raises :class:`InputError` for a broken folder.
    """
    from .. import data as data_lib
    from ..evaluation.report import run_report
    from ..evaluation.evaluator import evaluate

    root = Path(category_root)
    # The whole folder, train and test, before the backbone is even loaded: a broken category costs
    # its job a second, not a training run.
    data_lib.check_dataset(root, need_train=True, need_test=True, image_size=config.get("image_size"),
                           crop_size=config.get("crop_size"), backbone=config.get("backbone"))
    if model_kind == "simplenet":
        from ..simplenet.model import SimpleNet
        from ..simplenet.config import SimpleNetConfig

        model = SimpleNet(SimpleNetConfig.from_dict({**config, "seed": seed})).fit(root, progress=progress)
    elif model_kind == "supersimplenet":
        from ..supersimplenet.model import SuperSimpleNet
        from ..supersimplenet.config import SuperSimpleNetConfig

        model = SuperSimpleNet(SuperSimpleNetConfig.from_dict({**config, "seed": seed})).fit(root, progress=progress)
    else:
        raise InputError("--model", f"unknown model {model_kind!r}; choose from {', '.join(MODEL_KINDS)}")
    return run_report(model, evaluate(model, root, progress=progress))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def execute(spec: dict) -> dict:
    """Run one job described by ``spec`` (from :func:`job_specs`) and return its result record.

    Never raises for a failing job: an :class:`InputError` becomes ``status="error"`` with its line,
    any other exception the same with its type and a traceback, so that one broken category does not
    stop the others. ``spec["threads"]``, when set, is the torch thread count of this job.
    """
    start = time.perf_counter()
    record = {"format": RESULT_FORMAT, "category": spec["category"], "seed": spec["seed"],
              "model": spec["model"], "fingerprint": spec["fingerprint"], "host": socket.gethostname(),
              "pid": os.getpid(), "started_at": _now()}
    try:
        import torch

        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        record["torch_threads"] = torch.get_num_threads()
        record["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        result = run_job(spec["root"], spec["config"], spec["seed"], spec["model"])
        record.update(status="ok", error=None, result=result)
    except InputError as error:  # a data check lists every problem: the table shows the first
        problems, n = error.lines(), len(getattr(error, "errors", [error]))
        more = f" (and {n - 1} more problem{'s' if n > 2 else ''}, listed in this job's file)" if n > 1 else ""
        record.update(status="error", error=problems[0] + more, problems=problems, result=None)
    except Exception as error:  # a bug or a crash of one job: report it, let the others finish
        record.update(status="error", error=_one_line(error), result=None, traceback=traceback.format_exc())
    record.update(wall_seconds=time.perf_counter() - start, finished_at=_now())
    return record


def _failed_record(spec: dict, error: str) -> dict:
    """The record of a job whose worker died before it could report (killed, out of memory...)."""
    return {"format": RESULT_FORMAT, "category": spec["category"], "seed": spec["seed"], "model": spec["model"],
            "fingerprint": spec["fingerprint"], "status": "error", "error": error, "result": None,
            "wall_seconds": None, "finished_at": _now()}


# ---------------------------------------------------------------------------------------------
# Planning: categories, jobs, fingerprints, what is already done
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One (category, seed) of a benchmark."""

    category: str
    seed: int

    def result_path(self, output: Path) -> Path:
        return Path(output) / "jobs" / self.category / f"seed{self.seed}.json"

    def __str__(self) -> str:
        return f"{self.category} seed {self.seed}"


def list_categories(root: str | Path, categories: Iterable[str] | None = None) -> list[str]:
    """The category folders of ``root``: ``categories`` as given (each must exist), else every
    non-hidden sub-folder, sorted. A broken category is not rejected here: its job reports it."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, "folder not found")
    if not root.is_dir():
        raise InputError(root, "not a folder")
    present = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if categories is None:
        if (root / "train" / "good").is_dir():
            raise InputError(root, "is one category (it has train/good): pass the folder that holds the "
                                   "categories, or use simplenet-edu evaluate")
        if not present:
            raise InputError(root, "holds no category folders (expected ROOT/<category>/train/good, "
                                   "as MVTec AD unpacks)")
        return present
    chosen = list(dict.fromkeys(c.strip() for c in categories if c.strip()))
    if not chosen:
        raise InputError("--categories", "names no category")
    for name in chosen:
        if Path(name).name != name or name in (".", ".."):
            raise InputError("--categories", f"{name!r} is not a folder name inside {root}")
        if not (root / name).is_dir():
            raise InputError(root / name, f"folder not found (categories here: {', '.join(present) or 'none'})")
    return chosen


def fingerprint(config: dict, model_kind: str = "simplenet") -> str:
    """A short hash of everything that makes two results comparable: the result format, the model
    kind and the whole configuration except its seed (each job carries its own)."""
    values = {k: v for k, v in config.items() if k != "seed"}
    text = json.dumps({"format": RESULT_FORMAT, "model": model_kind, "config": values}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(path: Path) -> dict | None:
    """A job's result file, or ``None`` if it is missing or unreadable (then the job runs again)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(record: dict | None, job: Job, fingerprint_: str) -> bool:
    """Whether ``record`` is a successful result of ``job`` under this configuration."""
    return (record is not None and record.get("status") == "ok" and record.get("fingerprint") == fingerprint_
            and record.get("category") == job.category and record.get("seed") == job.seed)


def plan(root: str | Path, seeds: Iterable[int], categories: Iterable[str] | None = None) -> list[Job]:
    """Every job, category by category, seeds in the given order."""
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise InputError("--seeds", "at least one seed is needed")
    if min(seeds) < 0:
        raise InputError("--seeds", "seeds must be non-negative integers")
    return [Job(category, seed) for category in list_categories(root, categories) for seed in seeds]


def job_specs(root: str | Path, jobs: list[Job], config: dict, model_kind: str, fingerprint_: str) -> list[dict]:
    """What a worker needs to run each job: plain values only, so that they pickle to any process."""
    root = Path(root).resolve()
    return [{"category": job.category, "seed": job.seed, "root": str(root / job.category), "config": config,
             "model": model_kind, "fingerprint": fingerprint_} for job in jobs]


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def _spread(values: list) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``None`` with fewer than two values); ``None`` when a
    value is missing (a category without masks has no pixel AUROC)."""
    if not values or any(v is None for v in values):
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return float(mean), None
    return float(mean), float((sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5)


def summarize(jobs: list[Job], records: dict[Job, dict | None]) -> dict:
    """The table as a dict: one row per category, the mean row, job counts.

    A category's row gives mean ± std over its successful seeds. The mean row averages, seed by seed,
    the categories whose every seed succeeded, then gives mean ± std of those averages over the
    seeds (the usual way to put a spread on a benchmark mean).
    """
    categories = list(dict.fromkeys(job.category for job in jobs))
    seeds = list(dict.fromkeys(job.seed for job in jobs))
    rows, complete = [], {}
    for category in categories:
        mine = [(job, records.get(job)) for job in jobs if job.category == category]
        ok = [(job, r) for job, r in mine if r is not None and r["status"] == "ok"]
        failed = [{"seed": job.seed, "error": r["error"]} for job, r in mine if r is not None and r["status"] != "ok"]
        row = {"category": category, "seeds": [job.seed for job, _ in mine], "done": len(ok),
               "failed": len(failed), "pending": len(mine) - len(ok) - len(failed), "errors": failed}
        for key in METRICS:
            row[f"{key}_mean"], row[f"{key}_std"] = _spread([r["result"][key] for _, r in ok])
        walls = [r["wall_seconds"] for _, r in ok if r.get("wall_seconds") is not None]
        row["wall_seconds_mean"] = sum(walls) / len(walls) if walls else None
        row["per_seed"] = {str(job.seed): {key: r["result"][key] for key in METRICS} for job, r in ok}
        rows.append(row)
        if len(ok) == len(mine):
            complete[category] = {job.seed: r["result"] for job, r in ok}

    mean = {"categories": list(complete)}
    for key in METRICS:
        per_seed = []
        for seed in seeds:
            values = [complete[c][seed][key] for c in complete]
            per_seed.append(None if not values or any(v is None for v in values) else sum(values) / len(values))
        mean[f"{key}_mean"], mean[f"{key}_std"] = _spread(per_seed) if complete else (None, None)
    walls = [r["wall_seconds_mean"] for r in rows if r["wall_seconds_mean"] is not None]
    mean["wall_seconds_mean"] = sum(walls) / len(walls) if walls else None
    counts = {"total": len(jobs), "done": sum(r["done"] for r in rows), "failed": sum(r["failed"] for r in rows)}
    counts["pending"] = counts["total"] - counts["done"] - counts["failed"]
    return {"seeds": seeds, "categories": categories, "rows": rows, "mean": mean, "jobs": counts}


def _cell(row: dict, key: str, digits: int = 3) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _size(config: dict) -> str:
    size = config.get("crop_size") or config.get("image_size")
    return f"{size[0]} x {size[1]} px" if isinstance(size, (list, tuple)) else f"{size} px"


def _budget(config: dict) -> str:
    if config.get("steps") is not None and config.get("epochs") is None:
        return f"{config['steps']} steps"
    return f"{config.get('epochs')} passes" if config.get("epochs") is not None else "default budget"


def to_markdown(table: dict) -> str:
    """The table of :func:`summarize` (with ``config``, ``model``, ``data`` and ``command`` added by
    :func:`run_benchmark`) as Markdown: a header, one row per category, the mean row."""
    config, counts = table.get("config", {}), table["jobs"]
    seeds = ", ".join(str(s) for s in table["seeds"])
    lines = [f"# Benchmark of {Path(table.get('data', 'data')).name}", ""]
    if table.get("command"):
        lines += [f"Made by `{table['command']}`.", ""]
    lines += [f"Model {table.get('model', 'simplenet')}: backbone {config.get('backbone')}, "
              f"{_size(config)}, {_budget(config)}; the model of the last training step, "
              f"nothing chosen on the test set. Mean ± sample std over seeds {seeds}; AUPRO up to a "
              f"false-positive rate of 0.3; seconds: wall time of one job (training and evaluation). "
              f"Jobs: {counts['done']} of {counts['total']} done, {counts['failed']} failed, "
              f"{counts['pending']} pending.", "",
              "| category | image AUROC | pixel AUROC | AUPRO | seeds done | s per job |",
              "|---|---|---|---|---|---|"]
    n = len(table["seeds"])
    for row in table["rows"]:
        seeds_done = f"{row['done']}/{n}" + (f" ({row['failed']} failed)" if row["failed"] else "")
        wall = "" if row["wall_seconds_mean"] is None else f"{row['wall_seconds_mean']:.1f}"
        if row["done"] == 0 and row["failed"]:
            messages = list(dict.fromkeys(e["error"] for e in row["errors"]))
            error = "error: " + "; ".join(messages).replace("|", "\\|")
            lines.append(f"| {row['category']} | {error} | | | {seeds_done} | |")
        elif row["done"] == 0:
            lines.append(f"| {row['category']} | pending | | | {seeds_done} | |")
        else:
            lines.append(f"| {row['category']} | {_cell(row, 'image_auroc')} | {_cell(row, 'pixel_auroc')} | "
                         f"{_cell(row, 'aupro')} | {seeds_done} | {wall} |")
    mean = table["mean"]
    wall = "" if mean["wall_seconds_mean"] is None else f"{mean['wall_seconds_mean']:.1f}"
    k, m = len(mean["categories"]), len(table["rows"])
    label = "**mean**" if k == m else f"**mean** ({k} of {m} categories)"
    lines.append(f"| {label} | {_cell(mean, 'image_auroc')} | {_cell(mean, 'pixel_auroc')} | "
                 f"{_cell(mean, 'aupro')} | | {wall} |")
    partial = [e for row in table["rows"] if row["done"] for e in row["errors"]]
    if partial:
        lines += ["", "Failed jobs:"]
        lines += [f"- {row['category']} seed {e['seed']}: {e['error']}" for row in table["rows"] if row["done"]
                  for e in row["errors"]]
    return "\n".join(lines) + "\n"


def job_line(job: Job, record: dict) -> str:
    """One finished job in one line, for stderr."""
    if record["status"] != "ok":
        return f"{job}: error: {record['error']}"
    result = record["result"]

    def fmt(key):
        return "n/a" if result[key] is None else f"{result[key]:.3f}"

    return (f"{job}: image AUROC {fmt('image_auroc')}, pixel AUROC {fmt('pixel_auroc')}, AUPRO {fmt('aupro')} "
            f"({record['wall_seconds']:.1f} s on {record.get('host', '?')})")


# ---------------------------------------------------------------------------------------------
# Engines: each yields (index, record) as jobs finish
# ---------------------------------------------------------------------------------------------


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as ids for ``CUDA_VISIBLE_DEVICES``."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed or [str(i) for i in range(torch.cuda.device_count())]


def _in_process(specs: list[dict]) -> Iterator[tuple[int, dict]]:
    for index, spec in enumerate(specs):
        yield index, execute(spec)


def _init_worker(threads: int, gpus) -> None:
    """Start of a local worker process, before it imports torch: its thread count and its GPU."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _local_pool(specs: list[dict], workers: int, threads: int, gpus: list[str]) -> Iterator[tuple[int, dict]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked copy of a process that has run torch's thread pools can hang.
    context = multiprocessing.get_context("spawn")
    queue = None
    if gpus:
        queue = context.Queue()
        for i in range(workers):
            queue.put(gpus[i % len(gpus)])
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads, queue))
    futures = {pool.submit(execute, spec): index for index, spec in enumerate(specs)}
    finished = False
    try:
        for future in as_completed(futures):
            index = futures[future]
            try:
                record = future.result()
            except Exception as error:  # the worker process died (killed, out of memory, ...)
                record = _failed_record(specs[index], f"worker process failed: {_one_line(error)}")
            yield index, record
        finished = True
    finally:
        if not finished:  # interrupted: stop the jobs in flight now rather than wait for them
            for process in dict(getattr(pool, "_processes", None) or {}).values():
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


def import_ray():
    """The ``ray`` module, or an :class:`InputError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray", f"Ray is not installed; install it with {RAY_INSTALL}") from None
    return ray


def ray_task_options(resources: dict, node_resources: list[dict], device: str, gpus_per_job: float,
                     cpus_per_job: float | None) -> dict:
    """What one job asks of a Ray cluster: ``num_gpus`` (and one CPU) when the cluster has GPUs and the
    configuration may use them, else ``num_cpus``; checked against the largest node, since a task that
    no node can hold would wait for ever."""
    largest = {key: max((node.get(key, 0) for node in node_resources), default=0) for key in ("CPU", "GPU")}
    if gpus_per_job <= 0 or (gpus_per_job > 1 and gpus_per_job != int(gpus_per_job)):
        raise InputError("--gpus-per-job", "must be a fraction of one GPU (0.5) or a whole number (1, 2)")
    if cpus_per_job is not None and cpus_per_job <= 0:
        raise InputError("--cpus-per-job", "must be positive")
    if resources.get("GPU", 0) > 0 and device != "cpu":
        options = {"num_gpus": gpus_per_job, "num_cpus": cpus_per_job or 1}
        if gpus_per_job > largest["GPU"]:
            raise InputError("--gpus-per-job", f"asks for {gpus_per_job:g} GPUs, but no node has more than "
                                               f"{largest['GPU']:g}")
    else:
        options = {"num_cpus": cpus_per_job or min(DEFAULT_RAY_CPUS, max(1, largest["CPU"]))}
    if options["num_cpus"] > largest["CPU"]:
        raise InputError("--cpus-per-job", f"asks for {options['num_cpus']:g} CPUs, but no node has more than "
                                           f"{largest['CPU']:g}")
    return options


def connect_ray(address: str):
    """``(ray, started)``: this process's Ray session if it has one, else a connection to the cluster
    at ``address`` (``"auto"``: ``RAY_ADDRESS`` or the cluster ``ray start --head`` started on this
    machine). ``started`` says whether we connected, and so must disconnect."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as error:
        problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"--ray {address}", f"no Ray cluster reached ({problem}); start one with "
                                             f"`ray start --head`, or give its address") from None
    return ray, True


def _ray_engine(ray, specs: list[dict], options: dict) -> Iterator[tuple[int, dict]]:
    threads = max(1, int(options["num_cpus"]))
    task = ray.remote(execute).options(max_retries=1, **options)
    refs = {task.remote({**spec, "threads": threads}): index for index, spec in enumerate(specs)}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                index = refs.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as error:  # the worker died, the node was lost, ...
                    record = _failed_record(specs[index], f"Ray task failed: {_one_line(error)}")
                yield index, record
    finally:
        for ref in refs:  # interrupted: do not leave our jobs running on the cluster
            ray.cancel(ref, force=True)


# ---------------------------------------------------------------------------------------------
# The whole benchmark
# ---------------------------------------------------------------------------------------------


def run_benchmark(root: str | Path, output: str | Path, config, seeds: Iterable[int] = (0, 1, 2),
                  categories: Iterable[str] | None = None, model_kind: str = "simplenet", workers: int = 1,
                  ray_address: str | None = None, gpus_per_job: float = 1.0, cpus_per_job: float | None = None,
                  progress: bool = True, command: str | None = None) -> dict:
    """Train and evaluate every ``(category, seed)`` of ``root`` that ``output`` does not hold yet.

    Args:
        root: folder of MVTec-layout category folders (as MVTec AD unpacks); with Ray, a path that
            every node sees.
        output: folder for ``jobs/<category>/seed<k>.json``, ``table.md`` and ``table.json``.
        config: the model's configuration (a ``SimpleNetConfig`` or its dict); its seed is replaced
            by each job's.
        seeds, categories: the jobs (default categories: every sub-folder of ``root``).
        model_kind: passed to :func:`run_job`.
        workers: local processes (ignored with ``ray_address``).
        ray_address: ``"auto"`` or ``"HOST:PORT"`` of a running Ray cluster: one task per job.
        gpus_per_job, cpus_per_job: what each Ray task asks for (see :func:`ray_task_options`).
        progress: a progress bar over jobs, on stderr (the one line per finished job goes there too,
            with or without it).
        command: the command line, quoted in the table.

    Returns:
        The table (:func:`summarize`) with ``data``, ``model``, ``config``, ``fingerprint``,
        ``engine``, ``command``, ``ran`` (jobs run this time), ``skipped`` (results reused) and
        ``wall_seconds``.
    """
    start = time.perf_counter()
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    if model_kind not in MODEL_KINDS:
        raise InputError("--model", f"unknown model {model_kind!r}; choose from {', '.join(MODEL_KINDS)}")
    if workers < 1:
        raise InputError("--workers", "must be a positive integer")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(output, "exists and is not a folder")
    jobs = plan(root, seeds, categories)
    fp = fingerprint(config, model_kind)
    records: dict[Job, dict | None] = {}
    for job in jobs:
        record = read_record(job.result_path(output))
        records[job] = record if is_done(record, job, fp) else None
    todo = [job for job in jobs if records[job] is None]
    specs = job_specs(root, todo, config, model_kind, fp)

    if ray_address is not None and todo:
        ray, started = connect_ray(ray_address)
        try:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            options = ray_task_options(ray.cluster_resources(), nodes, config.get("device", "auto"),
                                       gpus_per_job, cpus_per_job)
        except BaseException:
            if started:
                ray.shutdown()
            raise
        asks = ", ".join(f"{v:g} {k.removeprefix('num_').upper()}" for k, v in options.items())
        engine_text = f"Ray ({len(nodes)} node(s)), one task per job asking for {asks}"
        engine = _ray_engine(ray, specs, options)
    else:
        ray, started = None, False
        n = min(workers, max(1, len(todo)))
        threads = max(1, available_cores() // n)
        gpus = visible_gpus() if n > 1 and config.get("device", "auto") != "cpu" else []
        if n == 1:
            engine_text, engine = "this process", _in_process(specs)
        else:
            on_gpus = f", GPUs {','.join(gpus)} in turn" if gpus else ""
            engine_text = f"{n} local worker processes, {threads} torch thread(s) each{on_gpus}"
            engine = _local_pool(specs, n, threads, gpus)

    if not todo:
        engine_text = "nothing to run"
    table_info = {"data": str(root), "model": model_kind, "config": {k: v for k, v in config.items() if k != "seed"},
                  "fingerprint": fp, "engine": engine_text, "command": command}

    def write_table() -> dict:
        table = {**table_info, **summarize(jobs, records), "updated_at": _now()}
        write_text(output / "table.json", json.dumps(table, indent=2) + "\n")
        write_text(output / "table.md", to_markdown(table))
        return table

    n_categories = len({job.category for job in jobs})
    message = (f"{len(jobs)} jobs ({n_categories} categories x {len(jobs) // max(1, n_categories)} seeds): "
               f"{len(jobs) - len(todo)} done before, {len(todo)} to run")
    print(message + (f" on {engine_text}" if todo else ""), file=sys.stderr)
    write_table()
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="benchmark", unit="job", disable=not progress)
    try:
        for index, record in engine:
            job = todo[index]
            write_text(job.result_path(output), json.dumps(record, indent=2) + "\n")
            records[job] = record
            write_table()
            bar.write(job_line(job, record), file=sys.stderr)
            bar.update()
    finally:
        bar.close()
        engine.close()
        if started:
            ray.shutdown()
    table = write_table()
    table.update(ran=len(todo), skipped=len(jobs) - len(todo), wall_seconds=time.perf_counter() - start)
    return table

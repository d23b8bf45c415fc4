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
a changed configuration reruns them all, a failed job is tried again. A run killed outright (SIGKILL,
a power cut) may leave a temporary file, which the next run removes, or a result file cut short,
which the next run reports in one line and reruns.

**Engines** (:mod:`.engines`): local worker processes (``workers``), each with its share of the
cores and, on a machine with GPUs, a GPU of its own; or one Ray task per job on an existing cluster
(``ray_address``). With Ray, ``ROOT`` must be a path that every node sees (a shared file system) and
every node needs simplenet-edu installed; only this process writes ``DIR``. A job whose worker dies
(killed, out of memory, a lost node) is retried a bounded number of times, then reported as failed
with its error while the other jobs finish.

Every model is built and trained by :func:`run_job`, through the registry of model kinds
(:mod:`simplenet_edu.core.registry`).

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
from typing import Iterable

from tqdm.auto import tqdm

from ..evaluation.report import budget_text, input_text
from ..utils.atomic import check_writable, remove_temps, write_text
from ..utils.errors import InputError
from ..utils.stats import MEAN_STD_NOTE, format_mean_std, mean_std
from .engines import available_cores  # noqa: F401  (part of this module's API)
from .engines import RAY_RETRIES, open_engine

RESULT_FORMAT = 1                 # bump when a job's result changes meaning: a result of another format reruns
METRICS = ("image_auroc", "pixel_auroc", "aupro")


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
        model_kind: a kind of :data:`simplenet_edu.core.registry.MODEL_KINDS`.
        progress: progress bars of feature extraction, training and scoring.

    Returns:
        The report that ``simplenet-edu evaluate --output`` writes (image_auroc, pixel_auroc, aupro,
        thresholds, timings, config...). Raises :class:`InputError` for a broken folder.
    """
    from .. import data as data_lib
    from ..core.registry import config_class, model_class
    from ..evaluation.evaluator import evaluate
    from ..evaluation.report import run_report

    root = Path(category_root)
    # The whole folder, train and test, before the backbone is even loaded: a broken category costs
    # its job a second, not a training run.
    data_lib.check_dataset(root, need_train=True, need_test=True, image_size=config.get("image_size"),
                           crop_size=config.get("crop_size"), backbone=config.get("backbone"))
    model = model_class(model_kind)(config_class(model_kind).from_dict({**config, "seed": seed}))
    model.fit(root, progress=progress)
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


def lost_record(spec: dict, what: str, error: BaseException) -> dict:
    """The record of a job whose worker died before it could report (killed, out of memory, a lost
    node): ``what`` says which worker (``"Ray task failed"``)."""
    return {"format": RESULT_FORMAT, "category": spec["category"], "seed": spec["seed"], "model": spec["model"],
            "fingerprint": spec["fingerprint"], "status": "error", "error": f"{what}: {_one_line(error)}",
            "result": None, "wall_seconds": None, "finished_at": _now()}


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


def load_record(path: Path) -> tuple[dict | None, str | None]:
    """``(record, problem)`` of a job's result file: ``(None, None)`` when there is none; ``(None,
    why)`` when it cannot be used (cut short by a crash, not JSON, not a job's result): its job runs
    again, and the caller says so."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as error:
        return None, f"unreadable job result ({_one_line(error)})"
    try:
        record = json.loads(text)
    except ValueError:
        return None, f"job result cut short or not JSON ({len(text.encode())} bytes)"
    if not isinstance(record, dict) or "status" not in record:
        return None, "not a job result (no status)"
    if record["status"] == "ok" and not (isinstance(record.get("result"), dict)
                                         and all(key in record["result"] for key in METRICS)):
        return None, "a successful job result without its metrics"
    return record, None


def read_record(path: Path) -> dict | None:
    """A job's result file, or ``None`` if it is missing or unusable (then the job runs again)."""
    return load_record(path)[0]


def is_done(record: dict | None, job: Job, fingerprint_: str) -> bool:
    """Whether ``record`` is a successful result of ``job`` under this configuration."""
    return (record is not None and record.get("status") == "ok" and record.get("fingerprint") == fingerprint_
            and record.get("category") == job.category and record.get("seed") == job.seed
            and isinstance(record.get("result"), dict) and all(key in record["result"] for key in METRICS))


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


def summarize(jobs: list[Job], records: dict[Job, dict | None]) -> dict:
    """The table as a dict: one row per category, the mean row, job counts.

    A category's row gives mean ± sample std (:func:`~simplenet_edu.utils.stats.mean_std`) over its
    successful seeds. The mean row averages, seed by seed, the categories whose every seed succeeded,
    then gives mean ± std of those averages over the seeds (the usual way to put a spread on a
    benchmark mean).
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
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(r["result"][key] for _, r in ok)
        walls = [r["wall_seconds"] for _, r in ok if r.get("wall_seconds") is not None]
        row["wall_seconds_mean"] = mean_std(walls)[0]
        row["per_seed"] = {str(job.seed): {key: r["result"][key] for key in METRICS} for job, r in ok}
        rows.append(row)
        if len(ok) == len(mine):
            complete[category] = {job.seed: r["result"] for job, r in ok}

    mean = {"categories": list(complete)}
    for key in METRICS:
        per_seed = [mean_std(complete[c][seed][key] for c in complete)[0] for seed in seeds]
        mean[f"{key}_mean"], mean[f"{key}_std"] = mean_std(per_seed) if complete else (None, None)
    walls = [r["wall_seconds_mean"] for r in rows if r["wall_seconds_mean"] is not None]
    mean["wall_seconds_mean"] = mean_std(walls)[0]
    counts = {"total": len(jobs), "done": sum(r["done"] for r in rows), "failed": sum(r["failed"] for r in rows)}
    counts["pending"] = counts["total"] - counts["done"] - counts["failed"]
    return {"seeds": seeds, "categories": categories, "rows": rows, "mean": mean, "jobs": counts}


def _cell(row: dict, key: str) -> str:
    return format_mean_std(row[f"{key}_mean"], row[f"{key}_std"])


def to_markdown(table: dict) -> str:
    """The table of :func:`summarize` (with ``config``, ``model``, ``data`` and ``command`` added by
    :func:`run_benchmark`) as Markdown: a header, one row per category, the mean row."""
    config, counts = table.get("config", {}), table["jobs"]
    seeds = ", ".join(str(s) for s in table["seeds"])
    lines = [f"# Benchmark of {Path(table.get('data', 'data')).name}", ""]
    if table.get("command"):
        lines += [f"Made by `{table['command']}`.", ""]
    lines += [f"Model {table.get('model', 'simplenet')}: backbone {config.get('backbone')}, "
              f"{input_text(config)}, {budget_text(config)}; the model of the last training step, "
              f"nothing chosen on the test set. Cells: {MEAN_STD_NOTE}, over seeds {seeds}; AUPRO up to a "
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
# The whole benchmark
# ---------------------------------------------------------------------------------------------


def run_benchmark(root: str | Path, output: str | Path, config, seeds: Iterable[int] = (0, 1, 2),
                  categories: Iterable[str] | None = None, model_kind: str = "simplenet", workers: int = 1,
                  ray_address: str | None = None, gpus_per_job: float = 1.0, cpus_per_job: float | None = None,
                  ray_retries: int = RAY_RETRIES, progress: bool = True, command: str | None = None) -> dict:
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
        gpus_per_job, cpus_per_job: what each Ray task asks for
            (:func:`~simplenet_edu.apps.engines.ray_task_options`).
        ray_retries: times a Ray job is run again when its worker dies, before it counts as failed.
        progress: a progress bar over jobs, on stderr (the one line per finished job goes there too,
            with or without it).
        command: the command line, quoted in the table.

    Returns:
        The table (:func:`summarize`) with ``data``, ``model``, ``config``, ``fingerprint``,
        ``engine``, ``command``, ``ran`` (jobs run this time), ``skipped`` (results reused) and
        ``wall_seconds``.
    """
    from ..core.registry import config_class

    start = time.perf_counter()
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    config_class(model_kind)  # an unknown kind fails here, before any job
    if workers < 1:
        raise InputError("--workers", "must be a positive integer")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(output, "exists and is not a folder")
    check_writable(output, folder=True)
    jobs = plan(root, seeds, categories)
    fp = fingerprint(config, model_kind)
    # A run killed while writing leaves its temporary files: nothing reads them, and they go now.
    removed = remove_temps(output)
    if removed:
        print(f"{output}: removed {len(removed)} temporary file{'s' * (len(removed) > 1)} left by an interrupted "
              "run", file=sys.stderr)
    records: dict[Job, dict | None] = {}
    for job in jobs:
        record, problem = load_record(job.result_path(output))
        if problem:
            print(f"simplenet-edu: warning: {job.result_path(output)}: {problem}; the job runs again",
                  file=sys.stderr)
        records[job] = record if is_done(record, job, fp) else None
    todo = [job for job in jobs if records[job] is None]
    engine = open_engine(execute, lost_record, job_specs(root, todo, config, model_kind, fp),
                         device=config.get("device", "auto"), workers=workers, ray_address=ray_address,
                         gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job, ray_retries=ray_retries)
    table_info = {"data": str(root), "model": model_kind, "config": {k: v for k, v in config.items() if k != "seed"},
                  "fingerprint": fp, "engine": engine.text, "command": command}

    def write_table() -> dict:
        table = {**table_info, **summarize(jobs, records), "updated_at": _now()}
        write_text(output / "table.json", json.dumps(table, indent=2) + "\n")
        write_text(output / "table.md", to_markdown(table))
        return table

    n_categories = len({job.category for job in jobs})
    message = (f"{len(jobs)} jobs ({n_categories} categories x {len(jobs) // max(1, n_categories)} seeds): "
               f"{len(jobs) - len(todo)} done before, {len(todo)} to run")
    print(message + (f" on {engine.text}" if todo else ""), file=sys.stderr)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="benchmark", unit="job", disable=not progress)
    try:
        write_table()
        for index, record in engine.results:
            job = todo[index]
            write_text(job.result_path(output), json.dumps(record, indent=2) + "\n")
            records[job] = record
            write_table()
            bar.write(job_line(job, record), file=sys.stderr)
            bar.update()
    finally:
        bar.close()
        engine.close()
    table = write_table()
    table.update(ran=len(todo), skipped=len(jobs) - len(todo), wall_seconds=time.perf_counter() - start)
    return table

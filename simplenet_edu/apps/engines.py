"""Where the benchmark's jobs run: this process, a pool of local worker processes, or a Ray cluster.

An engine runs ``task(spec)`` for every spec (plain values, so that they pickle to any process) and
yields ``(index, record)`` as jobs finish, in the order they finish. A job whose worker dies (killed,
out of memory, a lost Ray node) is reported through ``lost(spec, what, error)``, which makes its
record; the other jobs go on.

- local processes: each of ``workers`` spawned processes runs ``cores // workers`` torch threads, so
  two workers on two cores do not fight over them; on a machine with GPUs, worker ``i`` sees GPU
  ``i % n_gpus`` only. One worker runs the jobs in this process.
- Ray: one task per job on an existing cluster, asking for ``gpus_per_job`` GPUs (a fraction shares a
  GPU) when the cluster has GPUs, else ``cpus_per_job`` CPUs; results travel back to this process. A
  task whose worker process dies is run again, up to ``ray_retries`` times (:data:`RAY_RETRIES`),
  then reported through ``lost``.

A local worker ends itself when the process that started it is gone (killed outright, it cannot stop
its pool), so a killed benchmark leaves no worker running its jobs.

Nothing here imports torch at module level: a spawned worker sets its thread count before torch
loads (:func:`_init_worker`), and the command line reads :data:`DEFAULT_RAY_CPUS` for its help.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from ..utils.errors import InputError

RAY_INSTALL = 'pip install -e ".[cluster]" in the repository (or pip install "ray[default]")'
DEFAULT_RAY_CPUS = 2              # CPUs a job asks for on a cluster without GPUs
RAY_RETRIES = 2                   # times a Ray job runs again after its worker died
PARENT_CHECK_S = 1.0              # how often a local worker checks that its parent is alive

Task = Callable[[dict], dict]
Lost = Callable[[dict, str, BaseException], dict]


@dataclass
class Engine:
    """A started engine: ``text`` says where the jobs run (for the table), ``results`` yields
    ``(index into the specs, record)`` as jobs finish; :meth:`close` stops what is still running."""

    text: str
    results: Iterator[tuple[int, dict]]
    ray: object | None = None     # the Ray module, when this engine connected and must disconnect

    def close(self) -> None:
        self.results.close()
        if self.ray is not None:
            self.ray.shutdown()


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


# ------------------------------------------------------------------ this process and local workers


def _in_process(task: Task, specs: list[dict]) -> Iterator[tuple[int, dict]]:
    for index, spec in enumerate(specs):
        yield index, task(spec)


def _exit_with(parent: int) -> None:
    """End this process once ``parent`` is no longer its parent (it died and this one was adopted)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _init_worker(threads: int, gpus, parent: int | None = None) -> None:
    """Start of a local worker process, before it imports torch: its thread count and its GPU, and a
    watch on ``parent``: a worker whose benchmark was killed ends instead of running on alone."""
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _local_pool(task: Task, lost: Lost, specs: list[dict], workers: int, threads: int,
                gpus: list[str]) -> Iterator[tuple[int, dict]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked copy of a process that has run torch's thread pools can hang.
    context = multiprocessing.get_context("spawn")
    queue = None
    if gpus:
        queue = context.Queue()
        for i in range(workers):
            queue.put(gpus[i % len(gpus)])
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(threads, queue, os.getpid()))
    futures = {pool.submit(task, spec): index for index, spec in enumerate(specs)}
    finished = False
    try:
        for future in as_completed(futures):
            index = futures[future]
            try:
                record = future.result()
            except Exception as error:  # the worker process died (killed, out of memory, ...)
                record = lost(specs[index], "worker process failed", error)
            yield index, record
        finished = True
    finally:
        if not finished:  # interrupted: stop the jobs in flight at once rather than wait for them
            for process in dict(getattr(pool, "_processes", None) or {}).values():
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ Ray


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


def _ray_tasks(ray, task: Task, lost: Lost, specs: list[dict], options: dict,
               retries: int = RAY_RETRIES) -> Iterator[tuple[int, dict]]:
    threads = max(1, int(options["num_cpus"]))
    # max_retries counts only system failures (a dead worker, a lost node): a job's own error is
    # already a record, returned normally.
    remote = ray.remote(task).options(max_retries=retries, **options)
    refs = {remote.remote({**spec, "threads": threads}): index for index, spec in enumerate(specs)}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                index = refs.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as error:  # the worker died, the node was lost, ...
                    record = lost(specs[index], f"Ray task failed ({retries + 1} attempts)", error)
                yield index, record
    finally:
        for ref in refs:  # interrupted: do not leave our jobs running on the cluster
            ray.cancel(ref, force=True)


def _ray_engine(task: Task, lost: Lost, specs: list[dict], address: str, device: str, gpus_per_job: float,
                cpus_per_job: float | None, retries: int = RAY_RETRIES) -> Engine:
    if not (isinstance(retries, int) and retries >= 0):
        raise InputError("--retries", f"must be a whole number >= 0, got {retries!r}")
    ray, started = connect_ray(address)
    try:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        options = ray_task_options(ray.cluster_resources(), nodes, device, gpus_per_job, cpus_per_job)
    except BaseException:
        if started:
            ray.shutdown()
        raise
    asks = ", ".join(f"{v:g} {k.removeprefix('num_').upper()}" for k, v in options.items())
    retried = f"run again up to {retries} time{'s' * (retries != 1)}" if retries else "not run again"
    return Engine(f"Ray ({len(nodes)} node(s)), one task per job asking for {asks}, {retried} if its worker dies",
                  _ray_tasks(ray, task, lost, specs, options, retries), ray if started else None)


# ------------------------------------------------------------------ choosing one


def open_engine(task: Task, lost: Lost, specs: list[dict], device: str = "auto", workers: int = 1,
                ray_address: str | None = None, gpus_per_job: float = 1.0,
                cpus_per_job: float | None = None, ray_retries: int = RAY_RETRIES) -> Engine:
    """The engine for ``specs``: Ray with ``ray_address``, else ``workers`` local processes (one: this
    process). ``device`` is the configuration's: ``"cpu"`` keeps the jobs off the GPUs."""
    if not specs:
        return Engine("nothing to run", _in_process(task, []))
    if ray_address is not None:
        return _ray_engine(task, lost, specs, ray_address, device, gpus_per_job, cpus_per_job, ray_retries)
    n = min(workers, len(specs))
    if n == 1:
        return Engine("this process", _in_process(task, specs))
    threads = max(1, available_cores() // n)
    gpus = visible_gpus() if device != "cpu" else []
    on_gpus = f", GPUs {','.join(gpus)} in turn" if gpus else ""
    return Engine(f"{n} local worker processes, {threads} torch thread(s) each{on_gpus}",
                  _local_pool(task, lost, specs, n, threads, gpus))

"""simplenet-edu benchmark: jobs, resume, a broken category, local workers and a real local Ray; a run
killed outright (real SIGKILL) and a Ray worker killed during its job.

The runs train tiny models (three 64 px demo categories, 6 training images, 10 steps) so that the
engines, not the training, are what is tested. One Ray session serves the whole module.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simplenet_edu.apps import benchmark, engines
from simplenet_edu.apps.benchmark import Job
from simplenet_edu.apps.cli import main
from simplenet_edu.data import DEMO_CATEGORIES, make_demo_dataset
from simplenet_edu.utils.errors import InputError
from simplenet_edu.utils.stats import MEAN_STD_NOTE

FAST = ["--preset", "quick", "--image-size", "64", "--steps", "10", "--device", "cpu", "--seeds", "0"]
LOCAL = [*FAST, "--device", "auto"]  # the local run's options (and so its fingerprint)
GOOD = sorted(DEMO_CATEGORIES)


def run(argv, capsys):
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Three tiny demo categories and a broken one (brick's copy with a truncated training image)."""
    root = tmp_path_factory.mktemp("bench_data")
    for category in DEMO_CATEGORIES:
        make_demo_dataset(root, category, image_size=64, n_train=6, n_test_good=3, n_test_per_defect=1)
    shutil.copytree(root / "brick", root / "broken")
    image = root / "broken" / "train" / "good" / "000.png"
    image.write_bytes(image.read_bytes()[:100])
    return root


def records(output):
    return {(p.parent.name, p.name): json.loads(p.read_text()) for p in sorted((output / "jobs").rglob("*.json"))}


def check_run(output, code, out):
    """What every engine must produce: three good results, the broken one's error, both tables."""
    assert code == 1  # one job failed
    found = records(output)
    assert sorted(found) == sorted((c, "seed0.json") for c in [*GOOD, "broken"])
    for category in GOOD:
        record = found[(category, "seed0.json")]
        assert record["status"] == "ok" and record["pid"] != os.getpid()
        for key in ("image_auroc", "pixel_auroc", "aupro"):
            assert 0.0 <= record["result"][key] <= 1.0
        assert record["result"]["config"]["steps"] == 10
    broken = found[("broken", "seed0.json")]
    assert broken["status"] == "error" and broken["result"] is None
    assert "broken/train/good/000.png" in broken["error"] and "\n" not in broken["error"]

    table = json.loads((output / "table.json").read_text())
    assert table["jobs"] == {"total": 4, "done": 3, "failed": 1, "pending": 0}
    rows = {row["category"]: row for row in table["rows"]}
    assert rows["brick"]["image_auroc_mean"] == found[("brick", "seed0.json")]["result"]["image_auroc"]
    assert rows["broken"]["errors"] == [{"seed": 0, "error": broken["error"]}]
    assert table["mean"]["categories"] == GOOD
    expected = sum(found[(c, "seed0.json")]["result"]["aupro"] for c in GOOD) / 3
    assert table["mean"]["aupro_mean"] == pytest.approx(expected)
    markdown = (output / "table.md").read_text()
    assert f"| broken | error: {broken['error']} |" in markdown
    assert "**mean** (3 of 4 categories)" in markdown
    assert markdown in out + "\n"  # the table is printed too
    return found


@pytest.fixture(scope="module")
def local_run(root, tmp_path_factory):
    output = tmp_path_factory.mktemp("bench_local") / "out"
    with pytest.MonkeyPatch.context() as patch:
        # As if this machine had GPUs 3 and 5: each worker must get one of its own. (Without CUDA,
        # "--device auto" still runs on the CPU.)
        patch.setattr(engines, "visible_gpus", lambda: ["3", "5"])
        code = main(["--quiet", "benchmark", "--data", str(root), "--output", str(output), "--workers", "2", *LOCAL])
    return output, code


def test_two_local_workers_run_every_job_and_report_the_broken_one(local_run, capsys):
    output, code = local_run
    found = check_run(output, code, (output / "table.md").read_text())
    # Two workers on this machine's cores: each runs its share of the torch threads.
    threads = max(1, engines.available_cores() // 2)
    assert {found[(c, "seed0.json")]["torch_threads"] for c in GOOD} == {threads}
    gpu_of = {record["pid"]: record["cuda_visible_devices"] for record in found.values()}
    assert set(gpu_of.values()) <= {"3", "5"} and len(set(gpu_of.values())) == len(gpu_of)


@pytest.fixture
def one_thread():
    """The in-process job on one torch thread: on a busy machine two threads of one process mostly
    wait for each other (benchmarks/README.md), and this test is about which jobs run, not how fast."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resume_reruns_only_the_deleted_job(root, local_run, tmp_path, capsys, one_thread):
    output = tmp_path / "out"
    shutil.copytree(local_run[0], output)
    (output / "jobs" / "gravel" / "seed0.json").unlink()
    before = {p: p.read_bytes() for p in (output / "jobs").rglob("*.json")}
    code, out, err = run(["benchmark", "--data", str(root), "--output", str(output), *LOCAL], capsys)
    # brick and grass were done; gravel was deleted and broken had failed: those two run again.
    assert "4 jobs (4 categories x 1 seeds): 2 done before, 2 to run" in err
    assert code == 1
    for path, data in before.items():
        if path.parent.name in ("brick", "grass"):
            assert path.read_bytes() == data, f"{path} was rewritten"
    again = json.loads((output / "jobs" / "gravel" / "seed0.json").read_text())
    assert again["status"] == "ok" and again["pid"] == os.getpid()  # ran now, in this process
    # A second rerun has nothing left but the broken category.
    code, _, err = run(["benchmark", "--data", str(root), "--output", str(output), *LOCAL], capsys)
    assert "3 done before, 1 to run" in err


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (read from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    still = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            still.add(pid)
    return still


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
def test_a_benchmark_killed_outright_resumes_and_leaves_no_worker(root, tmp_path, capsys, start_process):
    """SIGKILL to a running ``benchmark --workers 2`` once its first job is written: its worker
    processes end by themselves, and the next run reuses the finished jobs and runs the rest. A result
    cut short (a power cut before the data reached the disk) is named and its job run again."""
    output = tmp_path / "out"
    argv = ["benchmark", "--data", str(root), "--output", str(output), "--categories", "brick,gravel,grass", *FAST]
    process = start_process([sys.executable, "-m", "simplenet_edu", "--quiet", *argv, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: list((output / "jobs").rglob("seed0.json")) or process.poll() is not None, 180,
             "the first job's result")
    workers = descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert workers, "no worker process was running"
    # Adopted by init, each worker notices its parent is gone and ends (a stuck worker would wait for ever).
    wait_for(lambda: not alive(workers), 30, f"the killed run's workers {sorted(alive(workers))} to end")

    finished = sorted((output / "jobs").rglob("seed0.json"))
    cut, kept = finished[0], {p: p.read_bytes() for p in finished[1:]}
    cut.write_bytes(cut.read_bytes()[:200])
    code, out, err = run(argv, capsys)
    assert code == 0 and "Traceback" not in err
    assert f"simplenet-edu: warning: {cut}: job result cut short or not JSON (200 bytes); the job runs again" in err
    assert f"3 jobs (3 categories x 1 seeds): {len(kept)} done before, {3 - len(kept)} to run" in err
    for path, content in kept.items():
        assert path.read_bytes() == content, f"{path} was run again"
    assert json.loads(cut.read_text())["status"] == "ok"
    table = json.loads((output / "table.json").read_text())
    assert table["jobs"] == {"total": 3, "done": 3, "failed": 0, "pending": 0}


KILLED_WHILE_WRITING = """\
import os, signal, sys
from simplenet_edu.apps import benchmark
from simplenet_edu.apps.cli import main
from simplenet_edu.utils.atomic import atomic_path

real_write_text = benchmark.write_text

def write_text(path, text, newline=None):
    if path.name == "seed0.json":   # halfway through the job's result
        with atomic_path(path) as tmp:
            tmp.write_text(text[: len(text) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    return real_write_text(path, text, newline)

benchmark.write_text = write_text
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_while_writing_leaves_a_temporary_file_the_next_run_removes(root, tmp_path, capsys, start_process):
    """A real SIGKILL halfway through writing a job's result leaves its temporary file: the next run
    removes it, says so, and runs the job."""
    output = tmp_path / "out"
    argv = ["benchmark", "--data", str(root), "--output", str(output), "--categories", "gravel", *FAST]
    process = start_process([sys.executable, "-c", KILLED_WHILE_WRITING, "--quiet", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]
    result = output / "jobs" / "gravel" / "seed0.json"
    temporary = result.parent / ".seed0.json.tmp.json"
    assert temporary.is_file() and not result.exists()

    code, out, err = run(argv, capsys)
    assert code == 0 and "Traceback" not in err
    assert f"{output}: removed 1 temporary file left by an interrupted run" in err
    assert "1 jobs (1 categories x 1 seeds): 0 done before, 1 to run" in err
    assert not temporary.exists() and json.loads(result.read_text())["status"] == "ok"


def test_an_unusable_result_file_is_named_and_rerun():
    """What counts as a usable result, by hand."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed0.json"
        assert benchmark.load_record(path) == (None, None)                     # no file: just run it
        for text, problem in (('{"status": "ok", "res', "job result cut short or not JSON (21 bytes)"),
                              ("[1, 2]", "not a job result (no status)"),
                              ('{"status": "ok", "result": {"image_auroc": 0.9}}',
                               "a successful job result without its metrics")):
            path.write_text(text)
            assert benchmark.load_record(path) == (None, problem)
        path.write_text(json.dumps(make_record("a", 0, "f")))
        assert benchmark.load_record(path) == (make_record("a", 0, "f"), None)


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[cluster]' (or '.[test]')")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_runs_one_task_per_job_with_the_same_results(ray_session, root, local_run, tmp_path, capsys):
    output = tmp_path / "out"
    code, out, err = run(["benchmark", "--data", str(root), "--output", str(output), "--ray", "auto",
                          "--cpus-per-job", "1", *FAST], capsys)
    assert "on Ray (1 node(s)), one task per job asking for 1 CPU" in err
    found = check_run(output, code, out)
    local = records(local_run[0])
    for category in GOOD:
        record = found[(category, "seed0.json")]
        assert record["torch_threads"] == 1
        # Same seed, same data, one thread each: the same numbers as the local workers'.
        for key in ("image_auroc", "pixel_auroc", "aupro", "threshold_normal"):
            assert record["result"][key] == local[(category, "seed0.json")]["result"][key], (category, key)


def test_a_ray_worker_killed_during_its_job_is_retried_then_reported(ray_session, root, tmp_path, capsys,
                                                                       monkeypatch):
    """gravel's worker kills itself (SIGKILL) at every attempt: Ray runs it again once (--retries 1),
    then its error goes into the table; brick's job finishes."""
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    real_execute, folder = benchmark.execute, str(attempts)

    def dies_on_gravel(spec):
        if spec["category"] == "gravel":
            Path(folder, f"attempt-{os.getpid()}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_execute(spec)

    monkeypatch.setattr(benchmark, "execute", dies_on_gravel)
    output = tmp_path / "out"
    code, out, err = run(["benchmark", "--data", str(root), "--output", str(output), "--categories", "brick,gravel",
                          "--ray", "auto", "--cpus-per-job", "1", "--retries", "1", *FAST], capsys)
    assert code == 1
    assert "run again up to 1 time if its worker dies" in err
    assert len(list(attempts.iterdir())) == 2                     # the first run and one retry, each its own worker
    found = records(output)
    assert found[("brick", "seed0.json")]["status"] == "ok"
    gravel = found[("gravel", "seed0.json")]
    assert gravel["status"] == "error" and gravel["error"].startswith("Ray task failed (2 attempts): ")
    assert "\n" not in gravel["error"]
    table = json.loads((output / "table.json").read_text())
    assert table["jobs"] == {"total": 2, "done": 1, "failed": 1, "pending": 0}
    assert f"| gravel | error: {gravel['error']}" in (output / "table.md").read_text()


def test_ray_asks_for_what_the_cluster_has():
    cpu_nodes = [{"CPU": 8.0}, {"CPU": 4.0}]
    assert engines.ray_task_options({"CPU": 12.0}, cpu_nodes, "auto", 1.0, None) == {"num_cpus": 2}
    assert engines.ray_task_options({"CPU": 1.0}, [{"CPU": 1.0}], "auto", 1.0, None) == {"num_cpus": 1}
    gpu_nodes = [{"CPU": 16.0, "GPU": 2.0}]
    assert engines.ray_task_options({"CPU": 16.0, "GPU": 2.0}, gpu_nodes, "auto", 0.5, None) == \
        {"num_gpus": 0.5, "num_cpus": 1}
    # --device cpu on a GPU cluster: the job asks for CPUs only.
    assert engines.ray_task_options({"CPU": 16.0, "GPU": 2.0}, gpu_nodes, "cpu", 1.0, 4) == {"num_cpus": 4}
    for gpus, cpus in ((3.0, None), (1.5, None), (0.0, None), (1.0, 32)):
        with pytest.raises(InputError):  # no node could hold the task: it would wait for ever
            engines.ray_task_options({"CPU": 16.0, "GPU": 2.0}, gpu_nodes, "auto", gpus, cpus)


def test_ray_missing_says_how_to_install_it(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    code, _, err = run(["benchmark", "--data", str(root), "--output", str(tmp_path / "o"), "--ray", "auto", *FAST],
                       capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("simplenet-edu: error: --ray: Ray is not installed") and 'pip install -e ".[cluster]"' in err


def make_record(category, seed, fp, **values):
    result = {"image_auroc": None, "pixel_auroc": None, "aupro": None, **values}
    return {"category": category, "seed": seed, "fingerprint": fp, "status": "ok", "error": None,
            "result": result, "wall_seconds": 10.0 + seed}


def test_table_gives_mean_and_sample_std_and_a_mean_row_over_complete_categories():
    jobs = [Job(c, s) for c in ("a", "b", "c") for s in (0, 1)]
    values = {("a", 0): 0.8, ("a", 1): 1.0, ("b", 0): 0.6, ("b", 1): 0.8, ("c", 0): 0.5}
    found = {Job(c, s): make_record(c, s, "f", image_auroc=v, pixel_auroc=v, aupro=v) for (c, s), v in values.items()}
    found[Job("c", 1)] = {"category": "c", "seed": 1, "status": "error", "error": "c/test: contains no images",
                          "result": None}
    table = benchmark.summarize(jobs, found)
    rows = {row["category"]: row for row in table["rows"]}
    assert rows["a"]["image_auroc_mean"] == pytest.approx(0.9)
    assert rows["a"]["image_auroc_std"] == pytest.approx(math.sqrt(0.02))  # sample std: (0.01 + 0.01) / 1
    assert rows["b"]["image_auroc_mean"] == pytest.approx(0.7)
    assert rows["a"]["wall_seconds_mean"] == pytest.approx(10.5)
    assert rows["c"]["done"] == 1 and rows["c"]["failed"] == 1 and rows["c"]["image_auroc_std"] is None
    # c is incomplete: the mean row averages a and b seed by seed (0.7, 0.9), then over the seeds.
    assert table["mean"]["categories"] == ["a", "b"]
    assert table["mean"]["image_auroc_mean"] == pytest.approx(0.8)
    assert table["mean"]["image_auroc_std"] == pytest.approx(math.sqrt(0.02))
    assert table["jobs"] == {"total": 6, "done": 5, "failed": 1, "pending": 0}
    markdown = benchmark.to_markdown({**table, "config": {"backbone": "x", "image_size": 64, "steps": 10}})
    assert "| a | 0.900 ± 0.141 | 0.900 ± 0.141 | 0.900 ± 0.141 | 2/2 | 10.5 |" in markdown
    assert "| c | 0.500 | 0.500 | 0.500 | 1/2 (1 failed) | 10.0 |" in markdown
    assert "| **mean** (2 of 3 categories) | 0.800 ± 0.141 |" in markdown
    assert "- c seed 1: c/test: contains no images" in markdown
    assert "10 steps" in markdown and f"Cells: {MEAN_STD_NOTE}, over seeds 0, 1" in markdown


def test_a_result_counts_only_for_its_own_configuration():
    config = {"backbone": "efficientnet_lite0", "steps": 300, "seed": 0}
    fp = benchmark.fingerprint(config)
    assert benchmark.fingerprint({**config, "seed": 5}) == fp  # every job has its own seed
    assert benchmark.fingerprint({**config, "steps": 301}) != fp
    assert benchmark.fingerprint(config, "supersimplenet") != fp
    job = Job("a", 0)
    assert benchmark.is_done(make_record("a", 0, fp), job, fp)
    assert not benchmark.is_done(make_record("a", 0, "other"), job, fp)
    assert not benchmark.is_done(make_record("a", 1, fp), job, fp)
    assert not benchmark.is_done({**make_record("a", 0, fp), "status": "error"}, job, fp)
    assert not benchmark.is_done(None, job, fp)


def test_categories_and_plan(root, tmp_path):
    assert benchmark.list_categories(root) == ["brick", "broken", "grass", "gravel"]
    assert benchmark.list_categories(root, ["grass", "brick", "grass"]) == ["grass", "brick"]
    jobs = benchmark.plan(root, [2, 0], ["grass"])
    assert jobs == [Job("grass", 2), Job("grass", 0)]
    assert jobs[0].result_path(tmp_path) == tmp_path / "jobs" / "grass" / "seed2.json"
    with pytest.raises(InputError, match="folder not found .categories here: brick, broken, grass, gravel"):
        benchmark.list_categories(root, ["bricks"])
    with pytest.raises(InputError, match="is one category"):
        benchmark.list_categories(root / "brick")
    with pytest.raises(InputError, match="holds no category folders"):
        benchmark.list_categories(tmp_path)
    with pytest.raises(InputError, match="not a folder name"):
        benchmark.list_categories(root, ["../brick"])


def test_user_mistakes_are_one_line_errors(root, tmp_path, capsys):
    out = str(tmp_path / "o")
    for argv, expected in (
        (["--seed", "3"], "--seed: benchmark runs every seed of --seeds"),
        (["--workers", "0"], "--workers: must be a positive integer"),
        (["--categories", "nothing"], "nothing: folder not found"),
    ):
        code, _, err = run(["benchmark", "--data", str(root), "--output", out, *FAST, *argv], capsys)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()  # nothing half-written

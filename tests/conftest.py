"""Shared fixtures: where the small real hazelnut data set lives, processes a test starts, and a check
that the session leaves no process and no temporary file behind."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

HAZELNUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hazelnut_toy"
SESSION_MARK = "SIMPLENET_EDU_TEST_SESSION"   # in the environment of every process the session starts
LINGER_S = 20                                   # how long a process may take to end after the last test

# onnxruntime (1.32 on Linux) keeps a telemetry session file, .ses, in the temporary folder: no
# telemetry from the tests, and so no such file. Set before any test module imports onnxruntime.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def hazelnut_root() -> Path:
    """The hazelnut toy set in MVTec layout (env var SIMPLENET_EDU_HAZELNUT overrides the path)."""
    root = Path(os.environ.get("SIMPLENET_EDU_HAZELNUT") or HAZELNUT)
    if not (root / "train" / "good").is_dir():
        pytest.skip(f"hazelnut toy data not found at {root} (set SIMPLENET_EDU_HAZELNUT to its folder)")
    return root


# ------------------------------------------------------------------ processes a test starts


@pytest.fixture
def start_process():
    """``start_process(argv, **popen_options)`` -> ``Popen``: every process started through it is
    killed and waited for when the test ends, whatever its outcome."""
    started: list[subprocess.Popen] = []

    def start(argv, **options) -> subprocess.Popen:
        process = subprocess.Popen(argv, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


# ------------------------------------------------------------------ nothing left behind


def _marked_processes(token: str) -> dict[int, str]:
    """Processes other than this one whose environment carries this session's mark (a process reads
    its environment when it starts, so every descendant carries it, adopted orphans included)."""
    needle = f"{SESSION_MARK}={token}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):   # ended meanwhile, or not ours to read
            continue
        if parent == os.getpid() and "multiprocessing.resource_tracker" in command:
            continue   # this process's own resource tracker (local workers start it): it ends with this process
        found[int(entry.name)] = command[:160]
    return found


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@pytest.fixture(scope="session", autouse=True)
def leaves_nothing_behind(tmp_path_factory):
    """The session's processes and temporary files, before and after: every process a test started
    must have ended, and the temporary folder must be as it was (empty).

    Processes are found by a mark in their environment, so processes of other sessions on the same
    machine do not count; the temporary folder (``TMPDIR``, what ``tempfile`` uses, inherited by every
    child) is a fresh one for this session, for the same reason. pytest's own ``tmp_path`` folders
    are made before the switch and stay where pytest keeps them."""
    tmp_path_factory.getbasetemp()
    token = uuid.uuid4().hex
    system_tmp = tempfile.gettempdir()
    private = Path(tempfile.mkdtemp(prefix="sne-tests-"))
    # Caches that libraries keep in the temporary folder on purpose stay where they always are:
    # torch's compile cache (made when torch._dynamo loads) and Ray's session logs.
    caches = {"TORCHINDUCTOR_CACHE_DIR": os.path.join(system_tmp, f"torchinductor_{_user()}"),
              "RAY_TMPDIR": system_tmp}
    saved = {name: os.environ.get(name) for name in ("TMPDIR", SESSION_MARK, *caches)}
    os.environ.update({name: os.environ.get(name) or value for name, value in caches.items()})
    os.environ.update({"TMPDIR": str(private), SESSION_MARK: token})
    tempfile.tempdir = None   # tempfile reads TMPDIR again
    tracked = sys.platform.startswith("linux") and Path("/proc/self/environ").exists()
    before = set(_marked_processes(token)) if tracked else set()
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = None
    deadline = time.monotonic() + LINGER_S
    while tracked and time.monotonic() < deadline and set(_marked_processes(token)) - before:
        time.sleep(0.5)
    processes = {pid: command for pid, command in _marked_processes(token).items() if pid not in before}
    for pid in processes:   # reported below; ended here so that they do not run on for hours
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    files = sorted(str(path.relative_to(private)) for path in private.rglob("*"))
    shutil.rmtree(private, ignore_errors=True)
    problems = [f"process still running: pid {pid}: {command}" for pid, command in sorted(processes.items())]
    problems += [f"left in the temporary folder: {name}" for name in files[:20]]
    if problems:
        pytest.fail("the test session left things behind:\n" + "\n".join(problems), pytrace=False)

"""A full disk, a read-only one, a parent that is a file: every write gives one line naming the path and
the reason, exit code 2, and leaves neither a partial file nor a temporary one.

For real on a small tmpfs where the tests run as root (skipped otherwise, saying why), and everywhere
with ``OSError(ENOSPC)`` injected into each writer: checkpoint, JSON, heat map, CSV, ONNX, benchmark
results, demo images.
"""

import contextlib
import csv
import errno
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simplenet_edu import SimpleNet, SimpleNetConfig, data
from simplenet_edu.apps.cli import main
from simplenet_edu.core import checkpoint as checkpoint_file
from simplenet_edu.utils import atomic
from simplenet_edu.utils.errors import WriteError

FAST = ["--preset", "quick", "--image-size", "64", "--steps", "20", "--device", "cpu"]
FULL = "cannot write: no space left on device"


def run(argv, capsys):
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def hidden(folder: Path) -> list[str]:
    """Temporary (hidden) files under ``folder``: what a failed write must not leave."""
    return sorted(str(p) for p in Path(folder).rglob(".*"))


def one_error_line(err: str, path: Path, problem: str = FULL) -> None:
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"simplenet-edu: error: {path}: {problem}", err


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return data.make_demo_dataset(tmp_path_factory.mktemp("demo"), "grass", image_size=64, n_train=6, n_test_good=2,
                                  n_test_per_defect=1)


@pytest.fixture(scope="module")
def checkpoint(demo, tmp_path_factory):
    model = SimpleNet(SimpleNetConfig.quick(image_size=64, steps=20, device="cpu")).fit(demo, progress=False)
    return model.save(tmp_path_factory.mktemp("model") / "model.pt")


# ------------------------------------------------------------------ a real small file system


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "256k", options: str = ""):
    """A tmpfs of ``size`` mounted on ``folder`` for the block; skips (saying why) where it cannot be."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the injected-ENOSPC tests below run everywhere)")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}): "
                    "the injected-ENOSPC tests cover the same paths")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until about ``leave`` bytes are left."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    with open(folder / "filler", "wb") as handle:
        with contextlib.suppress(OSError):
            handle.write(b"\0" * max(0, free - leave))


def test_a_full_tmpfs_gives_one_line_and_leaves_nothing(demo, checkpoint, tmp_path, capsys):
    with small_tmpfs(tmp_path / "small") as small:
        fill(small, leave=16 * 1024)
        before = sorted(p.name for p in small.iterdir())

        # The checkpoint: torch.save writes into an open file, whose write fails with ENOSPC itself.
        target = small / "m.pt"
        code, out, err = run(["train", "--data", str(demo), *FAST, "--output", str(target)], capsys)
        assert code == 2
        one_error_line(err, target)
        assert sorted(p.name for p in small.iterdir()) == before

        # The ONNX export (5 MB).
        pytest.importorskip("onnxruntime", reason="the export needs onnxruntime")
        code, _, err = run(["export", "--checkpoint", str(checkpoint), "--output", str(small / "m.onnx")], capsys)
        assert code == 2
        one_error_line(err, small / "m.onnx")
        assert sorted(p.name for p in small.iterdir()) == before

        # predict: the heat maps fill the rest; scores.csv keeps the images scored, each row whole.
        out_dir = small / "pred"
        code, _, err = run(["predict", "--checkpoint", str(checkpoint), "--images", str(demo / "test/crack"),
                            "--output-dir", str(out_dir), "--device", "cpu"], capsys)
        if code == 0:   # everything fitted: fill the rest and write again
            fill(out_dir, leave=0)
            code, _, err = run(["predict", "--checkpoint", str(checkpoint), "--images", str(demo / "test/crack"),
                                "--output-dir", str(out_dir), "--device", "cpu"], capsys)
        assert code == 2 and "Traceback" not in err and err.rstrip().endswith(FULL)
        assert hidden(small) == []
        if (out_dir / "scores.csv").exists():
            for row in csv.DictReader((out_dir / "scores.csv").open(newline="")):
                Image.open(out_dir / row["heatmap"]).load()

        # JSON with nothing left at all.
        (small / "filler").unlink()
        fill(small, leave=0)
        code, _, err = run(["evaluate", "--data", str(demo), "--checkpoint", str(checkpoint), "--device", "cpu",
                            "--output", str(small / "r.json")], capsys)
        assert code == 2
        one_error_line(err, small / "r.json")
        assert not (small / "r.json").exists() and hidden(small) == []


def test_a_read_only_folder_is_refused_before_any_work(demo, tmp_path, capsys, monkeypatch):
    with small_tmpfs(tmp_path / "ro", options=",ro") as read_only:
        def no_training(*args, **kwargs):
            raise AssertionError("training started although the output cannot be written")

        monkeypatch.setattr(SimpleNet, "fit", no_training)
        code, _, err = run(["train", "--data", str(demo), *FAST, "--output", str(read_only / "m.pt")], capsys)
        assert code == 2
        one_error_line(err, read_only / "m.pt", "cannot write: read-only file system")


# ------------------------------------------------------------------ a parent that is a file


def test_a_parent_that_is_a_file_is_one_line_before_any_work(demo, checkpoint, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "some-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(SimpleNet, "fit", lambda *a, **k: pytest.fail("training started"))
    for argv, path in (
        (["train", "--data", str(demo), *FAST, "--output", str(blocker / "m.pt")], blocker / "m.pt"),
        (["evaluate", "--data", str(demo), *FAST, "--output", str(blocker / "deep" / "r.json")],
         blocker / "deep" / "r.json"),
        (["predict", "--checkpoint", str(checkpoint), "--images", str(demo / "test/good"),
          "--output-dir", str(blocker)], blocker),
        (["benchmark", "--data", str(demo.parent), "--output", str(blocker / "runs"), *FAST, "--seeds", "0"],
         blocker / "runs"),
    ):
        code, _, err = run(argv, capsys)
        assert code == 2, argv
        one_error_line(err, path, f"cannot write: {blocker} is a file, not a folder")
    assert blocker.read_text() == "not a folder" and hidden(tmp_path) == []
    # The library says the same where no command line checked first.
    model = SimpleNet.load(checkpoint)
    with pytest.raises(WriteError, match=f"^{blocker / 'm.pt'}: cannot write: {blocker} is a file, not a folder$"):
        model.save(blocker / "m.pt")


# ------------------------------------------------------------------ ENOSPC injected into every writer


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


class HalfWritten:
    """A file object that writes half of what it is given, then fails as a full disk does."""

    def __init__(self, path, mode="w", *args, **kwargs):
        self.handle = open(path, mode, *args, **kwargs)
        self.path = path

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise enospc(self.path)

    def flush(self):
        self.handle.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def _save_half_then_fail(self, fp, *args, **kwargs):
    Path(fp).write_bytes(b"\x89PNG half")
    raise enospc(fp)


def _bytes_half_then_fail(self, data):
    with open(self, "wb") as handle:
        handle.write(data[: len(data) // 2])
    raise enospc(self)


class _OsWithFullDisk:
    """``os`` for :mod:`simplenet_edu.utils.atomic` whose ``write`` fails after the CSV's header."""

    def __init__(self):
        self.calls = 0

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        self.calls += 1
        if self.calls == 1:
            return os.write(fd, data)
        os.write(fd, bytes(data[: len(data) // 2]))
        raise enospc("scores.csv")


def _inject(monkeypatch, writer: str) -> None:
    if writer == "checkpoint":   # the real torch.save, into a file whose write fails
        monkeypatch.setattr(checkpoint_file, "open", HalfWritten, raising=False)
    elif writer in ("json", "benchmark"):
        monkeypatch.setattr(atomic, "open", HalfWritten, raising=False)
    elif writer in ("heat map", "demo"):
        monkeypatch.setattr(Image.Image, "save", _save_half_then_fail)
    elif writer == "csv":
        monkeypatch.setattr(atomic, "os", _OsWithFullDisk())
    elif writer == "onnx":
        monkeypatch.setattr(Path, "write_bytes", _bytes_half_then_fail)


@pytest.mark.parametrize("writer", ["checkpoint", "json", "heat map", "csv", "onnx", "benchmark", "demo"])
def test_enospc_in_every_writer_is_one_line_and_leaves_nothing(writer, demo, checkpoint, tmp_path, capsys,
                                                               monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("someone's file")
    if writer == "onnx":
        pytest.importorskip("onnxruntime", reason="the export needs onnxruntime")
    commands = {
        "checkpoint": (["train", "--data", str(demo), *FAST, "--output", str(out / "m.pt")], out / "m.pt"),
        "json": (["evaluate", "--data", str(demo), "--checkpoint", str(checkpoint), "--device", "cpu",
                  "--output", str(out / "r.json")], out / "r.json"),
        "heat map": (["predict", "--checkpoint", str(checkpoint), "--images", str(demo / "test/good"),
                      "--output-dir", str(out), "--device", "cpu"], out / "000_heatmap.png"),
        "csv": (["predict", "--checkpoint", str(checkpoint), "--images", str(demo / "test/good"),
                 "--output-dir", str(out), "--device", "cpu"], out / "scores.csv"),
        "onnx": (["export", "--checkpoint", str(checkpoint), "--output", str(out / "m.onnx")], out / "m.onnx"),
        "benchmark": (["benchmark", "--data", str(demo.parent), "--output", str(out / "runs"), *FAST, "--seeds",
                       "0"], out / "runs" / "table.json"),
    }
    _inject(monkeypatch, writer)
    if writer == "demo":   # the library call: no command line around it
        with pytest.raises(WriteError, match=f"^{out / 'brick'}: {FULL}$"):
            data.make_demo_dataset(out, "brick", image_size=64, n_train=2, n_test_good=1, n_test_per_defect=1)
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
        return
    argv, path = commands[writer]
    code, _, err = run(argv, capsys)
    assert code == 2
    if writer == "csv":
        assert err.splitlines()[-1] == f"simplenet-edu: error: {path}: {FULL}"
        # The header and no half row: the table stays a valid CSV of what was scored (nothing yet).
        assert (out / "scores.csv").read_text() == ",".join(
            ["path", "score", "normalised_score", "anomalous", "heatmap", "map_min", "map_max", "error"]) + "\n"
    else:
        one_error_line(err, path)
        assert not path.exists()
    assert hidden(out) == [] and (out / "keep.txt").read_text() == "someone's file"


class FullAfter(HalfWritten):
    """A file on a disk that fills after ``room`` bytes: writes succeed until then, then fail with ENOSPC."""

    room = 1000

    def write(self, data):
        if self.handle.tell() + len(data) > self.room:
            raise enospc(self.path)
        return self.handle.write(data)


def test_torch_save_reports_the_error_of_the_write_itself(tmp_path, monkeypatch):
    """torch's zip writer turns a write that fails after others succeeded into ``RuntimeError: ...
    unexpected pos``: the checkpoint raises the write's own error instead (one line), and any other
    failure of torch stays what it is."""
    import torch

    target = tmp_path / "m.pt"
    payload = {"weights": torch.zeros(4096)}                       # 16 kB: the disk fills in the middle
    with pytest.raises(RuntimeError, match="unexpected pos"):    # what torch alone says
        with FullAfter(tmp_path / "direct.pt", "wb") as handle:
            torch.save(payload, handle)
    (tmp_path / "direct.pt").unlink()
    for opener in (FullAfter, HalfWritten):                        # full in the middle, full at once
        monkeypatch.setattr(checkpoint_file, "open", opener, raising=False)
        with pytest.raises(WriteError, match=f"^{target}: {FULL}$"):
            checkpoint_file.write_checkpoint(target, payload)
        assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    def broken(obj, handle, *args, **kwargs):
        handle.write(b"PK half")
        raise RuntimeError("a bug, not a full disk")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        checkpoint_file.write_checkpoint(target, payload)
    assert list(tmp_path.iterdir()) == []


def test_csv_rows_cut_a_failed_row_off_again(tmp_path, monkeypatch):
    table = atomic.CsvRows(tmp_path / "t.csv", ["a", "b"])
    table.write({"a": "1", "b": "x"})
    monkeypatch.setattr(atomic, "os", _OsWithFullDisk())
    atomic.os.calls = 1                         # the next write fails halfway
    with pytest.raises(WriteError, match=f"t.csv: {FULL}$"):
        table.write({"a": "2", "b": "y" * 100})
    monkeypatch.undo()
    table.close()
    assert (tmp_path / "t.csv").read_bytes() == b"a,b\r\n1,x\r\n"
    assert json.loads(json.dumps(list(csv.reader((tmp_path / "t.csv").open(newline=""))))) == [["a", "b"], ["1", "x"]]
    assert np.all([len(row) == 2 for row in csv.reader((tmp_path / "t.csv").open(newline=""))])

"""The data checks through the real command line: the data is checked before any model work, image-only sets
work, a partly broken or interrupted run loses nothing, and the same seed gives the same numbers.

Each failing case checks the exit code, the stderr lines, that no traceback was printed, that no
output file was left behind, and that it happened before any model work: the progress bars are on
(no ``--quiet``) and none was printed, and loading a backbone would fail the test.
"""

import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import simplenet_edu.simplenet.model as model_module
from simplenet_edu.apps.cli import main
from simplenet_edu.data import check_dataset, make_demo_dataset
from simplenet_edu.utils.errors import InputError, InputErrors

FAST = ["--preset", "quick", "--image-size", "64", "--steps", "20", "--device", "cpu"]
TIMINGS = ("seconds_", "ms_per_image")   # the report's wall times: seconds_features, seconds_train, ...


def run(argv, capsys, quiet=True):
    code = main((["--quiet"] if quiet else []) + argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def demo(tmp_path):
    """A fresh small demo set (6 train, 2 normal and 4 x 1 anomalous test images, masks), per test."""
    return make_demo_dataset(tmp_path / "sets", "grass", seed=0, image_size=64, n_train=6, n_test_good=2,
                             n_test_per_defect=1)


@pytest.fixture(scope="module")
def shared_demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("shared"), "grass", seed=0, image_size=64, n_train=8,
                             n_test_good=4, n_test_per_defect=2)


@pytest.fixture
def no_model_work(monkeypatch):
    """Loading a backbone (the first piece of model work) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("model work started before the data check failed")

    monkeypatch.setattr(model_module, "load_backbone", refuse)


def leftovers(folder: Path) -> list[str]:
    """Temporary or hidden files under ``folder`` (what an interrupted write would leave)."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.startswith(".") and p.name != ".complete")


# --- 1. one up-front check --------------------------------------------------------------------


def _missing_mask(root):
    (path := root / "ground_truth/hole/000_mask.png").unlink()
    return path, "mask file missing"


def _wrong_size_mask(root):
    Image.new("L", (32, 48)).save(path := root / "ground_truth/crack/000_mask.png")
    return path, "mask is 32x48 but its image"


def _truncated_test_image(root):
    path = root / "test/good/001.png"
    path.write_bytes(path.read_bytes()[:300])
    return path, "cannot read image (image file is truncated"


def _zero_byte_test_image(root):
    (path := root / "test/stain/000.png").write_bytes(b"")
    return path, "cannot read image: empty file (0 bytes)"


def _only_normal_test_images(root):
    for defect in ("crack", "hole", "scratch", "stain"):
        shutil.rmtree(root / "test" / defect)
    return root / "test", "has only normal images: AUROC is undefined"


@pytest.mark.parametrize("spoil", [_missing_mask, _wrong_size_mask, _truncated_test_image, _zero_byte_test_image,
                                   _only_normal_test_images], ids=lambda f: f.__name__.strip("_"))
def test_evaluate_names_the_mistake_before_any_model_work(demo, tmp_path, capsys, no_model_work, spoil):
    path, problem = spoil(demo)
    output = tmp_path / "results.json"
    code, out, err = run(["evaluate", "--data", str(demo), *FAST, "--output", str(output)], capsys, quiet=False)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"simplenet-edu: error: {path}: ")
    assert problem in err and "Traceback" not in err
    assert "%|" not in err and "features" not in err  # no progress bar was shown (they are on)
    assert out == "" and not output.exists() and leftovers(tmp_path) == []


def test_every_problem_gets_its_own_line_then_a_count(demo, capsys, no_model_work):
    for i in range(25):  # 25 zero-byte training images, and one missing mask
        (demo / f"train/good/bad{i:02d}.png").write_bytes(b"")
    (demo / "ground_truth/scratch/000_mask.png").unlink()
    code, _, err = run(["train", "--data", str(demo), *FAST, "--output", str(demo / "m.pt")], capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 20 + 1  # train checks train/good only: the mask is not its business
    assert all(line.startswith(f"simplenet-edu: error: {demo}/train/good/bad") for line in lines[:20])
    assert lines[-1] == "simplenet-edu: error: ... and 5 more problems"

    with pytest.raises(InputErrors) as error:
        check_dataset(demo, need_test=True)
    assert len(error.value.errors) == 26 and isinstance(error.value, InputError)
    assert str(demo / "ground_truth/scratch/000_mask.png") in str(error.value.errors[0])


def test_misnamed_mask_gets_a_hint(demo):
    (demo / "ground_truth/hole/000_mask.png").rename(demo / "ground_truth/hole/000.png")
    with pytest.raises(InputError, match=r"mask file missing for .*000.png \(found 000.png; masks are named "):
        check_dataset(demo, need_test=True)


def test_a_defect_without_its_mask_folder_is_one_line(demo):
    shutil.rmtree(demo / "ground_truth/crack")
    with pytest.raises(InputError, match="folder missing: the image of test/crack/ has no mask") as error:
        check_dataset(demo, need_test=True)
    assert error.value.where == str(demo / "ground_truth/crack")


def test_input_smaller_than_the_backbone_grid_is_refused_up_front(demo, capsys, no_model_work):
    code, _, err = run(["evaluate", "--data", str(demo), "--image-size", "16"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "16 x 16 px is too small for efficientnet_lite0: each side needs at least 32 px" in err


def test_check_reports_layout_and_sizes(demo):
    check = check_dataset(demo, need_test=True, image_size=64, backbone="efficientnet_lite0")
    assert len(check.train) == 6 and len(check.test) == 2 + 4 and check.has_masks
    # Folders sorted by name: crack (1 image), good (2), hole, scratch, stain (1 each).
    assert check.labels == [1, 0, 0, 1, 1, 1] and check.defect_types[:3] == ["crack", "good", "good"]
    assert set(check.sizes.values()) == {(64, 64)} and check.aspect() == 1.0
    # A plain folder of images is a training set (what SimpleNet.fit accepts).
    assert check_dataset(demo / "train/good").train == check.train


def test_check_of_solar_cell_finds_image_labels_only():
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "solar_cell"
    if not (root / "train" / "good").is_dir():
        pytest.skip(f"solar_cell not found at {root}")
    check = check_dataset(root, need_test=True, image_size=256, backbone="efficientnet_lite0")
    # 500 images, no masks: every one decoded (timings are measured by benchmarks/data_check.py).
    assert (len(check.train), len(check.test), check.has_masks) == (300, 200, False)
    assert sum(check.labels) == 100


def test_library_fit_reports_a_broken_training_image_before_extracting(demo, monkeypatch):
    from simplenet_edu import SimpleNet, SimpleNetConfig

    model = SimpleNet(SimpleNetConfig.quick(image_size=64, steps=5, device="cpu"))
    monkeypatch.setattr(model, "extract", lambda *a, **k: pytest.fail("features extracted before the check"))
    (demo / "train/good/004.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"004.png: cannot read image: empty file"):
        model.fit(demo, progress=False)


# --- 2. and 3. masks are optional; masks empty at this size -----------------------------------


def test_set_without_ground_truth_reports_image_metrics_and_null_pixel_metrics(demo, tmp_path, capsys):
    shutil.rmtree(demo / "ground_truth")
    output = tmp_path / "results.json"
    code, out, err = run(["evaluate", "--data", str(demo), *FAST, "--output", str(output)], capsys)
    assert code == 0
    assert err.splitlines() == [f"simplenet-edu: warning: {demo} has no ground_truth/ folder: image metrics only "
                                "(pixel AUROC and AUPRO are null)"]
    report = json.loads(output.read_text())
    assert report["pixel_auroc"] is None and report["aupro"] is None
    assert 0.0 <= report["image_auroc"] <= 1.0 and report["f1_max"] > 0 and report["threshold_normal"] is not None
    assert report["notes"] == [err.splitlines()[0].removeprefix("simplenet-edu: warning: ")]
    assert "pixel AUROC" in out and "n/a" in out


def test_masks_that_vanish_at_the_input_size_give_null_pixel_metrics_and_a_warning(tmp_path, capsys):
    root = tmp_path / "thin"
    rng = np.random.default_rng(0)
    for split, kind, count in (("train", "good", 4), ("test", "good", 2), ("test", "scratch", 2)):
        for i in range(count):
            path = root / split / kind / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(path)
            if kind == "scratch":
                mask = np.zeros((256, 256), np.uint8)
                mask[0, :] = 255  # a one-pixel line on row 0: shrinking 4x by nearest keeps rows 2, 6, ...
                (root / "ground_truth/scratch").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(root / f"ground_truth/scratch/{i}_mask.png")
    output = tmp_path / "r.json"
    code, _, err = run(["evaluate", "--data", str(root), *FAST, "--output", str(output)], capsys)
    assert code == 0
    assert err.splitlines() == [f"simplenet-edu: warning: {root / 'ground_truth'}: no mask keeps an anomalous pixel "
                                "at the model's input of 64 x 64 px, so pixel AUROC and AUPRO are null (defects "
                                "smaller than the resize step vanish: a larger --image-size keeps them, unless the "
                                "mask files themselves are blank)"]
    report = json.loads(output.read_text())
    assert report["pixel_auroc"] is None and report["aupro"] is None and report["image_auroc"] is not None


# --- 4. predict over a folder with one bad image -----------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(shared_demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    assert main(["--quiet", "train", "--data", str(shared_demo), *FAST, "--output", str(path)]) == 0
    return path


def test_predict_scores_the_good_images_and_lists_the_bad_one(shared_demo, checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    shutil.copytree(shared_demo / "test/hole", images)
    (images / "002.png").write_bytes((images / "000.png").read_bytes()[:100])  # truncated copy
    (images / "000.jpg").write_bytes(b"")                                        # empty, and a stem twin
    out_dir = tmp_path / "pred"
    code, out, err = run(["predict", "--checkpoint", str(checkpoint), "--images", str(images),
                          "--output-dir", str(out_dir), "--device", "cpu"], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.splitlines() == [
        f"simplenet-edu: error: {images / '000.jpg'}: cannot read image: empty file (0 bytes)",
        f"simplenet-edu: error: {images / '002.png'}: cannot read image (image file is truncated)",
        f"simplenet-edu: error: 2 of 4 images could not be read (listed above and in {out_dir / 'scores.csv'}, "
        "column 'error')"]
    assert out.startswith("2 images scored")
    rows = {Path(row["path"]).name: row for row in csv.DictReader((out_dir / "scores.csv").open())}
    assert list(rows) == ["000.jpg", "000.png", "001.png", "002.png"]
    assert rows["000.jpg"]["score"] == "" and rows["000.jpg"]["error"] == "cannot read image: empty file (0 bytes)"
    assert rows["002.png"]["heatmap"] == "" and "truncated" in rows["002.png"]["error"]
    for name in ("000.png", "001.png"):
        assert float(rows[name]["score"]) and rows[name]["error"] == ""
        assert Image.open(out_dir / rows[name]["heatmap"]).size == (64, 64)
    pictures = sorted(p.name for p in out_dir.iterdir() if p.suffix == ".png")
    assert pictures == sorted(rows[name]["heatmap"] for name in ("000.png", "001.png"))
    assert leftovers(out_dir) == []


def test_predict_refuses_an_empty_folder_before_loading_the_model(tmp_path, capsys, no_model_work):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["predict", "--checkpoint", str(tmp_path / "none.pt"), "--images", str(tmp_path / "empty")],
                       capsys)
    assert code == 2 and err.startswith(f"simplenet-edu: error: {tmp_path / 'empty'}: no images here")


# --- 5. Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_while_writing_heat_maps_leaves_no_partial_file(shared_demo, checkpoint, tmp_path, capsys,
                                                                 monkeypatch):
    saved = []
    real_save = Image.Image.save

    def interrupted_on_second(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)  # the second heat map is written (under its temporary name)...
        saved.append(fp)
        if len(saved) == 2:
            raise KeyboardInterrupt           # ...and Ctrl-C comes before the rename

    monkeypatch.setattr(Image.Image, "save", interrupted_on_second)
    out_dir = tmp_path / "pred"
    argv = ["predict", "--checkpoint", str(checkpoint), "--images", str(shared_demo / "test/good"),
            "--output-dir", str(out_dir), "--device", "cpu"]
    code, _, err = run(argv, capsys)
    assert code == 130 and err == "simplenet-edu: interrupted\n"
    # The first heat map complete, scores.csv with its row (written as it goes), no temporary file.
    assert len(saved) == 2 and leftovers(out_dir) == []
    first = out_dir / "000_heatmap.png"
    Image.open(first).load()
    assert sorted(p.name for p in out_dir.iterdir()) == ["000_heatmap.png", "scores.csv"]
    [row] = csv.DictReader((out_dir / "scores.csv").open())
    assert Path(row["path"]).name == "000.png" and row["heatmap"] == first.name and float(row["score"])

    monkeypatch.setattr(Image.Image, "save", real_save)  # the next run overwrites the folder
    assert run(argv, capsys)[0] == 0
    rows = list(csv.DictReader((out_dir / "scores.csv").open()))
    assert len(rows) == 4 and first.name in {row["heatmap"] for row in rows}


def test_ctrl_c_while_saving_keeps_the_old_checkpoint(shared_demo, tmp_path, capsys, monkeypatch):
    import torch

    target = tmp_path / "model.pt"
    target.write_bytes(b"the previous model")
    real_save = torch.save

    def save_then_interrupt(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)  # the temporary file is complete...
        raise KeyboardInterrupt                 # ...and Ctrl-C comes before the rename

    monkeypatch.setattr(torch, "save", save_then_interrupt)
    code, _, err = run(["train", "--data", str(shared_demo), *FAST, "--output", str(target)], capsys)
    assert code == 130 and err == "simplenet-edu: interrupted\n"
    assert target.read_bytes() == b"the previous model" and leftovers(tmp_path) == []


def default_sigint() -> None:
    """In a child before it runs: SIGINT back to its default, whatever the launcher left (a background
    job of a non-interactive shell starts with SIGINT ignored, and its children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(sys.platform == "win32",
                    reason="needs POSIX signals and preexec_fn to give the child SIGINT's default disposition")
def test_real_sigint_during_training_prints_one_line(shared_demo, tmp_path, start_process):
    """The real thing: SIGINT to a running ``simplenet-edu train`` once its training bar shows.

    The child starts with SIGINT's default disposition whatever this process was given (a background
    job of a non-interactive shell ignores SIGINT, and so would its child), so that the command line is
    tested, not the launcher; the fixture ends the child whatever happens here."""
    output = tmp_path / "model.pt"
    proc = start_process([sys.executable, "-m", "simplenet_edu", "train", "--data", str(shared_demo), *FAST,
                          "--steps", "1000000", "--output", str(output)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    err = bytearray()
    reader = threading.Thread(target=lambda: [err.extend(chunk) for chunk in iter(lambda: proc.stderr.read(1), b"")],
                              daemon=True)
    reader.start()
    training = (b"train steps", b"threshold folds")   # the heads' training bars, whichever comes first
    deadline = time.monotonic() + 120
    while not any(bar in err for bar in training) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert any(bar in err for bar in training), err.decode()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    reader.join(timeout=10)
    text = err.decode()
    assert code == 130 and "Traceback" not in text
    # On its own line after the progress bar: a new line, or the start of the line a bar cleared.
    assert re.search(r"[\r\n]simplenet-edu: interrupted\n\Z", text), text
    assert not output.exists() and leftovers(tmp_path) == []


def test_the_sigint_test_holds_where_sigint_is_ignored(start_process):
    """What the test above guards against: a launcher that ignores SIGINT (a background job of a
    non-interactive shell) passes that on to its child, unless the child's disposition is restored."""
    script = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    ignoring = [sys.executable, "-c", "import signal, subprocess, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                f"sys.exit(subprocess.call([sys.executable, '-c', {script!r}]))"]
    inherited = start_process(ignoring, stdout=subprocess.PIPE, text=True)
    assert inherited.communicate(timeout=60)[0].strip() == "False"   # Python keeps an inherited SIG_IGN
    restored = start_process([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_IGN), default_sigint()))
    assert restored.communicate(timeout=60)[0].strip() == "True"


def test_ctrl_c_within_a_bars_first_display_still_ends_its_line():
    """tqdm records a bar's first display only after writing it; Ctrl-C in between made ``close()``
    print nothing, and the last message ran on from the bar's line (seen once in the test above)."""
    import io

    from tqdm import tqdm

    from simplenet_edu.apps.cli import _close_progress_bars

    screen = io.StringIO()
    bar = tqdm(total=5, desc="train steps", file=screen)
    del bar.last_print_t, bar.start_t  # as tqdm.__init__ leaves it when interrupted after its refresh
    _close_progress_bars()
    assert screen.getvalue().startswith("\rtrain steps:") and screen.getvalue().endswith("\n")


# --- 6. same seed, same numbers, through the command line --------------------------------------


def _cli(*argv):
    """``simplenet-edu --quiet ...`` in a fresh process (this one's torch settings may differ)."""
    proc = subprocess.run([sys.executable, "-m", "simplenet_edu", "--quiet", *argv], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_same_seed_gives_identical_json_and_a_reloaded_model_identical_scores(shared_demo, tmp_path):
    args = ["--data", str(shared_demo), *FAST, "--seed", "5"]
    reports = []
    for name in ("a.json", "b.json"):  # two fresh processes
        _cli("evaluate", *args, "--output", str(tmp_path / name))
        reports.append(json.loads((tmp_path / name).read_text()))
    for report in reports:
        for key in [key for key in report if key.startswith(TIMINGS)]:   # wall times differ run to run
            report.pop(key)
    assert reports[0] == reports[1]  # every score, threshold and count, bit for bit (JSON keeps all digits)

    # Trained and saved by one process, reloaded and evaluated by another: the same numbers again.
    _cli("train", *args, "--output", str(tmp_path / "m.pt"))
    _cli("evaluate", "--data", str(shared_demo), "--checkpoint", str(tmp_path / "m.pt"), "--device", "cpu",
         "--output", str(tmp_path / "c.json"))
    reloaded = json.loads((tmp_path / "c.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "threshold_f1", "threshold_normal",
                "per_defect_image_auroc", "at_threshold_normal", "at_threshold_f1", "n_test"):
        assert reloaded[key] == reports[0][key], key

"""The command line: the evaluate contract, predict outputs, and one-line errors with exit code 2."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from simplenet_edu.apps.cli import main
from simplenet_edu.data import make_demo_dataset

FAST = ["--preset", "quick", "--image-size", "64", "--epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(root, category="grass", seed=0, image_size=64, n_train=8,
                             n_test_good=4, n_test_per_defect=2)


def run(argv, capsys):
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_writes_the_contracted_json(demo, tmp_path, capsys):
    output = tmp_path / "results.json"
    code, out, _ = run(["evaluate", "--data", str(demo), *FAST, "--seed", "3", "--output", str(output)], capsys)
    assert code == 0
    assert "image AUROC" in out and "pixel AUROC" in out
    report = json.loads(output.read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "threshold_f1", "threshold_normal",
                "n_train", "n_test", "seconds_features", "seconds_train", "ms_per_image_inference", "config"):
        assert key in report, key
    # 10% of the 8 training images (rounded, at least one) is held out for the normal threshold.
    assert (report["n_train"], report["n_holdout"], report["n_test"]) == (7, 1, 4 + 4 * 2)
    assert report["config"]["seed"] == 3 and report["config"]["image_size"] == 64
    assert 0.0 <= report["aupro"] <= 1.0


def test_train_then_predict_writes_heat_maps_and_scores(demo, tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    assert run(["train", "--data", str(demo), *FAST, "--output", str(checkpoint)], capsys)[0] == 0
    out_dir = tmp_path / "pred"
    images = demo / "test" / "hole"
    code, out, _ = run(["predict", "--checkpoint", str(checkpoint), "--images", str(images),
                        "--output-dir", str(out_dir), "--device", "cpu"], capsys)
    assert code == 0
    rows = list(csv.DictReader((out_dir / "scores.csv").open()))
    assert len(rows) == 2
    assert {row["anomalous"] for row in rows} <= {"yes", "no"}
    for row in rows:
        heat = Image.open(out_dir / row["heatmap"])
        assert heat.size == (64, 64)
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # nothing half-written

    # The same checkpoint can be evaluated without retraining.
    code, out, _ = run(["evaluate", "--data", str(demo), "--checkpoint", str(checkpoint), "--device", "cpu"], capsys)
    assert code == 0 and "AUPRO" in out


@pytest.mark.parametrize("layout", ["missing", "no_train_good", "empty_train_good"])
def test_bad_folders_give_one_line_and_exit_code_2(tmp_path, capsys, layout):
    root = tmp_path / "parts"
    if layout != "missing":
        root.mkdir()
    if layout == "empty_train_good":
        (root / "train" / "good").mkdir(parents=True)
    code, _, err = run(["evaluate", "--data", str(root), *FAST], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and str(root) in err
    assert "Traceback" not in err


def test_test_set_without_anomalies_is_a_clear_error(tmp_path, capsys):
    root = make_demo_dataset(tmp_path, category="brick", image_size=64, n_train=4, n_test_good=2,
                             n_test_per_defect=0)
    code, _, err = run(["evaluate", "--data", str(root), *FAST], capsys)
    assert code == 2 and "only normal images" in err and str(root / "test") in err


def test_truncated_image_and_foreign_checkpoint(tmp_path, capsys):
    root = make_demo_dataset(tmp_path, category="brick", image_size=64, n_train=4, n_test_good=2,
                             n_test_per_defect=1)
    broken = root / "train" / "good" / "001.png"
    broken.write_bytes(broken.read_bytes()[:200])
    code, _, err = run(["evaluate", "--data", str(root), *FAST], capsys)
    assert code == 2 and str(broken) in err

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    code, _, err = run(["predict", "--checkpoint", str(foreign), "--images", str(root / "test" / "good")], capsys)
    assert code == 2 and "not a simplenet-edu checkpoint" in err and str(foreign) in err


def test_module_entry_point_reports_errors_without_a_traceback(tmp_path):
    missing = tmp_path / "nowhere"
    proc = subprocess.run([sys.executable, "-m", "simplenet_edu", "evaluate", "--data", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr

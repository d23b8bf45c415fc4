"""The command line: the evaluate contract, predict outputs, and one-line errors with exit code 2."""

import csv
import json
import subprocess
import sys
import textwrap

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
    # Every training image trains the shipped heads; the thresholds come from all 8 scored out of fold.
    assert (report["n_train"], report["n_holdout"], report["n_test"]) == (8, 0, 4 + 4 * 2)
    calibration = report["threshold_calibration"]
    assert (calibration["method"], calibration["folds"], calibration["n_normal"]) == ("out-of-fold", 2, 8)  # quick: 2
    assert "false positives on those images" in out and "warning: 8 normal images cannot show" in out
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


def help_text(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: the checks below need no line breaks
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_states_the_defaults_of_the_configuration(capsys, monkeypatch):
    """Every default the help names is the configuration's own (read here from the classes, so a
    changed default that the help does not follow fails this test)."""
    from simplenet_edu.simplenet.config import CHOICES, SimpleNetConfig
    from simplenet_edu.supersimplenet.config import SuperSimpleNetConfig

    text = help_text("train", capsys, monkeypatch)
    default, paper, quick = SimpleNetConfig(), SimpleNetConfig.paper(), SimpleNetConfig.quick()
    ssn, ssn_paper = SuperSimpleNetConfig(), SuperSimpleNetConfig.paper()
    assert (default.adaptor, default.loss) != (paper.adaptor, paper.loss)  # the CPU default departs from the paper
    lines = text.splitlines()
    for part in CHOICES:
        mine, theirs = getattr(default, part), getattr(paper, part)
        # argparse puts a long option's help on the line after it
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"--{part.replace('_', '-')} "))
        option = " ".join(lines[at:at + 2])
        expected = f"default {mine} (the paper's choice)" if mine == theirs else f"default {mine} (the paper's: {theirs})"
        assert option.endswith(expected), option
    assert "default: the paper's choice" not in text
    assert f"default: SimpleNet {default.steps}, SuperSimpleNet {ssn.steps};" in text
    assert f"--preset quick: SimpleNet {quick.steps}, SuperSimpleNet" in text
    assert f"--preset paper: SimpleNet {paper.epochs}, SuperSimpleNet {ssn_paper.epochs}" in text
    assert f"default: SimpleNet {default.noise_std:g}, SuperSimpleNet {ssn.noise_std:g}" in text
    assert f"an absolute sigma, {paper.noise_std:g}" in text and paper.noise_scale == "absolute"
    assert f"Default {default.image_size};" in text and default.image_size == ssn.image_size
    assert f"SimpleNet {paper.image_size} px -> crop {paper.crop_size} px" in text
    assert f"(default {default.backbone};" in text and f"default {default.topk:g}" in text
    assert f"(default {default.select})" in text


def test_export_help_states_the_check_s_tolerance(capsys, monkeypatch):
    from simplenet_edu.deploy.export import DEFAULT_TOLERANCE, export_onnx
    import inspect

    assert inspect.signature(export_onnx).parameters["tolerance"].default == DEFAULT_TOLERANCE
    assert f"(default {DEFAULT_TOLERANCE:g})" in help_text("export", capsys, monkeypatch)


def test_the_parser_and_the_help_never_import_torch():
    """``predict --model x.onnx`` runs where torch is not installed: building the parser (and every
    command's help, with the defaults read from the configurations) must not import it."""
    script = textwrap.dedent("""
        import contextlib, io, sys
        from simplenet_edu.apps.cli import build_parser
        parser = build_parser()
        args = parser.parse_args(["predict", "--model", "x.onnx", "--images", "imgs"])
        for command in ("train", "benchmark", "export", "predict"):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                parser.parse_args([command, "--help"])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "tqdm"))
        print(args.model, heavy)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "x.onnx []"

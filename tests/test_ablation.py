"""The ablation: one row per variant plus the default, metrics with their spread, a Markdown table,
and the ``ablate`` command writing both files."""

import json
import math

import pytest

from simplenet_edu import InputError, SimpleNetConfig
from simplenet_edu.apps.ablation import DEFAULT_ROW, all_variants, header, run_ablation, summarize, to_markdown
from simplenet_edu.apps.cli import main
from simplenet_edu.data import make_demo_dataset
from simplenet_edu.utils.stats import MEAN_STD_NOTE


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), "brick", seed=0, image_size=64,
                             n_train=6, n_test_good=2, n_test_per_defect=1)


def config(**overrides):
    values = dict(image_size=64, epochs=1, batch_size=128, device="cpu")
    values.update(overrides)
    return SimpleNetConfig.quick(**values)


@pytest.fixture(scope="module")
def rows(demo):
    return run_ablation(demo, 1, config(), variants=["adaptor=linear", ("image_score", "mean")], progress=False)


def test_rows_have_the_default_first_and_every_metric(rows):
    assert [r["variant"] for r in rows] == [DEFAULT_ROW, "adaptor=linear", "image_score=mean"]
    for row in rows:
        for key in ("image_auroc", "pixel_auroc", "aupro", "seconds_train"):
            assert 0.0 <= row[f"{key}_mean"] and row[f"{key}_std"] is None   # one seed: no spread
        assert row["seeds"] == [0] and len(row["per_seed"]) == 1
    # The mean image score changes only how images are scored, not the maps: same pixel metrics.
    assert rows[2]["pixel_auroc_mean"] == rows[0]["pixel_auroc_mean"]
    # (Its image AUROC may differ or not: on 2 normal and 4 anomalous images it has 8 possible values.)
    assert rows[1]["pixel_auroc_mean"] != rows[0]["pixel_auroc_mean"]   # a trained adaptor changes the maps


def test_default_row_matches_a_plain_fit_and_evaluate(rows, demo):
    from simplenet_edu import SimpleNet
    from simplenet_edu.evaluation.evaluator import evaluate

    result = evaluate(SimpleNet(config()).fit(demo, progress=False), demo, progress=False)
    assert rows[0]["image_auroc_mean"] == pytest.approx(result.metrics["image_auroc"], abs=1e-6)
    assert rows[0]["pixel_auroc_mean"] == pytest.approx(result.metrics["pixel_auroc"], abs=1e-4)


def test_markdown_renders_one_line_per_row(rows):
    text = to_markdown(rows)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| variant | image AUROC") and len(lines) == 2 + len(rows)
    assert "| adaptor=linear |" in text and "±" not in text   # one seed: a mean without a spread
    assert "(+" in lines[3] or "(-" in lines[3]          # change against the default row


def test_rows_give_mean_and_sample_std_by_hand():
    """Two seeds: image AUROC 0.8 and 1.0 give 0.9 ± sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.141 (ddof = 1, not
    the 0.1 of ddof = 0); the variant row 0.6 and 0.7 gives 0.65 ± 0.071, 0.250 below the base."""
    def seed(value, seconds):
        return {"image_auroc": value, "pixel_auroc": None, "aupro": value, "seconds_train": seconds}

    names = [(DEFAULT_ROW, None, None), ("loss=bce", "loss", "bce")]
    results = {DEFAULT_ROW: [seed(0.8, 2.0), seed(1.0, 4.0)], "loss=bce": [seed(0.6, 1.0), seed(0.7, 1.0)]}
    rows = summarize(names, results, [0, 1], [3.0, 5.0])
    assert rows[0]["image_auroc_mean"] == pytest.approx(0.9)
    assert rows[0]["image_auroc_std"] == pytest.approx(math.sqrt(0.02))
    assert rows[1]["aupro_std"] == pytest.approx(math.sqrt(0.005))
    assert rows[0]["pixel_auroc_mean"] is None and rows[0]["seconds_features_per_seed"] == 4.0
    text = to_markdown(rows)
    assert "| base configuration | 0.900 ± 0.141 | - | 0.900 ± 0.141 | 3.0 ± 1.4 |" in text
    assert "| loss=bce | 0.650 ± 0.071 (-0.250) | - | 0.650 ± 0.071 (-0.250) | 1.0 ± 0.0 |" in text
    words = header("data/brick", "simplenet-edu ablate", SimpleNetConfig(), rows)
    assert words.startswith("# Ablation on brick\n") and f"Cells: {MEAN_STD_NOTE}, over seeds 0, 1;" in words


def test_all_variants_and_bad_names():
    names = all_variants(SimpleNetConfig())
    assert ("generator", "perlin") in names and ("generator", "gaussian") not in names and len(names) == 10
    with pytest.raises(InputError, match="choose from"):
        run_ablation(".", 1, config(), variants=["loss=hinge"], progress=False)


def test_cli_ablate_writes_markdown_and_json(demo, tmp_path, capsys):
    out = tmp_path / "table"
    code = main(["--quiet", "ablate", "--data", str(demo), "--seeds", "1", "--preset", "quick", "--epochs", "1",
                 "--image-size", "64", "--device", "cpu", "--variants", "loss=truncated_l1", "--output", str(out)])
    assert code == 0
    table = (tmp_path / "table.md").read_text()
    payload = json.loads((tmp_path / "table.json").read_text())
    assert "| loss=truncated_l1 |" in table and "simplenet-edu --quiet ablate" in table
    assert [r["variant"] for r in payload["rows"]] == [DEFAULT_ROW, "loss=truncated_l1"]
    assert payload["config"]["epochs"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json", "table.md"]   # no temporary files


def test_cli_rejects_an_unknown_variant(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", ".", "--generator", "gan"])
    assert exit_info.value.code == 2
    assert "--generator" in capsys.readouterr().err

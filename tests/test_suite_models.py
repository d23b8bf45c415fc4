"""benchmarks.suite_models and benchmarks.elongated: their tables and strips by hand (no training)."""

import numpy as np
import pytest
from PIL import Image

from benchmarks.elongated import make_strips
from benchmarks.suite_models import summarise


def test_summarise_means_by_hand():
    runs = {"a": [{"image_auroc": 1.0, "aupro": 0.9, "fit_ms_per_train_image": 100, "ms_per_image_inference": 30},
                  {"image_auroc": 0.8, "aupro": 0.7, "fit_ms_per_train_image": 300, "ms_per_image_inference": 50}],
            "b": [{"image_auroc": 0.6, "pixel_auroc": None, "aupro": None, "fit_ms_per_train_image": 200,
                   "ms_per_image_inference": 10}]}
    summary = summarise(runs)
    assert summary["per_set"]["a"]["image_auroc"][0] == pytest.approx(0.9)
    # Sample std of 1.0 and 0.8: sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.1414.
    assert summary["per_set"]["a"]["image_auroc"][1] == pytest.approx(0.02 ** 0.5)
    assert summary["per_set"]["b"]["aupro"] is None and summary["per_set"]["b"]["image_auroc"][1] is None
    assert summary["mean"]["image_auroc"] == pytest.approx((0.9 + 0.6) / 2)
    assert summary["mean"]["aupro"] == pytest.approx(0.8)                       # set a only: b has no masks
    assert summary["mean"]["fit_ms_per_train_image"] == pytest.approx((200 + 200) / 2)


def test_strips_hold_their_defects(tmp_path):
    source = tmp_path / "plate"
    for folder in ("train/good", "test/good", "test/dent", "ground_truth/dent"):
        (source / folder).mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (40, 40), (i, i, i)).save(source / "train" / "good" / f"{i}.png")
    Image.new("RGB", (40, 40)).save(source / "test" / "good" / "0.png")
    masks = {"low": (30, 36), "top": (0, 2), "none": None}
    for name, rows in masks.items():
        Image.new("RGB", (40, 40)).save(source / "test" / "dent" / f"{name}.png")
        mask = np.zeros((40, 40), np.uint8)
        if rows:
            mask[rows[0]:rows[1], 5:9] = 255
        Image.fromarray(mask).save(source / "ground_truth" / "dent" / f"{name}_mask.png")
    counts = make_strips(source, tmp_path / "strips", aspect=2.0)
    assert counts == {"defect_strips": 2, "dropped": 1}          # the blank mask keeps no defect
    assert Image.open(tmp_path / "strips" / "train" / "good" / "0.png").size == (40, 20)
    # "low": centroid row 32, the strip rows 20-39 (clamped to the image) hold all 6 mask rows.
    low = np.asarray(Image.open(tmp_path / "strips" / "ground_truth" / "dent" / "low_mask.png")) > 0
    assert low.shape == (20, 40) and low.sum() == 6 * 4 and low[10:16, 5:9].all()
    top = np.asarray(Image.open(tmp_path / "strips" / "ground_truth" / "dent" / "top_mask.png")) > 0
    assert top[0:2, 5:9].all() and top.sum() == 8

"""Normal thresholds a line can trust: every normal image scored out of fold, the claim's uncertainty
stated, and fit's memory bounded whatever the number of training images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simplenet_edu import SimpleNet, SimpleNetConfig, SuperSimpleNet, SuperSimpleNetConfig
from simplenet_edu.core import calibration
from simplenet_edu.core.calibration import NormalScores, even_sample, normal_folds
from simplenet_edu.core.fitted import FittedModel
from simplenet_edu.course.baselines import NearestNeighbourBaseline
from simplenet_edu.evaluation import metrics
from simplenet_edu.evaluation.report import calibration_text, print_report
from simplenet_edu.utils.errors import InputError


def tiny(**overrides):
    # Lite0 at 64 px: an 8 x 8 patch grid, small heads, a few steps: seconds per training; the
    # default's five threshold folds (the quick preset has two).
    values = dict(image_size=64, pretrain_embed_dim=32, target_embed_dim=32, dsc_hidden=32, steps=8,
                  batch_size=64, val_checkpoints=0, device="cpu", threshold_folds=5)
    values.update(overrides)
    return SimpleNetConfig.quick(**values)


@pytest.fixture(scope="module")
def images():
    return torch.rand(11, 3, 64, 64, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------ the upper bound, by hand


def _binomial_upper(flagged: int, n: int, confidence: float = 0.95) -> float:
    """The exact binomial bound by bisection on P(X <= flagged; n, p) = 1 - confidence, with math.comb."""
    def cdf(p):
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(flagged + 1))
    low, high = 0.0, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) > 1 - confidence else (low, middle)
    return (low + high) / 2


def test_fpr_upper_bound_by_hand():
    # None flagged: 1 - 0.05 ** (1 / n), the "rule of three" (about 3 / n).
    assert metrics.fpr_upper_bound(0, 28) == pytest.approx(1 - 0.05 ** (1 / 28), abs=1e-12)
    assert metrics.fpr_upper_bound(0, 28) == pytest.approx(0.10147, abs=1e-5)
    assert metrics.fpr_upper_bound(0, 299) < 0.01 < metrics.fpr_upper_bound(0, 298)
    # One of ten flagged: (1 - p)^10 + 10 p (1 - p)^9 = 0.05 at p = 0.3942 (tables of the exact bound).
    assert metrics.fpr_upper_bound(1, 10) == pytest.approx(0.39416, abs=1e-5)
    for flagged, n in ((3, 300), (2, 31), (5, 54)):
        assert metrics.fpr_upper_bound(flagged, n) == pytest.approx(_binomial_upper(flagged, n), abs=1e-9)
    assert metrics.fpr_upper_bound(4, 4) == 1.0
    with pytest.raises(InputError, match="flagged"):
        metrics.fpr_upper_bound(5, 4)
    with pytest.raises(InputError, match="flagged"):
        metrics.fpr_upper_bound(0, 0)


def test_calibration_record_and_its_warning():
    record = metrics.calibration_record(28, 0, 0.01, "out-of-fold", 5)
    assert (record["achieved_fpr"], record["smallest_claimable_fpr"]) == (0.0, 1 / 28)
    assert record["fpr_upper_95"] == pytest.approx(0.10147, abs=1e-5)
    # 28 images cannot show 0.01; 299 with none flagged would bound the rate by it.
    assert record["warning"].startswith("28 normal images cannot show a false-positive rate of 0.01")
    assert "1/28 = 0.036" in record["warning"] and "below 0.101" in record["warning"] and "299" in record["warning"]
    enough = metrics.calibration_record(300, 3, 0.01, "out-of-fold", 5, n_pixels=1000, pixels_flagged=10)
    assert enough["warning"] is None and enough["achieved_fpr"] == 0.01 and enough["pixel_achieved_fpr"] == 0.01
    assert calibration_text(record) == ("28 normal training images, each scored by heads trained without it (5 folds): "
                                        "target false-positive rate 0.01, achieved 0/28 = 0.000, 95 % upper bound 0.101")


def test_threshold_from_the_highest_scores_only():
    values = np.random.default_rng(1).normal(size=5000)
    for max_fpr in (0.0, 0.01, 0.2):
        keep = metrics.allowed_flags(values.size, max_fpr) + 1
        top = np.sort(values)[::-1][:keep]
        assert metrics.threshold_from_highest(np.random.default_rng(2).permutation(top), values.size, max_fpr) \
            == metrics.threshold_from_normal(values, max_fpr)
    with pytest.raises(ValueError, match="cannot place"):
        metrics.threshold_from_highest(np.sort(values)[::-1][:10], values.size, 0.01)   # 51 needed


# ------------------------------------------------------------------ folds and samples


def test_normal_folds_partition_by_seed():
    folds = normal_folds(28, 5, seed=0)
    assert sorted(len(f) for f in folds) == [5, 5, 6, 6, 6]
    assert sorted(i for f in folds for i in f) == list(range(28))
    assert folds == normal_folds(28, 5, seed=0) and folds != normal_folds(28, 5, seed=1)
    assert [len(f) for f in normal_folds(3, 5)] == [1, 1, 1]            # never an empty fold


def test_even_sample_takes_one_from_each_stretch():
    picked = even_sample(1000, 10, seed=3)
    assert len(picked) == 10 and [p // 100 for p in picked] == list(range(10))
    assert picked == even_sample(1000, 10, seed=3) and picked != even_sample(1000, 10, seed=4)
    assert even_sample(7, 10) == list(range(7))


def test_normal_scores_match_every_value_and_bound_the_spread_sample(monkeypatch):
    rng = np.random.default_rng(0)
    scores, maps = torch.from_numpy(rng.normal(size=12)), torch.from_numpy(rng.normal(size=(12, 16, 16))).float()
    normal = NormalScores(0.01, 256, n_threshold=12, n_spread=12)
    normal.add([(scores[:8], maps[:8]), (scores[8:], maps[8:])])
    assert normal.top.numel() == math.floor(0.01 * 12 * 256) + 1            # 31 pixels kept, not 3072
    image, pixel = normal.thresholds()
    assert image == metrics.threshold_from_normal(scores.numpy(), 0.01)
    assert pixel == metrics.threshold_from_normal(maps.numpy(), 0.01)
    def by_hand(values):
        return 1.4826 * np.median(np.abs(values - np.median(values)))
    assert normal.spreads() == (pytest.approx(by_hand(scores.numpy())), pytest.approx(by_hand(maps.numpy())))
    monkeypatch.setattr(calibration, "SPREAD_PIXELS", 1000)                       # 3072 pixels: every 4th kept
    sampled = NormalScores(0.01, 256, n_threshold=12, n_spread=12)
    sampled.add([(scores, maps)])
    assert sampled.stride == 4 and torch.cat(sampled.spread_pixels).numel() == 768
    assert sampled.thresholds() == (image, pixel)                            # thresholds stay exact


# ------------------------------------------------------------------ out of fold, for both models


def _spy(monkeypatch):
    """Record every training and scoring call that fit_heads makes: [("train", images, shipped) | ("score", images)]."""
    calls = []
    original = FittedModel.fit_heads

    def fit_heads(self, plan, train, score, in_sample=(), progress=True):
        def spy_train(images, shipped):
            calls.append(("train", list(images), shipped))
            return train(images, shipped)

        def spy_score(images):
            calls.append(("score", list(images)))
            return score(images)
        return original(self, plan, spy_train, spy_score, in_sample, progress)

    monkeypatch.setattr(FittedModel, "fit_heads", fit_heads)
    return calls


def _check_out_of_fold(calls, n, k):
    trains = [c for c in calls if c[0] == "train"]
    assert len(trains) == k + 1 and [c[2] for c in trains] == [False] * k + [True]
    scored = []
    for (kind, trained_on, _), (kind2, fold) in zip(calls[0:2 * k:2], calls[1:2 * k:2]):
        assert (kind, kind2) == ("train", "score")
        assert not set(trained_on) & set(fold), "a fold is scored by heads that trained on it"
        assert sorted(trained_on + fold) == list(range(n))
        scored += fold
    assert sorted(scored) == list(range(n))                                   # every image scored once
    assert calls[-1] == ("train", list(range(n)), True)                       # the shipped heads: every image


def test_simplenet_scores_every_image_out_of_fold_and_ships_heads_trained_on_all(images, monkeypatch):
    calls = _spy(monkeypatch)
    model = SimpleNet(tiny()).fit(images, progress=False)
    _check_out_of_fold(calls, n=11, k=5)
    assert (model.n_train, model.n_holdout, len(model.normal_scores)) == (11, 0, 11)
    assert model.threshold_normal == metrics.threshold_from_normal(model.normal_scores, 0.01)
    assert model.threshold_normal > max(model.normal_scores)                  # 11 * 0.01 < 1: none may be flagged
    c = model.calibration
    assert (c["method"], c["folds"], c["n_normal"], c["flagged"]) == ("out-of-fold", 5, 11, 0)
    assert c["n_pixels"] == 11 * 64 * 64 and c["pixels_flagged"] <= 0.01 * c["n_pixels"]
    assert c["fpr_upper_95"] == pytest.approx(1 - 0.05 ** (1 / 11)) and c["warning"] is not None
    assert model.timings["seconds_folds"] > 0
    # The shipped heads are exactly those of one training on every image, without any threshold.
    plain = SimpleNet(tiny(threshold_folds=0, holdout_fraction=0.0)).fit(images, progress=False)
    assert plain.threshold_normal is None and plain.calibration is None
    for name in ("discriminator",):
        for (key, a), b in zip(getattr(model, name).state_dict().items(), getattr(plain, name).state_dict().values()):
            assert torch.equal(a, b), key
    assert torch.equal(model.predict(images[:3])[0], plain.predict(images[:3])[0])


def test_the_single_held_out_split_stays_an_option(images, monkeypatch):
    calls = _spy(monkeypatch)
    model = SimpleNet(tiny(threshold_folds=0, holdout_fraction=0.25)).fit(images, progress=False)
    held = model.held_out_split(11)[1]
    assert calls[0] == ("train", [i for i in range(11) if i not in held], True) and calls[1] == ("score", held)
    assert (model.n_train, model.n_holdout) == (8, 3)
    assert model.calibration["method"] == "held-out" and model.calibration["n_normal"] == 3
    held_scores = model.predict(images[held])[0].numpy().astype(np.float64)
    # predict runs the folded scorer, fit the cached features: the same numbers to float rounding.
    assert model.threshold_normal == pytest.approx(metrics.threshold_from_normal(held_scores, 0.01), rel=1e-5)


def test_supersimplenet_scores_out_of_fold_too(images, monkeypatch):
    calls = _spy(monkeypatch)
    config = SuperSimpleNetConfig.quick(image_size=64, seg_hidden=32, cls_channels=4, steps=4, batch_size=4,
                                        threshold_folds=3, device="cpu")
    model = SuperSimpleNet(config).fit(images, progress=False)
    _check_out_of_fold(calls, n=11, k=3)
    assert (model.n_train, model.n_holdout) == (11, 0) and model.calibration["folds"] == 3
    assert model.threshold_normal == metrics.threshold_from_normal(model.normal_scores, 0.01)
    plain = SuperSimpleNet(config.replace(threshold_folds=0, holdout_fraction=0.0)).fit(images, progress=False)
    assert torch.equal(model.predict(images[:3])[0], plain.predict(images[:3])[0])


def test_the_baseline_keeps_one_held_out_split(images):
    baseline = NearestNeighbourBaseline(tiny(), coreset=1.0).fit(images)
    assert (baseline.n_train, baseline.n_holdout) == (10, 1) and baseline.calibration["method"] == "held-out"


def test_validation_selection_needs_the_held_out_split():
    with pytest.raises(InputError, match="select.*threshold_folds=0"):
        SimpleNetConfig(select="validation")
    assert SimpleNetConfig(select="validation", threshold_folds=0).select == "validation"
    with pytest.raises(InputError, match="threshold_folds"):
        SimpleNetConfig(threshold_folds=1)
    assert SimpleNetConfig.paper().threshold_folds == 0 and SimpleNetConfig().threshold_folds == 5


# ------------------------------------------------------------------ the claim travels: report, checkpoint, ONNX


def test_the_claim_in_the_report_the_checkpoint_and_the_onnx_metadata(images, tmp_path, capsys):
    from simplenet_edu.deploy.export import export_metadata

    model = SimpleNet(tiny(threshold_folds=2)).fit(images, progress=False)
    loaded = SimpleNet.load(model.save(tmp_path / "m.pt"))
    assert loaded.calibration == model.calibration and loaded.normal_scores == model.normal_scores
    meta = export_metadata(loaded, "torchscript")
    assert '"fpr_upper_95"' in meta["threshold_calibration"] and "2 folds" in meta["threshold_source"]
    report = {"image_auroc": 1.0, "pixel_auroc": None, "aupro": None, "f1_max": 1.0, "threshold_f1": 0.5,
              "threshold_normal": model.threshold_normal, "threshold_calibration": model.calibration,
              "n_train": 11, "n_holdout": 0, "n_test": 4, "seconds_features": 1.0, "seconds_train": 2.0,
              "seconds_folds": 3.0, "ms_per_image_inference": 5.0}
    print_report(report)
    out = capsys.readouterr().out
    assert "(11 images out of fold, 2 folds)" in out and "achieved 0/11 = 0.000, 95 % upper bound 0.238" in out
    assert "2.0 s (+ 3.0 s for the 2 threshold folds)" in out
    assert out.strip().splitlines()[-1].startswith("warning: 11 normal images cannot show")


# ------------------------------------------------------------------ fit's memory, bounded


def test_the_bank_keeps_the_same_number_of_patches_from_every_image(images):
    # 8 x 8 = 64 patches per image; a bank of 110 patches keeps 11 of each of the 10 training images,
    # and every patch of at most 110 // 64 = 1 image for the thresholds (the others held out train).
    model = SimpleNet(tiny(bank_patches=110, threshold_folds=0, holdout_fraction=0.3))
    source = model.training_source(images)
    plan = model.calibration_plan(len(source), max_scored=110 // 64)
    bank, bank_images, full = model.stream_features(source, plan, progress=False)
    assert plan.method == "held-out" and len(plan.folds[0]) == 1 and len(plan.train) == 10
    assert bank.shape == (10, 11, 32) and bank_images == plan.train and list(full) == plan.folds[0]
    whole = model.extract(images[plan.train], layers=False)
    for row, image in zip(bank, plan.train):   # each kept patch is one of its image's own patches
        assert all((whole[plan.train.index(image)] == patch).all(dim=1).any() for patch in row)
    fitted_model = model.fit(images, progress=False)
    assert fitted_model.n_train == 10 and fitted_model.calibration["n_normal"] == 1

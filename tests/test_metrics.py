"""Metrics against cases worked by hand, and exact AUPRO against a brute-force threshold loop."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from simplenet_edu.utils.errors import InputError
from simplenet_edu.evaluation.metrics import (
    aupro,
    confusion_at,
    f1_max,
    image_auroc,
    per_defect_auroc,
    pixel_auroc,
    pr_points,
    pro_curve,
    roc_points,
    summarize,
    threshold_from_normal,
)

# ----------------------------------------------------------------------------- image AUROC


def test_image_auroc_counts_pairs():
    # Anomalous 0.35 beats normal 0.1, loses to normal 0.4; anomalous 0.8 beats both.
    # 3 wins out of 2 x 2 pairs = 3/4.
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(3 / 4)


def test_image_auroc_accepts_torch_tensors():
    labels = torch.tensor([0, 0, 1, 1])
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8], requires_grad=True)
    assert image_auroc(labels, scores) == pytest.approx(3 / 4)


@pytest.mark.parametrize(
    "labels, problem",
    [([0, 0, 0], "only normal images"), ([1, 1, 1], "only anomalous images")],
)
def test_image_auroc_one_class_raises(labels, problem):
    with pytest.raises(InputError, match=f"^image AUROC is undefined: the test set has {problem}$"):
        image_auroc(labels, [0.1, 0.2, 0.3])


def test_labels_must_be_binary_and_match_scores():
    with pytest.raises(InputError, match="^labels: must hold only 0"):
        image_auroc([0, 2], [0.1, 0.2])
    with pytest.raises(InputError, match="equal length"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(InputError, match="^scores: contains NaN"):
        image_auroc([0, 1], [0.1, np.nan])


# ----------------------------------------------------------------------------- pixel AUROC


def test_pixel_auroc_on_one_2x2_map():
    # The one anomalous pixel (0.6) beats 0.2 and 0.1 and ties 0.6 (half a win): 2.5 / 3 = 5/6.
    masks = np.array([[[1, 0], [0, 0]]])
    maps = np.array([[[0.6, 0.2], [0.6, 0.1]]])
    assert pixel_auroc(masks, maps) == pytest.approx(5 / 6)


def test_pixel_auroc_without_anomalous_pixels_raises():
    with pytest.raises(InputError, match="^pixel AUROC is undefined: the masks have no anomalous pixels$"):
        pixel_auroc(np.zeros((1, 2, 2)), np.ones((1, 2, 2)))


# ----------------------------------------------------------------------------- AUPRO

# Region A (top left, 4 pixels) and region B (2 pixels touching only diagonally: one region with
# 8-connectivity, two with 4-connectivity). The other 10 pixels are normal.
HAND_MASK = np.array([[
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [0, 0, 0, 1],
    [0, 0, 1, 0],
]])
HAND_MAP = np.array([[
    [0.8, 0.8, 0.7, 0.0],
    [0.3, 0.2, 0.5, 0.0],
    [0.0, 0.2, 0.0, 0.9],
    [0.0, 0.0, 0.5, 0.2],
]])
# threshold  flagged                        FPR     PRO = mean(A, B)
#   inf      nothing                        0       0
#   0.9      B 1/2                          0       (0 + 1/2) / 2   = 1/4
#   0.8      A 2/4                          0       (1/2 + 1/2) / 2 = 1/2
#   0.7      1 normal                       1/10    1/2
#   0.5      B 2/2 and a 2nd normal (tie)   2/10    (1/2 + 1) / 2   = 3/4
#   0.3      A 3/4                          2/10    (3/4 + 1) / 2   = 7/8
#   0.2      A 4/4 and 2 more normals (tie) 4/10    1
#   0.0      the 6 other normals            1       1
HAND_FPR = [0, 0, 0, 1 / 10, 2 / 10, 2 / 10, 4 / 10, 1]
HAND_PRO = [0, 1 / 4, 1 / 2, 1 / 2, 3 / 4, 7 / 8, 1, 1]


def test_pro_curve_by_hand_groups_ties_and_uses_8_connectivity():
    fpr, pro = pro_curve(HAND_MASK, HAND_MAP)
    np.testing.assert_allclose(fpr, HAND_FPR)
    np.testing.assert_allclose(pro, HAND_PRO)


def test_aupro_by_hand_interpolates_at_fpr_limit():
    # The segment (0.2, 7/8) -> (0.4, 1) crosses FPR 0.3 at PRO 7/8 + 1/16 = 15/16. Trapezoids:
    #   0   -> 0.1: 0.1 * (1/2 + 1/2)   / 2 = 0.05
    #   0.1 -> 0.2: 0.1 * (1/2 + 3/4)   / 2 = 0.0625
    #   0.2 -> 0.3: 0.1 * (7/8 + 15/16) / 2 = 0.090625
    # Sum 13/64, divided by 0.3: 65/96.
    assert aupro(HAND_MASK, HAND_MAP) == pytest.approx(65 / 96, abs=1e-12)


def test_aupro_by_hand_with_fpr_limit_on_a_curve_point():
    # Up to FPR 0.2 (a vertical jump 3/4 -> 7/8 sits there and adds no area): 0.1125 / 0.2 = 9/16.
    assert aupro(HAND_MASK, HAND_MAP, fpr_limit=0.2) == pytest.approx(9 / 16, abs=1e-12)


def test_aupro_perfect_and_inverted_maps():
    masks = np.zeros((2, 5, 5))
    masks[0, 1:3, 1:3] = 1
    masks[1, 4, 0] = 1
    noise = np.random.default_rng(0).random(masks.shape)
    assert aupro(masks, noise + 2 * masks) == pytest.approx(1.0)  # every anomalous pixel on top
    assert aupro(masks, noise - 2 * masks) == pytest.approx(0.0)  # every normal pixel on top


def _brute_force_aupro(masks, maps, fpr_limit):
    """One threshold per distinct score, each region measured on its own: slow but obvious."""
    regions = []
    for image, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(image, labelled == k) for k in range(1, count + 1)]
    normal = masks == 0
    points = []
    for threshold in np.concatenate([[np.inf], np.unique(maps)[::-1]]):
        flagged = maps >= threshold
        fpr = (flagged & normal).sum() / normal.sum()
        pro = np.mean([flagged[image][region].mean() for image, region in regions])
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            x1, y1 = fpr_limit, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


@pytest.mark.parametrize("decimals", [None, 1])  # None: distinct scores; 1: many ties
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aupro_matches_brute_force(seed, decimals):
    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.random((3, 10, 10)), sigma=(0, 1.5, 1.5))
    masks = (blobs > np.quantile(blobs, 0.8)).astype(int)
    maps = rng.random(masks.shape) + 0.4 * masks
    if decimals is not None:
        maps = maps.round(decimals)
    for fpr_limit in (0.05, 0.3, 1.0):
        assert aupro(masks, maps, fpr_limit) == pytest.approx(_brute_force_aupro(masks, maps, fpr_limit), abs=1e-6)


def test_aupro_input_errors():
    with pytest.raises(InputError, match="^AUPRO is undefined: the masks have no anomalous pixels$"):
        aupro(np.zeros((2, 3, 3)), np.ones((2, 3, 3)))
    with pytest.raises(InputError, match=r"^fpr_limit: must be in \(0, 1\]"):
        aupro(HAND_MASK, HAND_MAP, fpr_limit=0.0)
    with pytest.raises(InputError, match=r"\[N, H, W\]"):
        aupro(HAND_MASK[0], HAND_MAP[0])


# ----------------------------------------------------------------------------- thresholds

# Sorted by score: 0.8 (anomalous), 0.7 (anomalous), 0.6 (normal), 0.4 (anomalous), 0.3, 0.1 (normal).
LABELS = [0, 0, 1, 1, 0, 1]
SCORES = [0.1, 0.6, 0.4, 0.8, 0.3, 0.7]


def test_f1_max_by_hand():
    # threshold 0.8: P 1,   R 1/3 -> F1 1/2      threshold 0.4: P 3/4, R 1 -> F1 6/7 (best)
    # threshold 0.7: P 1,   R 2/3 -> F1 4/5      threshold 0.3: P 3/5, R 1 -> F1 3/4
    # threshold 0.6: P 2/3, R 2/3 -> F1 2/3      threshold 0.1: P 1/2, R 1 -> F1 2/3
    f1, threshold = f1_max(LABELS, SCORES)
    assert f1 == pytest.approx(6 / 7)
    assert threshold == pytest.approx(0.4)


def test_f1_max_guards_zero_over_zero():
    # At threshold 0.9 nothing anomalous is flagged: precision = recall = 0, F1 must be 0, not NaN.
    f1, threshold = f1_max([0, 1], [0.9, 0.2])
    assert f1 == pytest.approx(2 / 3)  # threshold 0.2: P 1/2, R 1
    assert threshold == pytest.approx(0.2)


def test_threshold_from_normal_flags_at_most_max_fpr():
    normal = [0.1, 0.5, 0.3, 0.9, 0.7]
    # 20% of 5 = 1 score may be flagged: just above 0.7, so only 0.9 is.
    threshold = threshold_from_normal(normal, max_fpr=0.2)
    assert threshold == np.nextafter(0.7, np.inf)
    assert sum(s >= threshold for s in normal) == 1
    # 1% of 5 rounds down to 0: just above the highest score.
    assert threshold_from_normal(normal, max_fpr=0.01) == np.nextafter(0.9, np.inf)


def test_threshold_from_normal_with_tied_top_scores_flags_none():
    # Flagging one 0.9 flags both, which is 40% > 20%: nothing can be flagged.
    assert threshold_from_normal([0.1, 0.9, 0.9, 0.3, 0.5], max_fpr=0.2) == np.nextafter(0.9, np.inf)


def test_threshold_from_normal_pixel_scores_and_rounding():
    # 100 pixel scores 0..99 in a 10x10 map; 29% (0.29 * 100 = 28.999... in floats) flags 71..99.
    normal_map = np.arange(100.0).reshape(10, 10)
    assert threshold_from_normal(normal_map, max_fpr=0.29) == np.nextafter(70.0, np.inf)


def test_confusion_at_by_hand():
    # Flagged at 0.5: 0.8, 0.7 (anomalous: tp 2) and 0.6 (normal: fp 1); 0.4 is missed (fn 1);
    # 0.3 and 0.1 are correctly passed (tn 2).
    result = confusion_at(LABELS, SCORES, 0.5)
    assert {k: result[k] for k in ("tp", "fp", "tn", "fn")} == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["fpr"] == pytest.approx(1 / 3)
    assert result["accuracy"] == pytest.approx(4 / 6)


def test_confusion_at_threshold_equal_to_a_score_flags_it_and_nothing_flagged_is_zero():
    assert confusion_at(LABELS, SCORES, 0.4)["tp"] == 3
    result = confusion_at(LABELS, SCORES, 2.0)
    assert (result["tp"], result["fp"], result["precision"], result["f1"]) == (0, 0, 0.0, 0.0)


def test_per_defect_auroc_by_hand():
    # crack 0.9 beats both normals (0.2, 0.5); crack 0.4 beats 0.2 only: 3/4.
    # scratch 0.6 beats both: 1.
    labels = [0, 0, 1, 1, 1]
    scores = [0.2, 0.5, 0.9, 0.4, 0.6]
    types = ["good", "good", "crack", "crack", "scratch"]
    assert per_defect_auroc(labels, scores, types) == pytest.approx({"crack": 3 / 4, "scratch": 1.0})


def test_curve_points_for_plots():
    fpr, tpr, thresholds = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert np.trapezoid(tpr, fpr) == pytest.approx(3 / 4)
    assert len(fpr) == len(tpr) == len(thresholds)
    precision, recall, thresholds = pr_points(LABELS, SCORES)
    assert len(precision) == len(recall) == len(thresholds) + 1
    with pytest.raises(InputError, match="only normal images"):
        pr_points([0, 0], [0.1, 0.2])


# ----------------------------------------------------------------------------- summary


def test_summarize_is_json_ready_and_consistent():
    labels = [0, 0, 1, 1, 1]
    scores = [0.2, 0.5, 0.9, 0.4, 0.6]
    types = ["good", "good", "crack", "crack", "scratch"]
    masks = np.repeat(HAND_MASK, 5, axis=0)
    maps = np.repeat(HAND_MAP, 5, axis=0)
    summary = summarize(labels, scores, types, masks, maps, normal_threshold=0.55)
    json.dumps(summary)  # plain Python types only
    assert summary["image_auroc"] == pytest.approx(5 / 6)  # 5 of 6 pairs: 0.4 loses to 0.5
    assert summary["aupro"] == pytest.approx(65 / 96)
    assert summary["per_defect_image_auroc"] == pytest.approx({"crack": 3 / 4, "scratch": 1.0})
    assert summary["threshold_normal"] == 0.55
    assert summary["at_threshold_normal"]["tp"] == 2  # 0.9 and 0.6
    assert summary["f1_max"] == pytest.approx(6 / 7)  # threshold 0.4: P 3/4, R 1
    assert summary["at_threshold_f1"]["recall"] == 1.0


def test_summarize_without_masks_or_normal_threshold():
    summary = summarize([0, 1], [0.1, 0.9], ["good", "crack"])
    assert summary["pixel_auroc"] is None and summary["aupro"] is None
    assert summary["threshold_normal"] is None and summary["at_threshold_normal"] is None
    assert summary["image_auroc"] == 1.0
    with pytest.raises(InputError, match="both masks and maps"):
        summarize([0, 1], [0.1, 0.9], ["good", "crack"], masks=HAND_MASK)


def test_confusion_at_compares_float32_scores_in_float64():
    # threshold_from_normal returns the next float64 above a score; on float32 scores NumPy would
    # round that threshold back down to the score and flag it.
    scores = np.array([0.1, 0.7], dtype=np.float32)
    threshold = float(np.nextafter(np.float64(scores[1]), np.inf))
    assert confusion_at([0, 1], scores, threshold)["tp"] == 0

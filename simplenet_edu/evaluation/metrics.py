"""How well do anomaly scores separate normal from anomalous? Metrics, honestly computed.

Every function takes numpy arrays (torch tensors work too) and returns plain Python numbers, so a
result can go straight into JSON.

Two kinds of question are answered here:

- Ranking, with no threshold at all: image AUROC, pixel AUROC and AUPRO ask whether anomalous
  images (pixels, regions) get higher scores than normal ones.
- Decisions at a threshold: a user needs one number above which a part is rejected. The honest
  threshold comes from normal images the model never trained on (:func:`threshold_from_normal`),
  and what it claims about the false-positive rate is only as good as the number of those images
  (:func:`fpr_upper_bound`, :func:`calibration_record`); the threshold that maximises F1 on the
  test set (:func:`f1_max`) peeks at the test labels, so it is an optimistic upper bound, never a
  threshold to ship.

Convention everywhere: label 1 means anomalous, and a score ``>= threshold`` is predicted anomalous.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from ..utils.errors import InputError

# 8-connectivity inside each image, and no connection between the images stacked along axis 0.
_EIGHT_NEIGHBOURS_PER_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_NEIGHBOURS_PER_IMAGE[1] = True

_ONE_CLASS_MESSAGES = {
    "image": ("the test set has only normal images", "the test set has only anomalous images"),
    "pixel": ("the masks have no anomalous pixels", "the masks have no normal pixels"),
}


# ----------------------------------------------------------------------------- input checks


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU or attached to a graph
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _as_binary(name: str, values) -> np.ndarray:
    """Labels or masks as a bool array of the same shape (True = anomalous)."""
    values = _to_numpy(values)
    if values.dtype == bool:
        return values
    if not ((values == 0) | (values == 1)).all():
        raise InputError(name, "must hold only 0 (normal) and 1 (anomalous)")
    return values == 1


def _as_scores(name: str, values) -> np.ndarray:
    """Scores or maps as a float array; a NaN would silently corrupt every ranking metric."""
    values = _to_numpy(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise InputError(name, "contains NaN or infinite scores")
    return values


def _checked_pair(names: tuple[str, str], truth, scores, ndim: int, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """``truth`` as bool and ``scores`` as float, both of ``ndim`` dimensions and one shape (``shape``
    says which, for the error)."""
    truth, scores = _as_binary(names[0], truth), _as_scores(names[1], scores)
    if truth.ndim != ndim or truth.shape != scores.shape:
        raise InputError(None, f"{names[0]} and {names[1]} must {shape}, got {truth.shape} and {scores.shape}")
    return truth, scores


def _labels_and_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Checked image-level inputs: labels [N] bool, scores [N] float."""
    return _checked_pair(("labels", "scores"), labels, scores, 1, "be 1-D of equal length")


def _masks_and_maps(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """Checked pixel-level inputs: masks [N, H, W] bool, maps [N, H, W] float."""
    return _checked_pair(("masks", "maps"), masks, maps, 3, "both be [N, H, W] of one shape")


def _require_both_classes(is_anomalous: np.ndarray, metric: str, level: str) -> None:
    no_anomalous, no_normal = _ONE_CLASS_MESSAGES[level]
    if not is_anomalous.any():
        raise InputError(None, f"{metric} is undefined: {no_anomalous}")
    if is_anomalous.all():
        raise InputError(None, f"{metric} is undefined: {no_normal}")


def _safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with 0/0 defined as 0.0 (e.g. precision when nothing is flagged)."""
    return float(numerator / denominator) if denominator else 0.0


# ----------------------------------------------------------------------------- ranking metrics


def image_auroc(labels, scores) -> float:
    """Probability that a random anomalous image scores above a random normal one (ties count 1/2).

    labels: [N] in {0, 1}; scores: [N]. Raises InputError when only one class is present.
    """
    labels, scores = _labels_and_scores(labels, scores)
    _require_both_classes(labels, "image AUROC", "image")
    return float(roc_auc_score(labels, scores))


def pixel_auroc(masks, maps) -> float:
    """AUROC over every pixel of every image, pooled: masks [N, H, W] in {0, 1}, maps [N, H, W].

    Large anomalies dominate it (they have the most pixels); AUPRO weighs each region equally.
    """
    masks, maps = _masks_and_maps(masks, maps)
    _require_both_classes(masks, "pixel AUROC", "pixel")
    return float(roc_auc_score(masks.ravel(), maps.ravel()))


def pro_curve(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-region-overlap curve: (fpr [K], pro [K]), starting at (0, 0) and ending at (1, 1).

    masks: [N, H, W] in {0, 1}; maps: [N, H, W]. One point per distinct score t, predicting
    ``maps >= t`` anomalous:

    - FPR = flagged normal pixels / all normal pixels (over all images);
    - PRO = mean, over every ground-truth region (8-connected component, over all images), of the
      fraction of that region's pixels that are flagged.

    Sorting all pixels once by score and accumulating each pixel's contribution gives every point of
    the curve exactly, as the MVTec AD evaluation code does; equal scores are one threshold, so only
    the last pixel of each run of ties yields a point.
    """
    masks, maps = _masks_and_maps(masks, maps)
    _require_both_classes(masks, "AUPRO", "pixel")
    regions, n_regions = ndimage.label(masks, structure=_EIGHT_NEIGHBOURS_PER_IMAGE)
    region_sizes = np.bincount(regions.ravel())

    # Flagging an anomalous pixel raises PRO by 1 / (number of regions * size of its region).
    pro_step_per_region = np.zeros(n_regions + 1)
    pro_step_per_region[1:] = 1.0 / (n_regions * region_sizes[1:])

    order = np.argsort(maps.ravel())[::-1]  # highest score first
    sorted_scores = maps.ravel()[order]
    sorted_regions = regions.ravel()[order]
    flagged_normal = np.cumsum(sorted_regions == 0)
    pro = pro_step_per_region[sorted_regions]
    np.cumsum(pro, out=pro)  # in place: the maps can hold millions of pixels

    last_of_each_tie = np.append(np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), len(order) - 1)
    fpr = np.concatenate([[0.0], flagged_normal[last_of_each_tie] / flagged_normal[-1]])
    pro = np.concatenate([[0.0], np.clip(pro[last_of_each_tie], 0.0, 1.0)])  # clip float round-off
    return fpr, pro


def _area_up_to(x: np.ndarray, y: np.ndarray, x_limit: float) -> float:
    """Trapezoid area under the curve (x [K] non-decreasing from 0, y [K]) between x = 0 and x_limit.

    The curve is cut at exactly x_limit by linear interpolation on the segment that crosses it.
    """
    inside = np.searchsorted(x, x_limit, side="right")  # x[:inside] <= x_limit
    x_cut, y_cut = x[:inside], y[:inside]
    if inside < len(x):
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]
        y_at_limit = y0 + (y1 - y0) * (x_limit - x0) / (x1 - x0)
        x_cut, y_cut = np.append(x_cut, x_limit), np.append(y_cut, y_at_limit)
    return float(np.trapezoid(y_cut, x_cut))


def aupro(masks, maps, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, fpr_limit], divided by fpr_limit (1.0 is perfect).

    masks: [N, H, W] in {0, 1}; maps: [N, H, W]. The standard metric of the MVTec AD paper
    (Bergmann et al., 2021), computed exactly from :func:`pro_curve`. Unlike the official SimpleNet
    code, predictions are not dilated and FPR is not rescaled by its maximum.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise InputError("fpr_limit", f"must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(masks, maps)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def per_defect_auroc(labels, scores, defect_types) -> dict[str, float]:
    """Image AUROC of each defect type's images against all normal images: {defect type: AUROC}.

    labels: [N] in {0, 1}; scores: [N]; defect_types: [N] names (those of normal images are ignored).
    """
    labels, scores = _labels_and_scores(labels, scores)
    defect_types = np.asarray(defect_types)
    if defect_types.shape != labels.shape:
        raise InputError("defect_types", f"must have one name per image ({labels.shape}), got {defect_types.shape}")
    aurocs = {}
    for defect in sorted(set(defect_types[labels].tolist())):
        normal_or_this_defect = ~labels | (defect_types == defect)
        aurocs[str(defect)] = image_auroc(labels[normal_or_this_defect], scores[normal_or_this_defect])
    return aurocs


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve for plotting: (fpr [K], tpr [K], thresholds [K]); thresholds decrease."""
    labels, scores = _labels_and_scores(labels, scores)
    _require_both_classes(labels, "the ROC curve", "image")
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return fpr, tpr, thresholds


def pr_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The precision-recall curve for plotting: (precision [K+1], recall [K+1], thresholds [K]).

    thresholds increase; the last (precision 1, recall 0) point has no threshold, as in sklearn.
    """
    labels, scores = _labels_and_scores(labels, scores)
    if not labels.any():
        raise InputError(None, "precision and recall are undefined: the test set has only normal images")
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    return precision, recall, thresholds


# ----------------------------------------------------------------------------- decisions at a threshold


def f1_max(labels, scores) -> tuple[float, float]:
    """The best F1 over all thresholds, and the threshold reaching it: (f1, threshold).

    labels: [N] in {0, 1}; scores: [N]. It is chosen on the test labels, so it is an optimistic
    upper bound on what a deployed threshold achieves: compare with :func:`threshold_from_normal`.
    """
    precision, recall, thresholds = pr_points(labels, scores)
    precision, recall = precision[:-1], recall[:-1]  # drop the point that has no threshold
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def threshold_from_normal(normal_scores, max_fpr: float = 0.01) -> float:
    """The smallest threshold that flags at most max_fpr of these normal scores as anomalous.

    normal_scores: [M] scores of normal training images by heads that never trained on them (held
    out, or scored out of fold; never test images), or flattened normal anomaly maps for a pixel
    threshold. A score >= the threshold is anomalous. With few scores (M * max_fpr < 1) no score may
    be flagged, and the threshold is the next float above the highest one. Ties can make it flag
    fewer than allowed: equal scores are flagged together.
    """
    allowed_flags(0, max_fpr)  # a bad share is named before the scores are looked at
    scores = _as_scores("normal_scores", normal_scores).ravel()
    if scores.size == 0:
        raise InputError("normal_scores", "is empty")
    return threshold_from_highest(scores, scores.size, max_fpr)


def allowed_flags(count: int, max_fpr: float) -> int:
    """How many of ``count`` normal scores a threshold at ``max_fpr`` may flag: ``floor(max_fpr * count)``."""
    if not 0.0 <= max_fpr < 1.0:
        raise InputError("max_fpr", f"must be in [0, 1), got {max_fpr}")
    return int(np.floor(max_fpr * count + 1e-9))  # the epsilon absorbs 0.29 * 100 = 28.999...


def threshold_from_highest(highest, count: int, max_fpr: float = 0.01) -> float:
    """:func:`threshold_from_normal` of ``count`` normal scores of which only the highest are given
    (at least ``allowed_flags(count, max_fpr) + 1`` of them, in any order): the same threshold, from a
    bounded buffer instead of every pixel of every normal image."""
    allowed = allowed_flags(count, max_fpr)
    scores = np.sort(np.asarray(highest, dtype=np.float64).ravel())[::-1]
    if scores.size < min(allowed + 1, count):
        raise ValueError(f"{scores.size} highest scores cannot place a threshold that flags {allowed} of {count}")
    # Flagging at most `allowed` scores means staying strictly above the (allowed + 1)-th highest one.
    return float(np.nextafter(scores[allowed], np.inf))


def fpr_upper_bound(flagged: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on a true false-positive rate from ``flagged`` of ``n`` normal
    images (Clopper-Pearson, the exact binomial bound): the rate ``p`` at which seeing ``flagged`` or
    fewer has probability ``1 - confidence``. With none flagged it is ``1 - (1 - confidence) ** (1 / n)``,
    about ``3 / n`` at 95 % (the rule of three): 28 normal images bound the rate by 0.10, 299 by 0.01.
    """
    if not (isinstance(n, (int, np.integer)) and n >= 1 and 0 <= flagged <= n):
        raise InputError("flagged", f"must be a count between 0 and n = {n}, got {flagged}")
    if flagged == n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(confidence, flagged + 1, n - flagged))


CONFIDENCE = 0.95   # of the upper bound on a false-positive rate (calibration_record)


def calibration_record(n: int, flagged: int, target: float, method: str, folds: int | None = None,
                       n_pixels: int | None = None, pixels_flagged: int | None = None) -> dict:
    """What a normal threshold claims, and how far that can be trusted: ``n`` normal images scored by
    heads that never saw them (``method``: ``"out-of-fold"`` over ``folds`` folds, or ``"held-out"``),
    of which ``flagged`` reach the threshold.

    Returns the ``target`` false-positive rate (``normal_max_fpr``), the rate achieved on those images
    (``achieved_fpr = flagged / n``), the smallest non-zero rate ``n`` images can show
    (``smallest_claimable_fpr = 1 / n``), a one-sided 95 % upper bound on the true rate
    (``fpr_upper_95``, :func:`fpr_upper_bound`), the same counts for pixels when given, and
    ``warning``: one line when ``n`` images are too few to show the target (``n * target < 1``), else ``None``.
    """
    upper = fpr_upper_bound(flagged, n, CONFIDENCE)
    warning = None
    if n * target < 1:
        needed = math.ceil(math.log(1 - CONFIDENCE) / math.log(1 - target))
        warning = (f"{n} normal image{'s' * (n != 1)} cannot show a false-positive rate of {target:g}: the smallest "
                   f"non-zero rate they can show is 1/{n} = {1 / n:.3f}, and the true rate is only known to be below "
                   f"{upper:.3f} (95 % upper bound); {needed} normal images, none flagged, would bound it by {target:g}")
    return {"method": method, "folds": folds, "n_normal": n, "target_fpr": target, "flagged": flagged,
            "achieved_fpr": flagged / n, "smallest_claimable_fpr": 1 / n, "fpr_upper_95": upper,
            "n_pixels": n_pixels, "pixels_flagged": pixels_flagged,
            "pixel_achieved_fpr": None if not n_pixels else pixels_flagged / n_pixels, "warning": warning}


def confusion_at(labels, scores, threshold: float) -> dict:
    """Counts and rates when ``scores >= threshold`` is predicted anomalous.

    labels: [N] in {0, 1}; scores: [N]. Returns tp, fp, tn, fn (ints) and precision, recall, f1,
    fpr, accuracy (floats; a 0/0 rate is 0.0).
    """
    labels, scores = _labels_and_scores(labels, scores)
    # Compare in float64: NumPy would round the threshold to float32 scores' precision, and a
    # threshold one float64 step above a score (threshold_from_normal) must not flag that score.
    flagged = scores.astype(np.float64) >= float(threshold)
    tp, fp = int((flagged & labels).sum()), int((flagged & ~labels).sum())
    fn, tn = int((~flagged & labels).sum()), int((~flagged & ~labels).sum())
    precision, recall = _safe_ratio(tp, tp + fp), _safe_ratio(tp, tp + fn)
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": _safe_ratio(2 * precision * recall, precision + recall),
        "fpr": _safe_ratio(fp, fp + tn),
        "accuracy": _safe_ratio(tp + tn, labels.size),
    }


def summarize(labels, scores, defect_types, masks=None, maps=None, normal_threshold=None) -> dict:
    """Every metric of one evaluation, as plain Python numbers (JSON-serialisable).

    labels, scores, defect_types: [N] per image; masks, maps: [N, H, W] or both None (then the
    pixel metrics are None); normal_threshold: from :func:`threshold_from_normal`, or None.
    """
    if (masks is None) != (maps is None):
        raise InputError(None, "give both masks and maps for the pixel metrics, or neither")
    has_pixels = masks is not None
    has_normal_threshold = normal_threshold is not None
    best_f1, threshold_f1 = f1_max(labels, scores)
    return {
        "image_auroc": image_auroc(labels, scores),
        "pixel_auroc": pixel_auroc(masks, maps) if has_pixels else None,
        "aupro": aupro(masks, maps) if has_pixels else None,
        "f1_max": best_f1,
        "threshold_f1": threshold_f1,
        "threshold_normal": float(normal_threshold) if has_normal_threshold else None,
        "per_defect_image_auroc": per_defect_auroc(labels, scores, defect_types),
        "at_threshold_f1": confusion_at(labels, scores, threshold_f1),
        "at_threshold_normal": confusion_at(labels, scores, normal_threshold) if has_normal_threshold else None,
    }

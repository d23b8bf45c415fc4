"""The report of one trained and evaluated model: what ``evaluate`` prints, writes as JSON, and what
every benchmark job keeps; and the words that tables and headers use for a configuration's input
size, training budget and noise (torch-free: the command line prints them without loading torch)."""

from __future__ import annotations

from typing import Any


def calibration_source(calibration: dict) -> str:
    """``"28 images out of fold, 5 folds"`` or ``"3 held-out images"``: the normal images that set a threshold."""
    if calibration["method"] == "out-of-fold":
        return f"{calibration['n_normal']} images out of fold, {calibration['folds']} folds"
    return f"{calibration['n_normal']} held-out images"


def calibration_text(calibration: dict | None) -> str:
    """One line: where the normal threshold comes from and what it claims, from a model's
    ``calibration`` (:func:`~simplenet_edu.evaluation.metrics.calibration_record`)."""
    if not calibration:
        return "no normal threshold (fewer than two normal training images)"
    c = calibration
    source = (f"{c['n_normal']} normal training images, each scored by heads trained without it ({c['folds']} folds)"
              if c["method"] == "out-of-fold" else f"{c['n_normal']} held-out normal training images")
    return (f"{source}: target false-positive rate {c['target_fpr']:g}, achieved {c['flagged']}/{c['n_normal']} = "
            f"{c['achieved_fpr']:.3f}, 95 % upper bound {c['fpr_upper_95']:.3f}")


def run_report(model, result) -> dict:
    """What ``simplenet-edu evaluate --output`` writes (and each benchmark job keeps): the metrics of
    ``result`` (an :class:`~simplenet_edu.evaluation.evaluator.EvaluationResult`), the normal
    threshold's record (``threshold_calibration``), the counts, the timings, the honest-stopping
    record and the whole configuration of ``model``."""
    metrics = result.metrics
    return {
        "model": getattr(model, "kind", "simplenet"),
        "image_auroc": metrics["image_auroc"],
        "pixel_auroc": metrics["pixel_auroc"],
        "aupro": metrics["aupro"],
        "f1_max": metrics["f1_max"],
        "threshold_f1": metrics["threshold_f1"],
        "threshold_normal": metrics["threshold_normal"],
        "per_defect_image_auroc": metrics["per_defect_image_auroc"],
        "at_threshold_normal": metrics.get("at_threshold_normal"),
        "at_threshold_f1": metrics.get("at_threshold_f1"),
        # Where threshold_normal comes from and what it claims: the target false-positive rate, the rate
        # achieved on the normal images that set it, and a 95 % upper bound on the true rate.
        "threshold_calibration": getattr(model, "calibration", None),
        "threshold_source": calibration_text(getattr(model, "calibration", None)),
        "n_train": model.n_train,
        "n_holdout": model.n_holdout,
        "n_test": len(result),
        "notes": result.notes,  # why a metric is null (no ground_truth/, masks empty at this size)
        "seconds_features": model.timings.get("seconds_features"),
        "seconds_train": model.timings.get("seconds_train"),
        "seconds_folds": model.timings.get("seconds_folds"),   # the threshold folds' heads, trained and scored
        "ms_per_image_inference": result.ms_per_image,
        # Honest stopping: scores on held-out normal images with painted defects (validation.py), at
        # each checkpoint of the run, and the step whose heads were kept.
        "selected_step": getattr(model, "selected_step", None),
        "validation": [{k: v for k, v in row.items() if k == "step" or k.startswith("val_")}
                       for row in getattr(model, "history", []) if "val_score" in row],
        "config": model.config.to_dict(),
    }


def print_report(report: dict) -> None:
    """The table ``simplenet-edu evaluate`` prints, from :func:`run_report`'s dict."""
    def fmt(value, unit="", digits=4):
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    calibration = report.get("threshold_calibration")
    folds = report.get("seconds_folds")
    rows = [
        ("image AUROC", fmt(report["image_auroc"])),
        ("pixel AUROC", fmt(report["pixel_auroc"])),
        ("AUPRO (FPR <= 0.3)", fmt(report["aupro"])),
        ("F1-max (threshold chosen on test)", f"{report['f1_max']:.4f} at {report['threshold_f1']:.4f}"),
        ("threshold from normal images", fmt(report["threshold_normal"])
         + (f" ({calibration_source(calibration)})" if calibration else "")),
    ]
    if calibration:
        rows.append(("false positives on those images",
                     f"target {calibration['target_fpr']:g}, achieved {calibration['flagged']}/{calibration['n_normal']}"
                     f" = {calibration['achieved_fpr']:.3f}, 95 % upper bound {calibration['fpr_upper_95']:.3f}"))
    rows += [
        ("train / held-out / test images", f"{report['n_train']} / {report['n_holdout']} / {report['n_test']}"),
        ("features / training time",
         f"{fmt(report['seconds_features'], ' s', 1)} / {fmt(report['seconds_train'], ' s', 1)}"
         + ("" if folds is None else f" (+ {folds:.1f} s for the {calibration['folds']} threshold folds)")),
        ("inference", fmt(report["ms_per_image_inference"], " ms per image", 1)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if calibration and calibration.get("warning"):
        print(f"warning: {calibration['warning']}")


def _field(config, name: str) -> Any:
    """A field of a configuration or of its dict (``to_dict()``, a results JSON)."""
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def _side(size) -> str:
    return f"{size[0]} x {size[1]} px" if isinstance(size, (list, tuple)) else f"{size} px"


def input_text(config) -> str:
    """The input size in words: ``"256 px"``, ``"329 px -> crop 288 px"``, ``"320 x 256 px"``, or
    ``"256 px on the short side (aspect kept)"``."""
    image_size, crop_size = _field(config, "image_size"), _field(config, "crop_size")
    if _field(config, "keep_aspect") is True:
        return f"{_side(image_size)} on the short side (aspect kept)"
    if _field(config, "keep_aspect") == "auto" and crop_size is None and not isinstance(image_size, (list, tuple)):
        return f"{_side(image_size)} (on the short side, aspect kept, for images at least 1.5 x as long as wide)"
    return _side(image_size) if crop_size is None else f"{_side(image_size)} -> crop {_side(crop_size)}"


def budget_text(config) -> str:
    """The training budget in words: ``"160 passes"`` when ``epochs`` is set, else ``"450 steps"``."""
    epochs, steps = _field(config, "epochs"), _field(config, "steps")
    if epochs is not None:
        return f"{epochs} passes"
    return "default budget" if steps is None else f"{steps} steps"


def noise_text(config) -> str:
    """The noise scale in words: ``"0.75 x feature std"`` (relative) or ``"0.015 (absolute)"``."""
    std = _field(config, "noise_std")
    return f"{std:g} x feature std" if _field(config, "noise_scale") == "relative" else f"{std:g} (absolute)"

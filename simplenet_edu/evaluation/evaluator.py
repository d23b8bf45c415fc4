"""Evaluation and localization: score a test set and compute honest metrics.

:func:`evaluate` runs a trained model over an MVTec-layout ``test`` folder and returns an
:class:`EvaluationResult` holding everything a learner or the threshold explorer needs: image
scores, labels, defect types, anomaly maps, masks, the images themselves, and the metrics.

Honesty rules (the official code breaks both):

- the model is the one from the last training epoch; nothing is selected on the test set;
- the threshold reported for deployment (``threshold_normal``) comes from *normal training* images,
  each scored by heads that never trained on it (out of fold, or held out). The F1-max threshold is
  reported beside it, but it is chosen on the test set itself, so it is an optimistic upper bound,
  not something a user could have known in advance.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import data as data_lib
from . import metrics
from ..utils.errors import DataWarning


@dataclass
class EvaluationResult:
    """Scores and metrics of one model on one test set (``N`` images of ``H x W`` pixels).

    Attributes:
        image_scores: ``[N]`` float32, higher is more anomalous.
        labels: ``[N]`` int, 1 for anomalous.
        defect_types: ``N`` strings, ``"good"`` for normal images.
        anomaly_maps: ``[N, H, W]`` float32.
        masks: ``[N, H, W]`` uint8 in {0, 1}, or ``None`` when the set has no ground truth.
        images: ``[N, H, W, 3]`` uint8, for display.
        paths: ``N`` file names.
        threshold_normal: image threshold from normal training images scored by heads that never
            trained on them (or ``None``).
        pixel_threshold_normal: the same for pixels.
        metrics: the dictionary of :func:`simplenet_edu.evaluation.metrics.summarize`.
        ms_per_image: inference time per image (backbone, heads, maps), in milliseconds.
        notes: why some metrics are ``None`` (no ``ground_truth/``, masks empty at this size), each
            also issued as a :class:`~simplenet_edu.utils.errors.DataWarning`.
    """

    image_scores: np.ndarray
    labels: np.ndarray
    defect_types: list[str]
    anomaly_maps: np.ndarray
    masks: np.ndarray | None
    images: np.ndarray
    paths: list[str]
    threshold_normal: float | None = None
    pixel_threshold_normal: float | None = None
    metrics: dict = field(default_factory=dict)
    ms_per_image: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_scores)


def score_dataset(model, dataset, batch_size: int = 8, progress: bool = True):
    """Run ``model.predict`` over a dataset of dicts. Returns (scores, maps, images, masks, seconds)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    scores, maps, images, masks = [], [], [], []
    seconds = 0.0
    for batch in tqdm(loader, desc="score", disable=not progress, leave=False):
        start = time.perf_counter()
        s, m = model.predict(batch["image"], batch_size=batch_size)
        seconds += time.perf_counter() - start
        scores.append(s.numpy())
        maps.append(m.numpy().astype(np.float32))
        images.append((batch["image"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
        if "mask" in batch:
            masks.append(batch["mask"].numpy().astype(np.uint8))
    return (np.concatenate(scores), np.concatenate(maps), np.concatenate(images),
            np.concatenate(masks) if masks else None, seconds)


def evaluate(model, root: str | Path, batch_size: int = 8, progress: bool = True) -> EvaluationResult:
    """Score ``root/test`` (MVTec layout) with a trained ``model`` and compute the metrics.

    The test split is checked whole first (:func:`~simplenet_edu.data.check_dataset`): a missing or
    one-kind ``test/`` (AUROC would be undefined), unreadable images, missing masks or masks of the
    wrong size raise :class:`~simplenet_edu.utils.errors.InputError` before any scoring, all listed.
    Without ``ground_truth/``, or when no mask keeps an anomalous pixel at the model's input size,
    the pixel metrics are ``None`` and a :class:`~simplenet_edu.utils.errors.DataWarning` says why.
    """
    root = Path(root)
    data_lib.check_dataset(root, need_train=False, need_test=True)
    dataset = data_lib.MVTecDataset(root, split="test", image_size=model.resize_shape, crop_size=model.image_shape)
    labels = np.asarray(dataset.labels, dtype=int)

    scores, maps, images, masks, seconds = score_dataset(model, dataset, batch_size, progress)
    notes = []
    if not dataset.has_masks:
        masks = None
        notes.append(f"{root} has no ground_truth/ folder: image metrics only (pixel AUROC and AUPRO are null)")
    elif not masks.any():
        height, width = masks.shape[-2:]
        notes.append(f"{root / 'ground_truth'}: no mask keeps an anomalous pixel at the model's input of {height} x "
                     f"{width} px, so pixel AUROC and AUPRO are null (defects smaller than the resize step vanish: "
                     f"a larger --image-size keeps them, unless the mask files themselves are blank)")
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    pixels = masks is not None and bool(masks.any())  # normal images' masks are empty: never all anomalous
    summary = metrics.summarize(labels, scores, list(dataset.defect_types), masks=masks if pixels else None,
                                maps=maps if pixels else None, normal_threshold=model.threshold_normal)
    return EvaluationResult(
        image_scores=scores, labels=labels, defect_types=list(dataset.defect_types), anomaly_maps=maps,
        masks=masks, images=images, paths=[str(p) for p in dataset.paths],
        threshold_normal=model.threshold_normal, pixel_threshold_normal=model.pixel_threshold_normal,
        metrics=summary, ms_per_image=1000.0 * seconds / len(dataset), notes=notes,
    )

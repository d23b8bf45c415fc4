"""Honest stopping: a validation score from normal images only.

The official code picks its best epoch by scoring the *test* set after every epoch, which no
deployed model could do. This module builds a validation set without a
single test image: the held-out normal training images, once as they are (label 0) and once per
synthetic defect painted on them (label 1, with the painted pixels as the mask). The painters are the
demo set's (``data.demo``): a scratch, a hole, a stain and a crack, each covering 0.5% to 5% of the
image. During training the model scores this set at a few checkpoints, giving an image AUROC and an
AUPRO that ``history`` records; ``SimpleNetConfig(select="validation")`` keeps the checkpoint that
scores best instead of the last one. It needs held-out images, so it runs with the single held-out
split (``threshold_folds=0``); with the default out-of-fold thresholds every image trains the heads.

Painted defects are not real ones, so this is a proxy: ``benchmarks/sweep.py`` measures on the
development suite whether choosing by it beats a fixed budget (README, "The CPU default, and why").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..evaluation import metrics
from ..data import DEMO_DEFECTS, _paint_defect


@dataclass
class ValidationSet:
    """Normal images and painted copies of them.

    Attributes:
        images: ``[K * (1 + len(defects)), 3, H, W]`` float32 in ``[0, 1]``, the K normal images first.
        masks: ``[K * (1 + len(defects)), H, W]`` uint8 in ``{0, 1}`` (all zeros for the normal images).
        labels: ``[K * (1 + len(defects))]`` int, 1 for painted.
    """

    images: torch.Tensor
    masks: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def paint(image: torch.Tensor, defect: str, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """One synthetic ``defect`` on ``image [3, H, W]`` in ``[0, 1]``: ``(painted [3, H, W], mask [H, W] bool)``.

    The painters draw on a square; on an ``H x W`` image (``H != W``) they paint a random square of
    side ``min(H, W)``, so the defect's size follows the short side.
    """
    pixels = image.permute(1, 2, 0).double().numpy() * 255                      # [H, W, 3] in [0, 255]
    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    square, square_mask = _paint_defect(pixels[top:top + side, left:left + side], defect, rng)
    painted, mask = pixels.copy(), np.zeros((h, w), dtype=bool)
    painted[top:top + side, left:left + side] = square
    mask[top:top + side, left:left + side] = square_mask
    # Rounded to 8 bits, as a real image file would be.
    out = torch.from_numpy(np.clip(np.round(painted), 0, 255) / 255).float().permute(2, 0, 1).contiguous()
    return out, mask


def painted_validation_set(images: torch.Tensor, seed: int = 0, defects=DEMO_DEFECTS) -> ValidationSet:
    """The validation set of ``images [K, 3, H, W]`` (held-out normal images): each as it is, then each
    with each of ``defects`` painted on it. The same seed gives the same set."""
    rng = np.random.default_rng([seed, 7])
    painted, masks = [], []
    for image in images:
        for defect in defects:
            out, mask = paint(image, defect, rng)
            painted.append(out)
            masks.append(mask)
    k, (h, w) = len(images), images.shape[-2:]
    all_masks = np.concatenate([np.zeros((k, h, w), dtype=np.uint8), np.stack(masks).astype(np.uint8)])
    labels = np.concatenate([np.zeros(k, dtype=int), np.ones(len(painted), dtype=int)])
    return ValidationSet(torch.cat([images.float(), torch.stack(painted)]), all_masks, labels)


def validation_scores(labels: np.ndarray, masks: np.ndarray, image_scores, maps) -> dict:
    """``val_image_auroc``, ``val_aupro`` and their mean ``val_score`` (what ``select="validation"``
    maximises) of one model's scores ``[N]`` and maps ``[N, H, W]`` on a :class:`ValidationSet`."""
    image_auroc = metrics.image_auroc(labels, np.asarray(image_scores))
    aupro = metrics.aupro(masks, np.asarray(maps))
    return {"val_image_auroc": image_auroc, "val_aupro": aupro, "val_score": (image_auroc + aupro) / 2}


def checkpoint_steps(total: int, every: int, n: int) -> set[int]:
    """The ``n`` steps of a ``total``-step run at which the validation set is scored: evenly spread,
    each on a history row (a multiple of ``every``), the last one at the end."""
    return {min(total, every * math.ceil(total * i / n / every)) for i in range(1, n + 1)}

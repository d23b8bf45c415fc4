"""Which normal images set a model's thresholds, and what the thresholds claim.

A model's thresholds come from normal images scored by heads that never trained on them: every
training image out of fold (:func:`normal_folds`), or a held-out share (:class:`CalibrationPlan`).
:class:`NormalScores` keeps those scores in bounded memory and turns them into the thresholds, the
spreads and the record of what they claim (:func:`~simplenet_edu.evaluation.metrics.calibration_record`).
:class:`~simplenet_edu.core.fitted.FittedModel` runs the plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..evaluation.metrics import allowed_flags, calibration_record, threshold_from_highest
from ..utils.stats import robust_spread

Outputs = tuple[torch.Tensor, torch.Tensor]      # (image scores [B], anomaly maps [B, H, W])
SPREAD_PIXELS = 1 << 22     # normal pixels kept for the pixel spread (16 MB); beyond it an even sample


# ------------------------------------------------------------------ which normal images set the thresholds


def normal_folds(n: int, k: int, seed: int = 0) -> list[list[int]]:
    """``min(k, n)`` folds of the indices ``0 .. n-1``: a seeded permutation cut into near-equal parts,
    each sorted. Every index is in exactly one fold; the same seed gives the same folds."""
    order = np.random.default_rng([seed, 5]).permutation(n)
    return [sorted(part.tolist()) for part in np.array_split(order, min(k, n))]


def even_sample(n: int, count: int, seed: int = 0) -> list[int]:
    """At most ``min(count, n)`` sorted indices of ``0 .. n-1``, one drawn at random (seeded) from each
    of ``count`` equal stretches: spread evenly over the whole range, whatever its order. Stretches
    shorter than two indices can draw the same index, which is kept once (``count`` = 256 of 300 gives
    about 225)."""
    if count >= n:
        return list(range(n))
    edges = np.linspace(0, n, count + 1)
    rng = np.random.default_rng([seed, 11])
    return sorted({int(min(n - 1, np.floor(a + rng.random() * (b - a)))) for a, b in zip(edges[:-1], edges[1:])})


@dataclass
class CalibrationPlan:
    """Which images train the shipped heads and which normal images set the thresholds.

    ``method``: ``"out-of-fold"`` (``folds`` partition ``train``; each fold's images in ``scored`` are
    scored by heads trained on the other folds), ``"held-out"`` (one fold, the held-out images, never
    trained on) or ``"none"`` (fewer than two normal images: no threshold). ``scored``: the images whose
    scores are recorded (every image of the folds, unless memory asked for an even sample of them).
    """

    method: str
    train: list[int]
    folds: list[list[int]] = field(default_factory=list)
    scored: set[int] = field(default_factory=set)

    def fold_scored(self, fold: list[int]) -> list[int]:
        return [i for i in fold if i in self.scored]

    @property
    def n_scored(self) -> int:
        return sum(len(self.fold_scored(fold)) for fold in self.folds)


class NormalScores:
    """The normal images' scores and maps that set the thresholds and spreads, in bounded memory.

    Thresholds: every image score, and of the pixels only the highest ones a threshold can depend on
    (``floor(max_fpr * pixels) + 1`` of them): the same thresholds as from every value, exactly.
    Spreads: every image score and, beyond :data:`SPREAD_PIXELS` pixels, an evenly strided sample of them.
    ``n_threshold`` and ``n_spread`` images of ``pixels`` pixels each will be added.
    """

    def __init__(self, max_fpr: float, pixels: int, n_threshold: int, n_spread: int):
        self.max_fpr, self.pixels = max_fpr, pixels
        self.keep = allowed_flags(n_threshold * pixels, max_fpr) + 1
        self.stride = max(1, math.ceil(n_spread * pixels / SPREAD_PIXELS))
        self.scores: list[torch.Tensor] = []          # image scores that set the threshold
        self.top = torch.empty(0)                     # the highest of their pixels
        self.n_pixels = 0
        self.spread_scores: list[torch.Tensor] = []
        self.spread_pixels: list[torch.Tensor] = []

    def add(self, outputs: Iterable[Outputs], threshold: bool = True) -> None:
        """Record batches of ``(scores [B], maps [B, H, W])``: for the thresholds and the spreads, or
        (``threshold=False``: images the heads trained on) for the spreads alone."""
        for scores, maps in outputs:
            scores, flat = scores.detach().cpu(), maps.detach().cpu().flatten()
            if threshold:
                self.scores.append(scores)
                self.n_pixels += flat.numel()
                pool = torch.cat([self.top, flat.float()])
                self.top = pool.topk(min(self.keep, pool.numel())).values if pool.numel() > self.keep else pool
            self.spread_scores.append(scores)
            self.spread_pixels.append(flat[::self.stride].clone() if self.stride > 1 else flat)

    def image_scores(self) -> np.ndarray:
        return torch.cat(self.scores).double().numpy() if self.scores else np.empty(0)

    def thresholds(self) -> tuple[float | None, float | None]:
        """``(image threshold, pixel threshold)``: at most ``max_fpr`` of the recorded normal scores
        and pixels at or above them (:func:`~simplenet_edu.evaluation.metrics.threshold_from_normal`)."""
        scores = self.image_scores()
        if scores.size == 0:
            return None, None
        return (threshold_from_highest(scores, scores.size, self.max_fpr),
                threshold_from_highest(self.top.numpy(), self.n_pixels, self.max_fpr))

    def spreads(self) -> tuple[float | None, float | None]:
        if not self.spread_scores:
            return None, None
        return (robust_spread(torch.cat(self.spread_scores).numpy()),
                robust_spread(torch.cat(self.spread_pixels).numpy()))

    def record(self, threshold: float, pixel_threshold: float, method: str, folds: int | None) -> dict:
        """What the thresholds claim, and how far that can be trusted (:func:`~simplenet_edu.evaluation.metrics.calibration_record`)."""
        scores = self.image_scores()
        flagged = int((scores >= threshold).sum())
        pixels = int((self.top.double() >= pixel_threshold).sum())
        return calibration_record(len(scores), flagged, self.max_fpr, method, folds,
                                  n_pixels=self.n_pixels, pixels_flagged=pixels)

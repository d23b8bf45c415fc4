"""The package's statistics of repeated runs and of normal scores: one implementation each.

Every table that reports runs over several seeds gives ``mean ± std`` with the **sample** standard
deviation (``ddof=1``: an unbiased variance from a handful of seeds) and says so in its header
(:data:`MEAN_STD_NOTE`). One run has no spread: its std is ``None`` and a table shows ``-``.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

MEAN_STD_NOTE = "mean ± std, the sample standard deviation (ddof = 1)"


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """``(mean, sample std)`` of ``values``; std ``None`` for a single value; ``(None, None)`` when there
    are no values or one is missing (a set without masks has no pixel AUROC)."""
    values = list(values)
    if not values or any(v is None for v in values):
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)


def format_mean_std(mean: float | None, std: float | None, digits: int = 3) -> str:
    """``"0.934 ± 0.002"``; ``"0.934"`` without a spread; ``"-"`` without a mean."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def robust_spread(values) -> float:
    """``1.4826 * median(|v - median(v)|)``: the standard deviation of normal data, robust to a few
    odd values (one strange training image does not widen it)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def nanmean(values: Iterable[float]) -> float:
    """Mean of the finite values; NaN when there are none (without numpy's empty-slice warning)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")

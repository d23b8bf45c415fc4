"""What the threshold explorer (:mod:`.widgets`) is built from, without a widget: plain functions.

Checking a result, choosing which images the grid shows, the exact threshold stops of the sliders
and their labels, an exact ``>=`` between float32 scores and a float64 threshold, and the figures
encoded for the page. They need no browser and no ipywidgets, so they are tested on their own.
"""

from __future__ import annotations

import io

import numpy as np

from ..evaluation import metrics
from ..utils.errors import InputError

_DIGITS = 4  # significant digits of a threshold's label; more only where neighbours would read alike


# ----------------------------------------------------------------------------- checking the input


def checked_result(result):
    """The result's arrays, checked: (scores [N] f64, labels [N] bool, defect_types [N] str,
    maps [N, H, W], masks [N, H, W] bool or None, images [N, H, W, 3] or [N, H, W])."""
    missing = [name for name in ("image_scores", "labels", "defect_types", "anomaly_maps", "images")
               if not hasattr(result, name)]
    if missing:
        raise InputError("result", f"is not an EvaluationResult: it has no {', '.join(missing)}")
    labels, scores = metrics._labels_and_scores(result.labels, result.image_scores)
    if not labels.any() or labels.all():
        raise InputError("result", "needs both normal and anomalous test images to choose a threshold")
    n = len(scores)
    defect_types = np.asarray([str(name) for name in result.defect_types])
    maps = metrics._as_scores("result.anomaly_maps", result.anomaly_maps)
    images = np.asarray(result.images)
    if defect_types.shape != (n,):
        raise InputError("result.defect_types", f"must name one defect type per image ({n}), got {len(defect_types)}")
    if maps.ndim != 3 or len(maps) != n:
        raise InputError("result.anomaly_maps", f"must be [N, H, W] with N = {n}, got {maps.shape}")
    if images.shape[:3] != maps.shape or images.ndim not in (3, 4):
        raise InputError("result.images", f"must be [N, H, W, 3] or [N, H, W] with [N, H, W] = {maps.shape}, "
                                          f"got {images.shape}")
    masks = getattr(result, "masks", None)
    if masks is not None:
        masks = metrics._as_binary("result.masks", masks)
        if masks.shape != maps.shape:
            raise InputError("result.masks", f"must have the shape of the anomaly maps {maps.shape}, got {masks.shape}")
    return scores, labels, defect_types, maps, masks, images


def shown_images(groups: list[np.ndarray], n_shown: int) -> list[int]:
    """Up to n_shown indices, taken in turn from each group (normal, then each defect), so all appear."""
    shown, depth = [], 0
    while len(shown) < n_shown and any(depth < len(group) for group in groups):
        shown += [int(group[depth]) for group in groups if depth < len(group)]
        depth += 1
    return shown[:n_shown]


def encode_figure(figure, image_format: str) -> bytes:
    """The figure drawn and encoded; its Agg canvas is reused, so only the changed artists cost."""
    from PIL import Image

    figure.canvas.draw()
    picture = Image.frombuffer("RGBA", figure.canvas.get_width_height(), figure.canvas.buffer_rgba())
    buffer = io.BytesIO()
    # Encoding dominates a redraw: JPEG for the photo grid (PNG is ~40x slower on textured images),
    # fast-compressed PNG for the line-art histogram.
    if image_format == "jpeg":
        picture.convert("RGB").save(buffer, format="jpeg", quality=90)
    else:
        picture.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def metric_html(name: str, value) -> str:
    """One number in the HTML, tagged so a browser test can find it: <b data-metric="tp">3</b>."""
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return f'<b data-metric="{name}">{text}</b>'


# ----------------------------------------------------------------------------- exact thresholds
#
# The sliders are SelectionSliders over exact float thresholds. A FloatSlider would not do: the
# browser rounds its value to a multiple of its step and sends the rounded value back to Python, so
# a threshold snapped to 0.8615 would show, and apply, 0.8666.


def _format(value: float, digits: int) -> str:
    return f"{value:.{digits}g}"


def threshold_labels(values: list[float]) -> list[str]:
    """Distinct readouts for sorted distinct thresholds: _DIGITS significant digits, more (up to 6)
    where a neighbour would read the same. A value that only float noise tells apart from the one
    below it (such as the next float above the highest score) reads "> that one": a threshold just
    above a score flags exactly the scores above it."""
    labels = []
    for i, value in enumerate(values):
        if i and _format(values[i - 1], 6) == _format(value, 6):
            labels.append(f"> {labels[-1]}" if not labels[-1].startswith(">") else repr(value))
            continue
        others = [values[j] for j in (i - 1, i + 1)
                  if 0 <= j < len(values) and _format(values[j], 6) != _format(value, 6)]
        digits = next(d for d in range(_DIGITS, 7) if all(_format(value, d) != _format(u, d) for u in others))
        labels.append(_format(value, digits))
    if len(set(labels)) < len(labels):  # two labels of different precision can coincide: rare, so
        labels = [repr(value) for value in values]  # then every label is the exact shortest repr
    return labels


def selection_options(values) -> tuple[tuple[str, float], ...]:
    """(label, exact threshold) pairs for a SelectionSlider, ascending, without duplicates."""
    values = sorted({float(value) for value in values})
    return tuple(zip(threshold_labels(values), values))


def at_least(values: np.ndarray, threshold: float) -> np.ndarray:
    """``values >= threshold``, exactly, without converting ``values`` to float64.

    NumPy compares a float32 array with a Python float in float32, rounding the threshold: the next
    float64 above a float32 score would round back to that score and flag it. Comparing with the
    smallest value of the array's dtype that is >= the threshold gives the float64 answer."""
    threshold = np.float64(threshold)
    in_dtype = threshold.astype(values.dtype)
    if np.float64(in_dtype) < threshold:
        in_dtype = np.nextafter(in_dtype, values.dtype.type(np.inf))
    return values >= in_dtype

"""What a line inspector reads: a heat-map PNG per image and a row of ``scores.csv``.

Only numpy and Pillow: both ``simplenet-edu predict`` paths, the torch model and an exported ONNX
model under onnxruntime, write their outputs through this module, so the files are the same.

**The normalised score.** A raw SimpleNet score (``-D``, the discriminator's output negated) has no
fixed scale. Two numbers from normal images give it one: the threshold ``t`` (from held-out normal
images, ``model.threshold_normal``) and the spread ``d`` of the scores of the normal images the model
was fitted on (``model.normal_score_spread``: 1.4826 x their median absolute deviation, a standard
deviation robust to an odd image)::

    normalised(s) = 1 / (1 + 9 ** (-(s - t) / d))

a logistic curve that reads 0.5 at the threshold, 0.9 one spread above it and 0.1 one spread below
(0.01 two spreads below). It keeps the order of the raw scores, so ``normalised >= 0.5`` is exactly
``score >= t``: a scale to read, not a new decision, and no test image goes into it. Pixels use the
same formula with the pixel threshold (``pixel_threshold_normal``) and the spread of the normal
images' map values (``normal_pixel_spread``).

**The heat map** (``render``) is the image with the normalised pixel map over it in the jet colours
(blue: two or more spreads below the pixel threshold; the middle, green: the threshold; red: two or
more above), a white contour around the pixels at or above the pixel threshold, and the normalised image
score in the top left corner, on red when the image is anomalous. A model without thresholds falls
back to each map's own range and draws no contour.

**The raw map** (``--no-overlay``, :func:`encode_raw`): a 16-bit grayscale PNG of the anomaly map,
``value = map_min + pixel / 65535 * (map_max - map_min)``, with ``map_min`` and ``map_max`` (that
map's own range) in the image's row of ``scores.csv`` and in the PNG's text chunks.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from ..utils.atomic import atomic_path, write_text

CSV_FIELDS = ("path", "score", "normalised_score", "anomalous", "heatmap", "map_min", "map_max", "error")
NORMALISED_FORMULA = "1 / (1 + 9 ** (-(score - threshold) / spread))"
RAW_MAP_FORMULA = "map = map_min + pixel / 65535 * (map_max - map_min)"


def normalised(values, threshold: float | None, spread: float | None) -> np.ndarray | None:
    """``1 / (1 + 9 ** (-(v - threshold) / spread))`` elementwise (see the module docstring);
    ``None`` when either number is missing or the spread is not positive."""
    if threshold is None or spread is None or not spread > 0:
        return None
    z = math.log(9.0) * (np.asarray(values, dtype=np.float64) - threshold) / spread
    return 1.0 / (1.0 + np.exp(-np.clip(z, -700.0, 700.0)))


@dataclass(frozen=True)
class Calibration:
    """The numbers from normal images that turn raw scores into decisions and readable maps."""

    threshold: float | None = None          # image threshold from held-out normal images
    pixel_threshold: float | None = None    # pixel threshold, the same way
    score_spread: float | None = None       # robust std of the normal images' scores (fitted on)
    pixel_spread: float | None = None       # ... and of their maps' values

    @classmethod
    def of_model(cls, model) -> "Calibration":
        """From a trained model's attributes (any model class that has them)."""
        def value(name):
            found = getattr(model, name, None)
            return None if found is None else float(found)

        return cls(value("threshold_normal"), value("pixel_threshold_normal"),
                   value("normal_score_spread"), value("normal_pixel_spread"))

    def image(self, scores) -> np.ndarray | None:
        return normalised(scores, self.threshold, self.score_spread)

    def pixels(self, maps) -> np.ndarray | None:
        return normalised(maps, self.pixel_threshold, self.pixel_spread)


# ------------------------------------------------------------------ drawing

# matplotlib's "jet" as its segment data: (position, value) breakpoints of red, green and blue.
_JET = {
    0: ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    1: ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    2: ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}


def jet(values: np.ndarray) -> np.ndarray:
    """``[...]`` values in [0, 1] -> ``[..., 3]`` RGB in [0, 1], matplotlib's jet colour map."""
    values = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(values, [p for p, _ in seg], [v for _, v in seg]) for seg in _JET.values()], -1)


def contour(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The ``[H, W]`` boolean outline of ``mask``: its pixels with a 4-neighbour outside it (the
    image border counts as outside), thickened inwards to ``width`` pixels."""
    edge = np.zeros_like(mask, dtype=bool)
    inner = mask.astype(bool)
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        eroded = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        edge |= inner & ~eroded
        inner = eroded
    return edge


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)   # Pillow >= 10.1: a scalable font
    except (TypeError, OSError):
        return ImageFont.load_default()


def _to_float_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def render(image: np.ndarray, amap: np.ndarray, score: float, calibration: Calibration,
           alpha: tuple[float, float] = (0.15, 0.6)) -> np.ndarray:
    """The heat map a person reads at a glance: ``image [H, W, 3]`` (float in [0, 1] or uint8) with
    ``amap [H, W]`` over it, the contour at the pixel threshold and the score in the corner.
    The colours cover the image from ``alpha[0]`` (most normal) to ``alpha[1]`` (most anomalous), so
    the part stays visible where nothing is wrong. Returns ``[H, W, 3]`` uint8."""
    image = _to_float_image(image)
    amap = np.asarray(amap, dtype=np.float64)
    height, width = amap.shape
    colour_values = calibration.pixels(amap)
    if colour_values is None:   # no anchors: the map's own range
        low, high = float(amap.min()), float(amap.max())
        colour_values = (amap - low) / max(high - low, 1e-12)
    weight = (alpha[0] + (alpha[1] - alpha[0]) * np.clip(colour_values, 0.0, 1.0))[..., None]
    blended = (1 - weight) * image + weight * jet(colour_values)
    pixels = (255 * blended).round().clip(0, 255).astype(np.uint8)
    if calibration.pixel_threshold is not None:
        pixels[contour(amap >= calibration.pixel_threshold, max(1, round(min(height, width) / 200)))] = 255

    normal_scale = calibration.image([score])
    anomalous = calibration.threshold is not None and score >= calibration.threshold
    if normal_scale is not None:
        label = f"{float(normal_scale[0]):.2f} {'anomalous' if anomalous else 'normal'}"
    elif calibration.threshold is not None:
        label = f"score {score:.3f} {'anomalous' if anomalous else 'normal'}"
    else:
        label = f"score {score:.3f}"
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    font = _font(max(9, round(min(height, width) / 14)))
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    pad = max(1, (bottom - top) // 4)
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad),
                   fill=(200, 0, 0) if anomalous else (30, 30, 30))
    draw.text((pad - left, pad - top), label, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def encode_raw(amap: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``amap [H, W]`` -> ``(pixels [H, W] uint16, map_min, map_max)``, ``pixels = round((amap -
    map_min) / (map_max - map_min) * 65535)``; :func:`decode_raw` reads it back (to 1 / 65535 of the
    range)."""
    amap = np.asarray(amap, dtype=np.float64)
    low, high = float(amap.min()), float(amap.max())
    scaled = (amap - low) / (high - low) if high > low else np.zeros_like(amap)
    return np.round(scaled * 65535).astype(np.uint16), low, high


def decode_raw(pixels: np.ndarray, map_min: float, map_max: float) -> np.ndarray:
    """The anomaly map back from a raw 16-bit PNG's pixels and its ``map_min`` / ``map_max``."""
    return map_min + np.asarray(pixels, dtype=np.float64) / 65535 * (map_max - map_min)


def read_raw(path: str | os.PathLike) -> np.ndarray:
    """Read a raw map PNG written by ``predict --no-overlay`` (its range is in its text chunks)."""
    with Image.open(path) as png:
        return decode_raw(np.asarray(png), float(png.text["map_min"]), float(png.text["map_max"]))


def _save_png(image: Image.Image, path: Path, **options) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", **options)


# ------------------------------------------------------------------ one folder's outputs


def heatmap_names(paths: list[Path]) -> dict[Path, str]:
    """``<stem>_heatmap.png``; ``<stem>_<ext>_heatmap.png`` where two images share a stem (a.png, a.jpg)."""
    stems = [path.stem for path in paths]
    return {path: f"{path.stem}_{path.suffix[1:]}_heatmap.png" if stems.count(path.stem) > 1
            else f"{path.stem}_heatmap.png" for path in paths}


class PredictionWriter:
    """Writes one folder's predictions: a PNG per image as it comes, ``scores.csv`` at the end.

    ``scores.csv`` columns: ``path``; ``score`` (raw); ``normalised_score`` (the formula above, empty
    without anchors); ``anomalous`` (``yes`` / ``no`` at the normal threshold, empty without one);
    ``heatmap`` (the PNG's name); ``map_min``, ``map_max`` (the map's range, which a raw PNG needs to
    be read back); ``error`` (why an image could not be scored; its other columns are empty).
    """

    def __init__(self, output_dir: str | os.PathLike, calibration: Calibration, overlay: bool = True,
                 names: dict[Path, str] | None = None):
        self.out = Path(output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.calibration, self.overlay, self.names = calibration, overlay, names or {}
        self.rows: list[dict] = []

    def add(self, path: str | os.PathLike, image: np.ndarray, score: float, amap: np.ndarray) -> dict:
        """One scored image: ``image [H, W, 3]`` in [0, 1], its ``score`` and ``amap [H, W]``."""
        path = Path(path)
        name = self.names.get(path) or heatmap_names([path])[path]
        score = float(score)
        raw, low, high = encode_raw(amap)
        if self.overlay:
            _save_png(Image.fromarray(render(image, amap, score, self.calibration)), self.out / name)
        else:
            info = PngImagePlugin.PngInfo()
            for key, value in (("map_min", repr(low)), ("map_max", repr(high)), ("formula", RAW_MAP_FORMULA)):
                info.add_text(key, value)
            _save_png(Image.fromarray(raw), self.out / name, pnginfo=info)
        level = self.calibration.image([score])
        threshold = self.calibration.threshold
        row = {"path": str(path), "score": f"{score:.6f}",
               "normalised_score": "" if level is None else f"{float(level[0]):.4f}",
               "anomalous": "" if threshold is None else ("yes" if score >= threshold else "no"),
               "heatmap": name, "map_min": f"{low:.9g}", "map_max": f"{high:.9g}", "error": ""}
        self.rows.append(row)
        return row

    def add_error(self, path: str | os.PathLike, problem: str) -> dict:
        """An image that could not be scored: listed, with the reason, and no PNG."""
        row = dict.fromkeys(CSV_FIELDS, "")
        row.update(path=str(path), error=problem)
        self.rows.append(row)
        return row

    def close(self) -> Path:
        """Write ``scores.csv`` (atomically) and return its path."""
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=list(CSV_FIELDS))
        writer.writeheader()
        writer.writerows(self.rows)
        return write_text(self.out / "scores.csv", table.getvalue(), newline="")

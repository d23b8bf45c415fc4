"""What a line inspector reads: a heat-map PNG per image and a row of ``scores.csv``.

Only numpy and Pillow: both ``simplenet-edu predict`` paths, the torch model and an exported ONNX
model under onnxruntime, write their outputs through this module, so the files are the same.

**The normalised score.** A raw SimpleNet score (``-D``, the discriminator's output negated) has no
fixed scale. Two numbers from normal images give it one: the threshold ``t`` (from normal training
images scored out of fold, ``model.threshold_normal``) and the spread ``d`` of the scores of the normal images the model
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

**At the image's own size** (the default): the model scores its input, the image resized to
``resize_shape`` and centre-cropped to ``image_shape``; :func:`map_to_image` takes its ``[H, W]`` map
back through that crop and resize onto the original ``[H0, W0]`` pixels, so a 576 x 768 photograph
gets a 576 x 768 heat map that lies on it. The margin the crop cut away was never scored: it is NaN
in the map, pale grey in the heat map, and outside ``scored_box`` in a raw map.

**scores.csv** is written row by row as images are scored (:class:`~simplenet_edu.utils.atomic.CsvRows`):
a run cut short keeps a valid table of every image up to there. A text cell that begins with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe, so that a spreadsheet
shows it as text instead of running it (an image named ``=HYPERLINK(1).png``); numbers are unchanged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from ..utils.atomic import CsvRows, atomic_path, make_folder

CSV_FIELDS = ("path", "score", "normalised_score", "anomalous", "heatmap", "map_min", "map_max", "error")
NORMALISED_FORMULA = "1 / (1 + 9 ** (-(score - threshold) / spread))"
RAW_MAP_FORMULA = "map = map_min + pixel / 65535 * (map_max - map_min)"
MAP_SIZES = ("image", "model")   # heat maps at each image's own size, or at the model's input
UNSCORED_GREY = (0.62, 0.22)     # the unscored margin: grey = 0.62 + 0.22 * (the pixel's brightness - 0.5)


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

    threshold: float | None = None          # image threshold from normal training images
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


# ------------------------------------------------------------------ back onto the original image


def _axis_back(n_original: int, n_resized: int, start: int, n_crop: int):
    """Along one axis: for each original pixel, the two map pixels around it, the weight of the
    second, and whether the crop kept it. Pixel centres line up as Pillow's resize puts them: original
    pixel ``x`` lies at ``(x + 0.5) * n_resized / n_original - 0.5`` in the resized image, ``start``
    less in the crop."""
    position = (np.arange(n_original) + 0.5) * (n_resized / n_original) - 0.5 - start
    scored = (position >= -0.5) & (position < n_crop - 0.5)
    position = np.clip(position, 0.0, n_crop - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, n_crop - 1)
    return low, high, (position - low).astype(np.float32), scored


def map_to_image(amap: np.ndarray, original_hw: Sequence[int], resize_shape: Sequence[int],
                 image_shape: Sequence[int]) -> np.ndarray:
    """A map of the model's input ``amap [H, W]`` back onto the original image: ``[H0, W0]`` float32.

    The model's input is the image resized (bilinear) to ``resize_shape = (h, w)``, then its centre
    cut to ``image_shape = (H, W)``; here the map is placed back in that crop and resized (bilinear)
    to ``original_hw = (H0, W0)``, so that each value lies on the pixels it was computed from. The
    margin the crop cut away is NaN: not scored. Without a crop and at the same size, the map itself.
    """
    amap = np.asarray(amap, dtype=np.float32)
    (height, width), (resized_h, resized_w), (crop_h, crop_w) = (tuple(int(v) for v in shape) for shape in
                                                                  (original_hw, resize_shape, image_shape))
    if amap.shape != (crop_h, crop_w):
        raise ValueError(f"map of shape {list(amap.shape)} is not the model's input {[crop_h, crop_w]}")
    if (height, width) == (resized_h, resized_w) == (crop_h, crop_w):
        return amap.copy()
    top, left = (resized_h - crop_h) // 2, (resized_w - crop_w) // 2   # as the reader crops
    rows_low, rows_high, row_weight, rows_scored = _axis_back(height, resized_h, top, crop_h)
    cols_low, cols_high, col_weight, cols_scored = _axis_back(width, resized_w, left, crop_w)
    rows = amap[rows_low] * (1 - row_weight)[:, None] + amap[rows_high] * row_weight[:, None]     # [H0, W]
    back = rows[:, cols_low] * (1 - col_weight) + rows[:, cols_high] * col_weight                 # [H0, W0]
    back[~(rows_scored[:, None] & cols_scored[None, :])] = np.nan
    return back


def scored_box(amap: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(left, top, right, bottom)`` (right and bottom exclusive) of the finite values of ``amap``, or
    ``None`` when every value is finite."""
    finite = np.isfinite(amap)
    if finite.all():
        return None
    rows, cols = np.flatnonzero(finite.any(axis=1)), np.flatnonzero(finite.any(axis=0))
    if not len(rows):
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


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


_JET_TABLE = jet(np.linspace(0.0, 1.0, 1024)).astype(np.float32)


def _jet_fast(values: np.ndarray) -> np.ndarray:
    """:func:`jet` read from a table of 1024 colours (float32): within 0.003 of it (under one 8-bit level
    once blended), several times faster on a whole photograph."""
    index = np.rint(np.clip(values, 0.0, 1.0) * (len(_JET_TABLE) - 1)).astype(np.intp)
    return _JET_TABLE[index]


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
    the part stays visible where nothing is wrong. NaN in ``amap`` marks pixels the model did not
    score (the margin its crop cut away): they are drawn pale grey. Returns ``[H, W, 3]`` uint8."""
    image = _to_float_image(image)
    amap = np.asarray(amap, dtype=np.float64)
    height, width = amap.shape
    scored = np.isfinite(amap)
    if not scored.any():
        scored = np.ones_like(scored)
        amap = np.zeros_like(amap)
    amap = np.where(scored, amap, np.min(amap, where=scored, initial=np.inf))
    colour_values = calibration.pixels(amap)
    if colour_values is None:   # no anchors: the map's own range
        low, high = float(amap.min()), float(amap.max())
        colour_values = (amap - low) / max(high - low, 1e-12)
    colour_values = np.asarray(colour_values, dtype=np.float32)
    weight = (alpha[0] + (alpha[1] - alpha[0]) * np.clip(colour_values, 0.0, 1.0))[..., None]
    blended = (1 - weight) * image + weight * _jet_fast(colour_values)
    if not scored.all():
        grey = UNSCORED_GREY[0] + UNSCORED_GREY[1] * (image.mean(axis=-1, keepdims=True) - 0.5)
        blended = np.where(scored[..., None], blended, grey)
    pixels = (255 * blended).round().clip(0, 255).astype(np.uint8)
    if calibration.pixel_threshold is not None:
        pixels[contour((amap >= calibration.pixel_threshold) & scored, max(1, round(min(height, width) / 200)))] = 255

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
    range). NaN (not scored) is written as 0 and left out of the range."""
    amap = np.asarray(amap, dtype=np.float64)
    finite = np.isfinite(amap)
    if not finite.any():
        return np.zeros(amap.shape, dtype=np.uint16), 0.0, 0.0
    low, high = float(amap[finite].min()), float(amap[finite].max())
    scaled = (amap - low) / (high - low) if high > low else np.zeros_like(amap)
    return np.round(np.where(finite, scaled, 0.0) * 65535).astype(np.uint16), low, high


def decode_raw(pixels: np.ndarray, map_min: float, map_max: float) -> np.ndarray:
    """The anomaly map back from a raw 16-bit PNG's pixels and its ``map_min`` / ``map_max``."""
    return map_min + np.asarray(pixels, dtype=np.float64) / 65535 * (map_max - map_min)


def read_raw(path: str | os.PathLike) -> np.ndarray:
    """Read a raw map PNG written by ``predict --no-overlay`` (its range is in its text chunks; NaN
    outside its ``scored_box``, where there is one)."""
    with Image.open(path) as png:
        amap = decode_raw(np.asarray(png), float(png.text["map_min"]), float(png.text["map_max"]))
        box = png.text.get("scored_box")
    if box:
        left, top, right, bottom = (int(v) for v in box.split(","))
        outside = np.ones(amap.shape, dtype=bool)
        outside[top:bottom, left:right] = False
        amap[outside] = np.nan
    return amap


def _save_png(image: Image.Image, path: Path, **options) -> None:
    # Light compression: on a 576 x 768 heat map zlib's default level took 3.6x as long for a file 4 % smaller.
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1, **options)


# ------------------------------------------------------------------ one folder's outputs


def heatmap_names(paths: list[Path], root: str | os.PathLike | None = None) -> dict[Path, str]:
    """``<stem>_heatmap.png``; ``<stem>_<ext>_heatmap.png`` where two images of one folder share a stem
    (a.png, a.jpg). With ``root``, each name keeps the image's folder below ``root``
    (``a/part.png`` -> ``a/part_heatmap.png``), so that two ``part.png`` of different folders never
    overwrite each other."""
    def folder(path: Path) -> Path:
        return path.parent.relative_to(root) if root is not None else Path()

    stems: dict[tuple[Path, str], int] = {}
    for path in paths:
        stems[folder(path), path.stem] = stems.get((folder(path), path.stem), 0) + 1
    names = {}
    for path in paths:
        name = (f"{path.stem}_{path.suffix[1:]}_heatmap.png" if stems[folder(path), path.stem] > 1
                else f"{path.stem}_heatmap.png")
        names[path] = (folder(path) / name).as_posix()
    return names


class PredictionWriter:
    """Writes one folder's predictions as they come: a PNG per image and a row of ``scores.csv`` each.

    ``scores.csv`` columns: ``path``; ``score`` (raw); ``normalised_score`` (the formula above, empty
    without anchors); ``anomalous`` (``yes`` / ``no`` at the normal threshold, empty without one);
    ``heatmap`` (the PNG's path in the output folder); ``map_min``, ``map_max`` (the written map's
    range, which a raw PNG needs to be read back); ``error`` (why an image could not be scored; its
    other columns are empty). Rows are written as images are added, each whole (the module docstring).

    ``shapes = (resize_shape, image_shape)``: the model's resize and crop. With ``map_size="image"``
    (the default) an image added with its ``original`` pixels gets its map at the original's size
    (:func:`map_to_image`); ``"model"`` keeps the model's input size.
    """

    def __init__(self, output_dir: str | os.PathLike, calibration: Calibration, overlay: bool = True,
                 names: dict[Path, str] | None = None,
                 shapes: tuple[Sequence[int], Sequence[int]] | None = None, map_size: str = "image"):
        if map_size not in MAP_SIZES:
            raise ValueError(f"map_size must be one of {MAP_SIZES}, got {map_size!r}")
        self.out = make_folder(output_dir)
        self.calibration, self.overlay, self.names = calibration, overlay, names or {}
        self.shapes, self.map_size = shapes, map_size
        self.scored = self.failed = 0
        self.table = CsvRows(self.out / "scores.csv", CSV_FIELDS)

    @property
    def rows(self) -> int:
        """Rows written so far (scored and failed images)."""
        return self.scored + self.failed

    def add(self, path: str | os.PathLike, image: np.ndarray, score: float, amap: np.ndarray,
            original: np.ndarray | None = None) -> dict:
        """One scored image: the model's input ``image [H, W, 3]`` in [0, 1], its ``score`` and ``amap
        [H, W]``; ``original [H0, W0, 3]`` (uint8): the image as read, to draw the map at its size."""
        path = Path(path)
        name = self.names.get(path) or heatmap_names([path])[path]
        score = float(score)
        picture = image
        if original is not None and self.map_size == "image" and self.shapes is not None:
            amap = map_to_image(amap, np.shape(original)[:2], *self.shapes)
            picture = original
        if self.overlay:
            finite = np.isfinite(amap)
            low, high = (float(amap[finite].min()), float(amap[finite].max())) if finite.any() else (0.0, 0.0)
            _save_png(Image.fromarray(render(picture, amap, score, self.calibration)), self.out / name)
        else:
            raw, low, high = encode_raw(amap)
            info = PngImagePlugin.PngInfo()
            box = scored_box(amap)
            texts = [("map_min", repr(low)), ("map_max", repr(high)), ("formula", RAW_MAP_FORMULA)]
            if box is not None:
                texts.append(("scored_box", ",".join(map(str, box))))
            for key, value in texts:
                info.add_text(key, value)
            _save_png(Image.fromarray(raw), self.out / name, pnginfo=info)
        level = self.calibration.image([score])
        threshold = self.calibration.threshold
        row = {"path": str(path), "score": f"{score:.6f}",
               "normalised_score": "" if level is None else f"{float(level[0]):.4f}",
               "anomalous": "" if threshold is None else ("yes" if score >= threshold else "no"),
               "heatmap": name, "map_min": f"{low:.9g}", "map_max": f"{high:.9g}", "error": ""}
        self.table.write(row)
        self.scored += 1
        return row

    def add_error(self, path: str | os.PathLike, problem: str) -> dict:
        """An image that could not be scored: listed, with the reason, and no PNG."""
        row = dict.fromkeys(CSV_FIELDS, "")
        row.update(path=str(path), error=problem)
        self.table.write(row)
        self.failed += 1
        return row

    def close(self) -> Path:
        """Close ``scores.csv`` (every row is already written) and return its path."""
        return self.table.close()

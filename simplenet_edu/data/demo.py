"""The demo data set: defects painted on scikit-image's CC0 texture photographs, offline, in a second."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFilter

from ..utils.errors import InputError, WriteError

from ..utils.atomic import make_folder, replace_folder, temp_name, write_reason


DEMO_CATEGORIES = ("brick", "gravel", "grass")
DEMO_DEFECTS = ("crack", "hole", "scratch", "stain")
_DEMO_VERSION = 1  # bump when the drawing changes, so old demo folders are regenerated
_MARKER = ".complete"
# scikit-image's photographs are grayscale; a fixed tint per category makes them colour images.
_TINTS = {"brick": (1.0, 0.74, 0.6), "gravel": (0.95, 0.9, 0.8), "grass": (0.66, 0.95, 0.5)}
_STAIN_COLOURS = ((60, 90, 210), (215, 180, 40), (160, 50, 160))
_DEFECT_AREA = (0.005, 0.05)  # fraction of the image a defect may cover


def _texture(category: str, image_size: int) -> np.ndarray:
    """[H, W, 3] float64 in [0, 255]: the tinted photograph, at least twice `image_size` wide."""
    photo = Image.fromarray(getattr(skimage.data, category)())  # CC0 photograph, 512 x 512 gray
    side = max(photo.width, 2 * image_size)  # leave room for crops to move
    photo = photo.resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(photo, dtype=np.float64)[..., None] * np.array(_TINTS[category])


def _normal_crop(texture: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """[size, size, 3]: a random square of the texture, randomly rotated by 90 degrees and flipped."""
    top, left = rng.integers(0, texture.shape[0] - size + 1, size=2)
    crop = np.rot90(texture[top : top + size, left : left + size], k=int(rng.integers(4)))
    return np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)


def _draw(size: int, paint) -> np.ndarray:
    """[size, size] bool: what `paint(ImageDraw)` draws in white on black."""
    canvas = Image.new("L", (size, size), 0)
    paint(ImageDraw.Draw(canvas))
    return np.asarray(canvas) > 127


def _soften(mask: np.ndarray, radius: float) -> np.ndarray:
    """[H, W, 1] float in [0, 1]: the mask with blurred edges, for blending a defect in."""
    blurred = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, dtype=np.float64)[..., None] / 255


def _blob(centre: np.ndarray, radius: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """The corners of a lumpy polygon around `centre`."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, 14))
    radii = radius * rng.uniform(0.7, 1.0, 14)
    return [(cx, cy) for cx, cy in centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]]


def _scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin bright or dark curve (a quadratic Bezier), as drawn by a sharp edge."""
    size = image.shape[0]
    centre = rng.uniform(0.3, 0.7, 2) * size
    angle = rng.uniform(0, math.pi)
    half = rng.uniform(0.18, 0.3) * size * np.array([math.cos(angle), math.sin(angle)])
    bend = rng.uniform(-0.4, 0.4) * np.array([-half[1], half[0]])
    t = np.linspace(0, 1, 32)[:, None]
    start, control, end = centre - half, centre + bend, centre + half
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    width = max(2, round(size / 64))
    mask = _draw(size, lambda d: d.line([tuple(p) for p in curve], fill=255, width=width, joint="curve"))
    shade = 245.0 if rng.random() < 0.5 else 15.0
    alpha = 0.9 * _soften(mask, 0.6)
    return image * (1 - alpha) + shade * alpha, mask


def _hole(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark lumpy blob whose edge fades over a few pixels."""
    size = image.shape[0]
    radius = rng.uniform(0.06, 0.1) * size
    mask = _draw(size, lambda d: d.polygon(_blob(rng.uniform(0.25, 0.75, 2) * size, radius, rng), fill=255))
    alpha = _soften(mask, 0.15 * radius)
    return image * (1 - 0.85 * alpha), mask  # keep a trace of the texture at the bottom of the hole


def _stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A blob where the colour shifts towards a foreign hue, as a spilt liquid would leave."""
    size = image.shape[0]
    radius = rng.uniform(0.07, 0.11) * size
    mask = _draw(size, lambda d: d.polygon(_blob(rng.uniform(0.25, 0.75, 2) * size, radius, rng), fill=255))
    colour = np.array(_STAIN_COLOURS[rng.integers(len(_STAIN_COLOURS))], dtype=np.float64)
    alpha = 0.6 * _soften(mask, 0.2 * radius)
    # Mixing the colour with the texture's brightness keeps the texture visible through the stain.
    tinted = colour * image.mean(axis=2, keepdims=True) / 128
    return image * (1 - alpha) + tinted * alpha, mask


def _crack(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark jagged line: a random walk whose direction wanders at every step."""
    size = image.shape[0]
    point, angle, step = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0, 2 * math.pi), size / 24
    points = [tuple(point)]
    for _ in range(int(rng.integers(12, 20))):
        angle += rng.normal(0, 0.6)
        point = point + step * np.array([math.cos(angle), math.sin(angle)])
        points.append(tuple(point))
    mask = _draw(size, lambda d: d.line(points, fill=255, width=max(2, round(size / 80)), joint="curve"))
    alpha = _soften(mask, 0.5)
    return image * (1 - 0.9 * alpha), mask


# Each painter takes an image [S, S, 3] float in [0, 255] and returns (painted image, mask [S, S] bool).
_PAINTERS = {"crack": _crack, "hole": _hole, "scratch": _scratch, "stain": _stain}


def _paint_defect(image: np.ndarray, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw until the defect covers a sensible share of the image (0.5% to 5%); deterministic.

    Returns the painted image [S, S, 3] float and the defect's mask [S, S] bool.
    """
    low, high = _DEFECT_AREA
    while True:
        painted, mask = _PAINTERS[defect](image, rng)
        if low <= mask.mean() <= high:
            return painted, mask


def _save_png(pixels: np.ndarray, path: Path) -> None:
    # Light compression: photographs barely shrink at higher levels, which cost several times more.
    image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    image.save(path, format="PNG", compress_level=1)


def _write_demo(folder: Path, category: str, seed: int, image_size: int, counts: dict[str, int]) -> None:
    """Write the MVTec layout into `folder`. `counts` maps "train", "good" and each defect to a count."""
    texture = _texture(category, image_size)
    # One random stream per (folder, image): changing one count does not change the other images.
    streams = {"train": 0, "good": 1} | {defect: 2 + k for k, defect in enumerate(DEMO_DEFECTS)}
    category_id = DEMO_CATEGORIES.index(category)
    for kind, count in counts.items():
        images = folder / ("train/good" if kind == "train" else f"test/{kind}")
        images.mkdir(parents=True)
        if kind in DEMO_DEFECTS:
            (folder / "ground_truth" / kind).mkdir(parents=True)
        for index in range(count):
            rng = np.random.default_rng([seed, category_id, streams[kind], index])
            pixels = _normal_crop(texture, image_size, rng)
            if kind in DEMO_DEFECTS:
                pixels, mask = _paint_defect(pixels, kind, rng)
                _save_png(mask * 255.0, folder / "ground_truth" / kind / f"{index:03d}_mask.png")
            _save_png(pixels, images / f"{index:03d}.png")


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return None


def make_demo_dataset(
    root: str | Path = "data/demo",
    category: str = "brick",
    seed: int = 0,
    image_size: int = 256,
    n_train: int = 40,
    n_test_good: int = 12,
    n_test_per_defect: int = 6,
    overwrite: bool = False,
) -> Path:
    """Paint a small MVTec-style data set into ``<root>/<category>`` and return that folder.

    Normal images are random crops of a scikit-image texture photograph (``brick``, ``gravel`` or
    ``grass``, CC0), rotated and flipped at random. Test images get one of four defects, each with its
    pixel mask: ``crack``, ``hole``, ``scratch``, ``stain``. The same seed gives byte-identical files.

    A finished folder holds a ``.complete`` file with its recipe; asking again for the same recipe
    returns at once, a different recipe (or ``overwrite=True``) paints it again.
    """
    if category not in DEMO_CATEGORIES:
        raise InputError("category", f"must be one of {', '.join(DEMO_CATEGORIES)}, got {category!r}")
    if not isinstance(image_size, int) or image_size < 32:
        raise InputError("image_size", f"must be an integer of at least 32, got {image_size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise InputError("seed", f"must be a non-negative integer, got {seed!r}")
    counts_and_minimums = {
        "n_train": (n_train, 1),
        "n_test_good": (n_test_good, 0),
        "n_test_per_defect": (n_test_per_defect, 0),
    }
    for name, (count, least) in counts_and_minimums.items():
        if not isinstance(count, int) or count < least:
            raise InputError(name, f"must be an integer of at least {least}, got {count!r}")
    counts = {"train": n_train, "good": n_test_good} | {defect: n_test_per_defect for defect in DEMO_DEFECTS}
    recipe = {"version": _DEMO_VERSION, "category": category, "seed": seed, "image_size": image_size}
    recipe["counts"] = counts

    root = Path(root)
    target = root / category
    marker = _read_marker(target)
    if marker == recipe and not overwrite:
        return target
    if target.exists() and marker is None and not overwrite:
        problem = "exists but is not a demo set made here (no .complete file); overwrite=True replaces it"
        raise InputError(target, problem)
    make_folder(root)
    built = temp_name(root, category)
    try:
        _write_demo(built, category, seed, image_size, counts)
        (built / _MARKER).write_text(json.dumps(recipe, sort_keys=True) + "\n")
        replace_folder(built, target)
    except OSError as error:   # a full disk, no permission: one line, and the half-built folder goes
        if error.errno is None:
            raise
        raise WriteError(target, f"cannot write: {write_reason(error, error.filename or target)}") from error
    finally:
        shutil.rmtree(built, ignore_errors=True)  # still there only if something failed
    return target

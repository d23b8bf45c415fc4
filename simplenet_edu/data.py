"""Images in, tensors out: the MVTec AD folder layout, a demo data set, and the real download.

SimpleNet learns from normal images only, so a data set is a folder of normal training images and a
test folder in which some images carry defects. This module reads the MVTec AD layout::

    <root>/train/good/*.png                   normal images for training
    <root>/test/good/*.png                    normal images for testing
    <root>/test/<defect>/*.png                anomalous images, one folder per defect type
    <root>/ground_truth/<defect>/<stem>_mask.png   pixel masks of the anomalous images

Images come out as float32 tensors in [0, 1], NOT normalised: each backbone applies the mean and
standard deviation it was trained with. Any PIL image mode is turned into 8-bit RGB first.

Three sources of such folders:

- :func:`make_demo_dataset` paints one offline, in a second, from scikit-image's texture photographs;
- :func:`download_mvtec` fetches the real MVTec AD archive (needs internet, about 5 GB);
- your own folder in the same layout.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import lzma
import math
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import skimage.data
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from simplenet_edu.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------
# Finding images
# ---------------------------------------------------------------------------------------------


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise InputError(folder, "folder not found")
    if not folder.is_dir():
        raise InputError(folder, "not a folder")


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside `folder`, sorted by name; other and hidden files are ignored."""
    _check_folder(Path(folder))
    return sorted(
        path
        for path in Path(folder).iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def _no_images(folder: Path) -> InputError:
    return InputError(folder, f"no images here (looked for {' '.join(IMAGE_EXTENSIONS)})")


def check_mvtec_folder(root: str | Path) -> Path:
    """Check that `root` is an MVTec-style folder with normal training images; return it as a Path."""
    root = Path(root)
    _check_folder(root)
    good = root / "train" / "good"
    if not good.is_dir():
        # A common slip is passing the folder that holds the categories, not a category.
        inside = [d.name for d in sorted(root.iterdir()) if (d / "train" / "good").is_dir()]
        hint = f"; did you mean {root / inside[0]}?" if inside else ""
        raise InputError(root, f"not an MVTec-style folder: train/good/ is missing{hint}")
    if not list_images(good):
        raise _no_images(good)
    return root


# ---------------------------------------------------------------------------------------------
# Reading and transforming one image
# ---------------------------------------------------------------------------------------------


def _read(path: Path) -> Image.Image:
    """Open and fully decode an image file, so that a broken or truncated file fails here."""
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(path, f"cannot read image ({error})") from error
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB. 16-bit images are scaled to 8 bits, not clipped."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # Pillow opens 16-bit PNG and TIFF files as I;16 or I, and its own conversion clips at 255.
        # 65535 / 255 = 257, so dividing by 257 (rounded) maps 65535 to 255 and 32896 to 128.
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        image = Image.fromarray(((values + 128) // 257).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow warns when transparency is dropped from a palette
    return image.convert("RGB")


def _check_sizes(image_size: int, crop_size: int | None) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise InputError("image_size", f"must be a positive integer, got {image_size!r}")
    if crop_size is not None and (not isinstance(crop_size, int) or not 1 <= crop_size <= image_size):
        problem = f"must be an integer from 1 to image_size ({image_size}), got {crop_size!r}"
        raise InputError("crop_size", problem)


def _resize_crop(image: Image.Image, image_size: int, crop_size: int | None, resample: int) -> Image.Image:
    """Resize to image_size x image_size, then cut the central crop_size x crop_size square."""
    image = image.resize((image_size, image_size), resample)
    if crop_size is None:
        return image
    left = (image_size - crop_size) // 2  # 329 -> 288 drops 20 pixels on the left/top, 21 on the right/bottom
    return image.crop((left, left, left + crop_size, left + crop_size))


def _image_tensor(image: Image.Image, image_size: int, crop_size: int | None) -> torch.Tensor:
    """[3, S, S] float32 in [0, 1]."""
    # Pillow's bilinear filter widens with the scale factor, so shrinking is antialiased.
    rgb = _resize_crop(_to_rgb(image), image_size, crop_size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def _mask_tensor(mask: Image.Image, image_size: int, crop_size: int | None) -> torch.Tensor:
    """[S, S] float32 of 0 and 1."""
    # Nearest neighbour keeps a mask binary and keeps its thin edges (bilinear smears them away).
    gray = _resize_crop(_to_rgb(mask).convert("L"), image_size, crop_size, Image.Resampling.NEAREST)
    return torch.from_numpy((np.asarray(gray) > 127).astype(np.float32))


def load_image(path: str | Path, image_size: int, crop_size: int | None = None) -> torch.Tensor:
    """Read one image file as a [3, S, S] float32 tensor in [0, 1], S = crop_size or image_size."""
    _check_sizes(image_size, crop_size)
    return _image_tensor(_read(Path(path)), image_size, crop_size)


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------


class MVTecDataset(Dataset):
    """One split of an MVTec-style folder.

    Item ``i`` is a dict: ``"image"`` [3, S, S] float32 in [0, 1], ``"mask"`` [S, S] float32 of 0/1
    (all zeros for normal images and for sets without masks), ``"label"`` int (0 normal,
    1 anomalous), ``"defect_type"`` str (``"good"`` for normal), ``"path"`` str.
    S is ``crop_size or image_size``; the paper resizes to 329 and crops 288.

    ``files`` keeps only these images of the split (e.g. a held-out slice of train/good).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = 256,
        crop_size: int | None = None,
        files: list[str | Path] | None = None,
    ):
        if split not in ("train", "test"):
            raise InputError("split", f"must be 'train' or 'test', got {split!r}")
        _check_sizes(image_size, crop_size)
        self.root = check_mvtec_folder(root)
        self.split = split
        self.image_size = image_size
        self.crop_size = crop_size
        self.has_masks = (self.root / "ground_truth").is_dir()
        self.paths: list[Path] = []
        self.defect_types: list[str] = []
        for folder in self._class_folders():
            images = list_images(folder)
            self.paths += images
            self.defect_types += [folder.name] * len(images)
        if not self.paths:
            raise _no_images(self.root / split)
        if files is not None:
            self._keep_only(files)
        self.labels = np.array([int(kind != "good") for kind in self.defect_types], dtype=np.int64)
        if self.has_masks:
            self._check_masks_exist()

    def _class_folders(self) -> list[Path]:
        if self.split == "train":
            return [self.root / "train" / "good"]
        test = self.root / "test"
        if not test.is_dir():
            raise InputError(test, "folder not found: the test split needs test/good/ and test/<defect>/")
        return sorted(folder for folder in test.iterdir() if folder.is_dir())

    def _keep_only(self, files: list[str | Path]) -> None:
        wanted = {Path(file).resolve() for file in files}
        if not wanted:
            raise InputError("files", "is empty: give at least one image")
        keep = [i for i, path in enumerate(self.paths) if path.resolve() in wanted]
        unknown = wanted - {self.paths[i].resolve() for i in keep}
        if unknown:
            raise InputError(min(unknown), f"not an image of the {self.split} split of {self.root}")
        self.paths = [self.paths[i] for i in keep]
        self.defect_types = [self.defect_types[i] for i in keep]

    def mask_path(self, index: int) -> Path:
        """Where the MVTec layout keeps the mask of image `index`."""
        path = self.paths[index]
        return self.root / "ground_truth" / self.defect_types[index] / f"{path.stem}_mask.png"

    def _check_masks_exist(self) -> None:
        for index, label in enumerate(self.labels):
            if label and not self.mask_path(index).is_file():
                raise InputError(self.mask_path(index), f"mask file missing for {self.paths[index]}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = _read(self.paths[index])
        return {
            "image": _image_tensor(image, self.image_size, self.crop_size),
            "mask": self._mask(index, image.size),
            "label": int(self.labels[index]),
            "defect_type": self.defect_types[index],
            "path": str(self.paths[index]),
        }

    def _mask(self, index: int, image_size_wh: tuple[int, int]) -> torch.Tensor:
        """[S, S] float32 of 0 and 1."""
        size = self.crop_size or self.image_size
        if not (self.labels[index] and self.has_masks):
            return torch.zeros(size, size)
        path = self.mask_path(index)
        mask = _read(path)
        if mask.size != image_size_wh:
            (w, h), (iw, ih) = mask.size, image_size_wh
            raise InputError(path, f"mask is {w}x{h} but its image {self.paths[index]} is {iw}x{ih}")
        return _mask_tensor(mask, self.image_size, self.crop_size)


class ImageFolderDataset(Dataset):
    """The images directly inside any folder (not recursive), for predicting on your own images.

    Item ``i`` is a dict: ``"image"`` [3, S, S] float32 in [0, 1] and ``"path"`` str.
    """

    def __init__(self, folder: str | Path, image_size: int, crop_size: int | None = None):
        _check_sizes(image_size, crop_size)
        self.folder = Path(folder)
        self.paths = list_images(self.folder)
        if not self.paths:
            raise _no_images(self.folder)
        self.image_size = image_size
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        return {"image": load_image(path, self.image_size, self.crop_size), "path": str(path)}


def stack(dataset: Dataset, progress: bool = True) -> dict:
    """Load every item of `dataset` and stack each field under its plural name.

    For an :class:`MVTecDataset`: ``images`` [N, 3, S, S], ``masks`` [N, S, S], ``labels`` [N]
    (int64), ``defect_types`` list of N str, ``paths`` list of N str.
    """
    items = [dataset[i] for i in tqdm(range(len(dataset)), desc="loading images", disable=not progress)]
    stacked = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            stacked[key + "s"] = torch.stack(values)
        elif isinstance(values[0], int):
            stacked[key + "s"] = torch.tensor(values, dtype=torch.int64)
        else:
            stacked[key + "s"] = values
    return stacked


def split_holdout(items: Sequence, fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Hold out a random `fraction` of `items` (paths, indices...; at least one when there are two or
    more, never all). Returns ``(train, holdout)``, both in the order of `items`; the same seed gives
    the same split. ``SimpleNet.fit`` uses it to keep normal images aside for the normal threshold.
    """
    if not 0 < fraction < 1:
        raise InputError("fraction", f"must be between 0 and 1 (exclusive), got {fraction}")
    items = list(items)
    n_holdout = min(max(1, round(fraction * len(items))), len(items) - 1) if len(items) >= 2 else 0
    chosen = set(np.random.default_rng(seed).permutation(len(items))[:n_holdout].tolist())
    train = [item for i, item in enumerate(items) if i not in chosen]
    holdout = [item for i, item in enumerate(items) if i in chosen]
    return train, holdout


# ---------------------------------------------------------------------------------------------
# Writing folders atomically
# ---------------------------------------------------------------------------------------------


def _temp_name(parent: Path, prefix: str) -> Path:
    """A fresh hidden name in `parent`, so that a half-built folder never has a real name."""
    return parent / f".{prefix}-{uuid.uuid4().hex[:12]}.tmp"


def _move_into_place(built: Path, target: Path) -> None:
    """Replace `target` (if any) by the finished folder `built`, both in the same parent folder."""
    if not target.exists():
        os.replace(built, target)
        return
    old = _temp_name(target.parent, f"{target.name}-old")
    os.replace(target, old)
    try:
        os.replace(built, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old)


# ---------------------------------------------------------------------------------------------
# The demo data set: defects painted on texture photographs
# ---------------------------------------------------------------------------------------------

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
    root.mkdir(parents=True, exist_ok=True)
    built = _temp_name(root, category)
    try:
        _write_demo(built, category, seed, image_size, counts)
        (built / _MARKER).write_text(json.dumps(recipe, sort_keys=True) + "\n")
        _move_into_place(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)  # still there only if something failed
    return target


# ---------------------------------------------------------------------------------------------
# The real MVTec AD (CC BY-NC-SA 4.0), for those with internet
# ---------------------------------------------------------------------------------------------

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip
MVTEC_PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
# The whole archive (4.9 GB) and its checksum, as anomalib uses them. MVTec also serves one archive
# per category, but publishes no checksums for those, so we fetch the whole and unpack what is wanted.
MVTEC_URL = (
    "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/"
    "download/420938113-1629952094/mvtec_anomaly_detection.tar.xz"
)
MVTEC_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"
_TIMEOUT_S = 15


def _fetch(url: str, destination: Path, sha256: str | None, progress: bool) -> None:
    """Stream `url` into the file `destination`, then check its SHA-256 (when one is given)."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, destination.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bytes_bar = dict(unit="B", unit_scale=True, unit_divisor=1024)
            with tqdm(total=total, desc="MVTec AD", disable=not progress, **bytes_bar) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        advice = f"no internet? Download it by hand from {MVTEC_PAGE} and pass --data"
        raise InputError(url, f"cannot download MVTec AD ({reason}): {advice}") from error
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        got = digest.hexdigest()
        raise InputError(url, f"checksum mismatch (corrupt or changed download): SHA-256 {got}, not {sha256}")


def _extract(archive: Path, destination: Path, categories: list[str], source: str) -> None:
    """Unpack only the top-level folders named in `categories`, in one pass over the stream."""
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    raise InputError(source, f"unsafe path {member.name!r} in the archive; nothing was kept")
                parts = [part for part in parts if part != "."]
                if parts and parts[0] in categories:
                    tar.extract(member, destination, filter="data")  # "data" also refuses links out
    except (tarfile.TarError, lzma.LZMAError, EOFError) as error:
        raise InputError(source, f"cannot unpack the archive ({error})") from error
    for category in categories:
        if not (destination / category / "train" / "good").is_dir():
            raise InputError(source, f"the archive has no {category}/train/good/ folder")


def download_mvtec(
    root: str | Path = "data/mvtec",
    category: str = "hazelnut",
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download MVTec AD into `root` and return ``<root>/<category>`` (or `root` for ``"all"``).

    The whole archive is streamed to a temporary file, its SHA-256 checked, and only the wanted
    categories unpacked; each appears under its real name only once complete. Categories already
    present are not downloaded again. `url` and `sha256` override the official archive (with a custom
    `url` and no `sha256`, nothing is checked).
    """
    if category != "all" and category not in MVTEC_CATEGORIES:
        problem = f"must be 'all' or one of {', '.join(MVTEC_CATEGORIES)}, got {category!r}"
        raise InputError("category", problem)
    root = Path(root)
    wanted = list(MVTEC_CATEGORIES) if category == "all" else [category]
    result = root if category == "all" else root / category
    missing = [name for name in wanted if not (root / name / "train" / "good").is_dir()]
    if not missing:
        return result
    for name in missing:
        if (root / name).exists():
            raise InputError(root / name, "exists but has no train/good/ folder; remove it and try again")
    if url is None:
        url, sha256 = MVTEC_URL, sha256 or MVTEC_SHA256

    root.mkdir(parents=True, exist_ok=True)
    archive = _temp_name(root, "mvtec-archive")
    unpacked = _temp_name(root, "mvtec-extract")
    try:
        _fetch(url, archive, sha256, progress)
        unpacked.mkdir()
        _extract(archive, unpacked, missing, url)
        for name in missing:
            os.replace(unpacked / name, root / name)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(unpacked, ignore_errors=True)
    return result

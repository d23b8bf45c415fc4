"""Run an exported model (``simplenet-edu export``, :mod:`simplenet_edu.deploy.export`) with onnxruntime alone.

Imports numpy, Pillow and onnxruntime, never torch (``tests/test_deploy.py`` checks ``sys.modules``
in a fresh interpreter): a line PC needs ``pip install "simplenet-edu[onnx]"`` and the ``.onnx``
file, not the training stack.

>>> model = OnnxModel("model.onnx")                                   # doctest: +SKIP
>>> image = read_image("part.png", model.resize_shape, model.image_shape)   # [3, H, W] in [0, 1]
>>> scores, maps = model.predict(image[None])                         # [1], [1, H, W]
>>> on_photo = model.map_to_image(maps[0], read_original("part.png").shape[:2])   # [H0, W0]

The ``.onnx`` file carries everything else in its metadata (``OnnxModel.metadata``): the training
configuration, the input shapes, the thresholds from normal training images with what they claim (and the F1 threshold
when the export was given an evaluation), the anchors of the normalised score and the export check.

Reading an image repeats :func:`simplenet_edu.data.load_image` without torch (any PIL mode to 8-bit
RGB, bilinear resize to ``resize_shape``, centre crop to ``image_shape``); a test checks that both
give the same pixels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..utils.errors import InputError
from .heatmaps import Calibration, map_to_image

ONNX_FORMAT = "simplenet-edu-onnx"
ONNX_VERSION = 1
# The export's check: largest |onnxruntime - torch| allowed on raw scores and map values (here, torch-free,
# so that the command line's help can state it).
DEFAULT_TOLERANCE = 1e-4
# As simplenet_edu.data.IMAGE_EXTENSIONS (a test checks that they agree).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
INSTALL_HINT = 'pip install "simplenet-edu[onnx]"'


# ------------------------------------------------------------------ images, without torch
#
# The reader below (_open, _to_rgb, the resize and crop) is a second copy of the one in
# simplenet_edu.data.images, on purpose: that one lives in a package that imports torch, and this
# module must run where torch is not installed. tests/test_deploy.py checks that both give the same
# pixels; a change to one must be made to the other.


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise InputError(folder, "folder not found")
    if not folder.is_dir():
        raise InputError(folder, "not a folder")


def _walk(folder: Path, skip: Sequence[str | os.PathLike]) -> Iterator[tuple[Path, list[str]]]:
    """``(sub-folder, its image file names)`` for every folder below ``folder`` (itself first), hidden
    folders, the folders of ``skip`` and links to folders left out."""
    skipped = {Path(s).resolve() for s in skip}
    for current, folders, files in os.walk(folder):
        here = Path(current)
        folders[:] = sorted(d for d in folders if not d.startswith(".") and (here / d).resolve() not in skipped)
        yield here, sorted(f for f in files if _is_image(f) and (here / f).is_file())


def list_images(folder: str | os.PathLike, recursive: bool = False,
                skip: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """The image files directly inside ``folder``, by name (hidden files skipped); with ``recursive``,
    every image below it too (hidden folders and those of ``skip`` left out), sorted by their path
    below ``folder``. :class:`InputError` when the folder is missing or holds none."""
    folder = Path(folder)
    _check_folder(folder)
    if recursive:
        paths = sorted(here / name for here, names in _walk(folder, skip) for name in names)
    else:
        paths = sorted(p for p in folder.iterdir() if p.is_file() and _is_image(p.name))
    if not paths:
        where = "in it or below it" if recursive else "here"
        raise InputError(folder, f"no images {where} (looked for {' '.join(IMAGE_EXTENSIONS)})")
    return paths


def folders_with_images(folder: str | os.PathLike, skip: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """The folders below ``folder`` (not itself) that hold images: what ``list_images(folder)`` leaves out
    without ``recursive``."""
    folder = Path(folder)
    return [here for here, names in _walk(folder, skip) if names and here != folder]


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except UnidentifiedImageError:
        empty = path.is_file() and path.stat().st_size == 0
        problem = "empty file (0 bytes)" if empty else "not an image format Pillow can read, or a broken header"
        raise InputError(path, f"cannot read image: {problem}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(path, f"cannot read image ({error})") from error
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):   # 16 bits to 8 by scaling, not clipping
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        image = Image.fromarray(((values + 128) // 257).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _model_input(rgb: Image.Image, resize_shape: Sequence[int], image_shape: Sequence[int]) -> np.ndarray:
    (height, width), (crop_h, crop_w) = tuple(resize_shape), tuple(image_shape)
    image = rgb.resize((width, height), Image.Resampling.BILINEAR)
    if (crop_h, crop_w) != (height, width):
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        image = image.crop((left, top, left + crop_w, top + crop_h))
    return np.ascontiguousarray((np.asarray(image, dtype=np.float32) / 255).transpose(2, 0, 1))


def read_image(path: str | os.PathLike, resize_shape: Sequence[int], image_shape: Sequence[int]) -> np.ndarray:
    """One image file as the model's input ``[3, H, W]`` float32 in [0, 1]: resized (bilinear) to
    ``resize_shape = (height, width)``, then its centre cut to ``image_shape = (H, W)``."""
    return _model_input(_to_rgb(_open(Path(path))), resize_shape, image_shape)


def read_original(path: str | os.PathLike) -> np.ndarray:
    """One image file as it is, in 8-bit RGB: ``[H0, W0, 3]`` uint8 (what heat maps are drawn on)."""
    return np.asarray(_to_rgb(_open(Path(path))))


def iter_images(folder: str | os.PathLike, resize_shape: Sequence[int], image_shape: Sequence[int],
                paths: Sequence[str | os.PathLike] | None = None, originals: bool = False) -> Iterator[tuple]:
    """``(path, image [3, H, W])`` for each image of ``folder`` (or of ``paths``), or ``(path, error)``
    for a file that cannot be read: as :func:`simplenet_edu.data.iter_images`, in numpy, one file read
    at a time. With ``originals``, ``(path, image, original [H0, W0, 3] uint8)`` (``original`` ``None``
    beside an error): each file is decoded once for both."""
    for path in (list_images(folder) if paths is None else [Path(p) for p in paths]):
        try:
            rgb = _to_rgb(_open(path))
            image = _model_input(rgb, resize_shape, image_shape)
        except InputError as error:
            yield (path, error, None) if originals else (path, error)
            continue
        yield (path, image, np.asarray(rgb)) if originals else (path, image)


# ------------------------------------------------------------------ the model


def _parse(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


class OnnxModel:
    """An exported model under onnxruntime (CPU by default).

    Attributes from the file's metadata: ``metadata`` (every key, JSON values decoded), ``config``
    (the training configuration), ``model_type``, ``resize_shape`` and ``image_shape`` (``(H, W)``),
    ``threshold_normal``, ``pixel_threshold_normal``, ``threshold_f1`` (``None`` when not known) and
    ``calibration`` (:class:`~simplenet_edu.deploy.heatmaps.Calibration`).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 providers: Sequence[str] = ("CPUExecutionProvider",)):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError(path, f"onnxruntime is not installed ({INSTALL_HINT})") from None
        self.path = path = Path(path)
        if not path.is_file():
            raise InputError(path, "model file not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3          # no warnings about unused initialisers on stderr
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as error:  # onnxruntime raises its own types for a file that is not ONNX
            raise InputError(path, f"not an ONNX model onnxruntime can load ({type(error).__name__})") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        if raw.get("format") != ONNX_FORMAT:
            raise InputError(path, "not a simplenet-edu export (its metadata has no format "
                                   f"{ONNX_FORMAT!r}; make one with simplenet-edu export)")
        self.metadata = {key: _parse(value) for key, value in raw.items()}
        if self.metadata.get("version") != ONNX_VERSION:
            raise InputError(path, f"export version {self.metadata.get('version')} is not supported "
                                   f"(this simplenet-edu reads version {ONNX_VERSION})")
        self.config = self.metadata["config"]
        self.model_type = self.metadata["model_type"]
        self.resize_shape = tuple(self.metadata["resize_shape"])
        self.image_shape = tuple(self.metadata["image_shape"])
        self.threshold_normal = self.metadata.get("threshold_normal")
        self.pixel_threshold_normal = self.metadata.get("pixel_threshold_normal")
        self.threshold_f1 = self.metadata.get("threshold_f1")
        self.calibration = Calibration(self.threshold_normal, self.pixel_threshold_normal,
                                       self.metadata.get("normal_score_spread"),
                                       self.metadata.get("normal_pixel_spread"))
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, images: np.ndarray, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """``images [B, 3, H, W]`` float in [0, 1] -> image scores ``[B]`` and anomaly maps
        ``[B, H, W]`` (float32); higher is more anomalous, as ``SimpleNet.predict``."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != self.image_shape:
            raise InputError("images", f"expected [B, 3, {self.image_shape[0]}, {self.image_shape[1]}], "
                                       f"got {list(images.shape)}")
        scores, maps = [], []
        for start in range(0, len(images), batch_size):
            batch = np.ascontiguousarray(images[start:start + batch_size])
            s, m = self.session.run(["scores", "maps"], {self.input_name: batch})
            scores.append(s)
            maps.append(m)
        return np.concatenate(scores), np.concatenate(maps)

    def map_to_image(self, amap: np.ndarray, original_hw: Sequence[int]) -> np.ndarray:
        """One map of :meth:`predict` (``[H, W]``) back onto its original image: ``[H0, W0]``, NaN on the
        margin the crop cut away (:func:`~simplenet_edu.deploy.heatmaps.map_to_image`)."""
        return map_to_image(amap, original_hw, self.resize_shape, self.image_shape)

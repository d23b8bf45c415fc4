"""The MVTec AD folder layout: finding the images, the two splits as data sets, the hold-out split.

::

    <root>/train/good/*.png                   normal images for training
    <root>/test/good/*.png                    normal images for testing
    <root>/test/<defect>/*.png                anomalous images, one folder per defect type
    <root>/ground_truth/<defect>/<stem>_mask.png   pixel masks of the anomalous images
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..utils.errors import InputError

from .images import (
    IMAGE_EXTENSIONS,
    Size,
    _check_sizes,
    _image_tensor,
    _mask_tensor,
    _read,
    input_shapes,
    load_image,
)


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
# Data sets
# ---------------------------------------------------------------------------------------------


class MVTecDataset(Dataset):
    """One split of an MVTec-style folder.

    Item ``i`` is a dict: ``"image"`` [3, H, W] float32 in [0, 1], ``"mask"`` [H, W] float32 of 0/1
    (all zeros for normal images and for sets without masks), ``"label"`` int (0 normal,
    1 anomalous), ``"defect_type"`` str (``"good"`` for normal), ``"path"`` str.
    ``(H, W)`` is the crop of :func:`~simplenet_edu.data.images.input_shapes`: ``image_size`` is an int
    (a square) or ``(height, width)``; the paper resizes to 329 and crops 288.

    ``files`` keeps only these images of the split (e.g. a held-out slice of train/good).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: Size = 256,
        crop_size: Size | None = None,
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
        return sorted(folder for folder in test.iterdir() if folder.is_dir() and not folder.name.startswith("."))

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
        """[H, W] float32 of 0 and 1."""
        if not (self.labels[index] and self.has_masks):
            return torch.zeros(input_shapes(self.image_size, self.crop_size)[1])
        path = self.mask_path(index)
        mask = _read(path)
        if mask.size != image_size_wh:
            (w, h), (iw, ih) = mask.size, image_size_wh
            raise InputError(path, f"mask is {w}x{h} but its image {self.paths[index]} is {iw}x{ih}")
        return _mask_tensor(mask, self.image_size, self.crop_size)


class ImageFolderDataset(Dataset):
    """The images directly inside any folder (not recursive), for predicting on your own images.

    Item ``i`` is a dict: ``"image"`` [3, H, W] float32 in [0, 1] and ``"path"`` str. A file that cannot
    be read raises :class:`InputError`; :func:`iter_images` yields its error instead.
    """

    def __init__(self, folder: str | Path, image_size: Size, crop_size: Size | None = None):
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


def require_images(folder: str | Path) -> list[Path]:
    """:func:`list_images`, or :class:`InputError` when the folder is missing or holds no image."""
    paths = list_images(folder)
    if not paths:
        raise _no_images(Path(folder))
    return paths


def iter_images(folder: str | Path, image_size: Size, crop_size: Size | None = None,
                paths: Sequence[str | Path] | None = None) -> Iterator[tuple[Path, torch.Tensor | InputError]]:
    """Each image of ``folder`` (or each of ``paths``), in name order, as ``(path, image)`` with ``image``
    ``[3, H, W]`` float32 in [0, 1], or ``(path, error)`` with the :class:`InputError` saying why it
    could not be read: one broken file does not stop the others. For scoring a folder, where a bad
    image is reported beside the results (``simplenet-edu predict`` reads with its torch-free twin,
    :func:`simplenet_edu.deploy.runtime.iter_images`).

    The sizes and the folder (it must exist and hold images) are checked at the call, not at the
    first item; the images are read one at a time as the iterator is consumed.
    """
    _check_sizes(image_size, crop_size)
    paths = require_images(folder) if paths is None else [Path(p) for p in paths]

    def read_each():
        for path in paths:
            try:
                yield path, load_image(path, image_size, crop_size)
            except InputError as error:
                yield path, error

    return read_each()


def stack(dataset: Dataset, progress: bool = True) -> dict:
    """Load every item of `dataset` and stack each field under its plural name.

    For an :class:`MVTecDataset`: ``images`` [N, 3, H, W], ``masks`` [N, H, W], ``labels`` [N]
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

"""One look at the whole data folder before any model work: every problem found, each on its own line.

Training costs minutes on a large set; a typo found after it (a missing mask, a truncated file, a
test set without anomalies) wastes them. :func:`check_dataset` reads the folder once, up front:

- the layout: ``train/good`` with images (or a plain folder of images), ``test/`` with normal and
  anomalous images where AUROC is asked for;
- every image opens and decodes, header and pixels (a truncated or zero-byte file fails here);
- where ``ground_truth/`` exists, every anomalous test image has its mask, of its image's size;
- the model input is large enough for the backbone's strides.

It raises :class:`~simplenet_edu.utils.errors.InputErrors` listing every problem (one line each), or
returns a :class:`DatasetCheck` with the file lists and the image sizes. Decoding runs on a few
threads (Pillow releases the GIL while it decodes), and each file's verdict is remembered for the
life of the process, keyed by its path, size and modification time: ``simplenet-edu evaluate``
checks the folder, then ``SimpleNet.fit`` asks again and pays a ``stat`` per file.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.errors import InputError, InputErrors

from .folders import _check_folder, check_mvtec_folder, list_images
from .images import IMAGE_EXTENSIONS, Size, _read, input_shapes

MAX_LINES = 20  # problems listed one per line; the rest are counted
_MEMO: dict[tuple[str, int, int], tuple[int, int] | str] = {}  # (path, bytes, mtime_ns) -> (w, h) or problem
_MEMO_LIMIT = 200_000


@dataclass
class DatasetCheck:
    """What :func:`check_dataset` found in a folder that passed.

    ``train``: the training images (``train/good``, or the folder's own images); ``test``, ``labels``
    (0 normal, 1 anomalous) and ``defect_types``: the test split, when it was checked; ``has_masks``:
    whether ``ground_truth/`` exists; ``sizes``: ``(width, height)`` of every checked image, as PIL
    gives it; ``seconds``: how long the check took.
    """

    root: Path
    train: list[Path] = field(default_factory=list)
    test: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    defect_types: list[str] = field(default_factory=list)
    has_masks: bool = False
    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def aspect(self, paths: list[Path] | None = None) -> float:
        """Median height / width of ``paths`` (default: the training images); 4/3 for portrait cookies."""
        paths = self.train if paths is None else paths
        return statistics.median(self.sizes[p][1] / self.sizes[p][0] for p in paths)


def _verdict(path: Path) -> tuple[int, int] | str:
    """``(width, height)`` of a readable image, or the problem with it (one line)."""
    try:
        stat = path.stat()
    except OSError as error:
        return f"cannot read file ({error.strerror or error})"
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _MEMO:
        return _MEMO[key]
    try:
        verdict = _read(path).size
    except InputError as error:
        verdict = error.problem
    if len(_MEMO) >= _MEMO_LIMIT:  # a long-lived process that has seen very many files starts afresh
        _MEMO.clear()
    _MEMO[key] = verdict
    return verdict


def _verdicts(paths: list[Path]) -> dict[Path, tuple[int, int] | str]:
    workers = max(1, min(4, os.cpu_count() or 1, len(paths)))
    if workers == 1:
        return {path: _verdict(path) for path in paths}
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(paths, pool.map(_verdict, paths)))


def _size_problem(image_size: Size, crop_size: Size | None, backbone: str | None) -> InputError | None:
    """The model input must give every backbone layer a grid of at least 2 x 2 cells."""
    try:
        _, (height, width) = input_shapes(image_size, crop_size)
    except InputError as error:
        return error
    if backbone is None:
        return None
    from ..stages.backbones import backbone_info

    least = 2 * max(backbone_info(backbone)["strides"])
    if min(height, width) < least:
        return InputError("image_size", f"the model input of {height} x {width} px is too small for {backbone}: "
                                        f"each side needs at least {least} px (twice its largest stride, so that "
                                        f"every layer has a grid of at least 2 x 2 cells)")
    return None


def _mask_hint(folder: Path, stem: str) -> str:
    """A guess at a misnamed mask: a file in the mask folder with the image's stem."""
    if not folder.is_dir():
        return ""
    near = sorted(p.name for p in folder.iterdir() if p.stem in (stem, f"{stem}_mask") and p.is_file())
    return f" (found {near[0]}; masks are named <image stem>_mask.png)" if near else ""


def _test_split(root: Path, problems: list[InputError]) -> tuple[list[Path], list[str]]:
    test = root / "test"
    if not test.is_dir():
        problems.append(InputError(test, "folder not found: the test split needs test/good/ and test/<defect>/"))
        return [], []
    paths, kinds = [], []
    for folder in sorted(f for f in test.iterdir() if f.is_dir() and not f.name.startswith(".")):
        images = list_images(folder)
        paths += images
        kinds += [folder.name] * len(images)
    if not paths:
        problems.append(InputError(test, f"no images in its subfolders (looked for {' '.join(IMAGE_EXTENSIONS)})"))
    elif len({kind == "good" for kind in kinds}) == 1:
        kind = "normal" if kinds[0] == "good" else "anomalous"
        problems.append(InputError(test, f"has only {kind} images: AUROC is undefined (it needs both kinds)"))
    return paths, kinds


def _mask_problems(root: Path, test: list[Path], kinds: list[str], problems: list[InputError]) -> list[Path]:
    """Check each anomalous image's mask; returns the mask paths to decode."""
    masks, missing_folders = [], set()
    for image, kind in zip(test, kinds):
        if kind == "good":
            continue
        folder = root / "ground_truth" / kind
        if not folder.is_dir():
            if kind not in missing_folders:
                missing_folders.add(kind)
                count = kinds.count(kind)
                which = f"the image of test/{kind}/ has no mask" if count == 1 else \
                    f"the {count} images of test/{kind}/ have no masks"
                problems.append(InputError(folder, f"folder missing: {which} (ground_truth/ exists, so every "
                                                   f"anomalous image needs one)"))
            continue
        mask = folder / f"{image.stem}_mask.png"
        if not mask.is_file():
            problems.append(InputError(mask, f"mask file missing for {image}{_mask_hint(folder, image.stem)}"))
        else:
            masks.append(mask)
    return masks


def check_dataset(
    root: str | Path,
    *,
    need_train: bool = True,
    need_test: bool = False,
    image_size: Size | None = None,
    crop_size: Size | None = None,
    backbone: str | None = None,
    limit: int = MAX_LINES,
) -> DatasetCheck:
    """Check a whole data folder before any model work; raise on every problem at once.

    Args:
        root: an MVTec-layout folder, or (for training only) a plain folder of images.
        need_train: check ``train/good`` (what ``fit`` reads).
        need_test: check ``test/`` (and ``ground_truth/`` when it exists): both kinds of image must be
            there, since AUROC is undefined otherwise.
        image_size, crop_size, backbone: when given, the model input ``crop_size or image_size``
            (int or ``(height, width)``) must be at least twice the backbone's largest stride.
        limit: how many problems are listed one per line before the rest are counted.

    Returns:
        a :class:`DatasetCheck`. Raises :class:`InputError` for a single problem and
        :class:`InputErrors` (one line per problem) for several.
    """
    start = time.perf_counter()
    root = Path(root)
    _check_folder(root)
    problems: list[InputError] = []
    result = DatasetCheck(root=root, has_masks=(root / "ground_truth").is_dir())
    if image_size is not None and (size := _size_problem(image_size, crop_size, backbone)) is not None:
        problems.append(size)

    layout_broken = False
    if need_train:
        plain = not (root / "train").exists() and not need_test and list_images(root)
        if plain:
            result.train = list_images(root)
        else:
            try:
                check_mvtec_folder(root)
                result.train = list_images(root / "train" / "good")
            except InputError as error:
                problems.append(error)
                # Without train/good nor test/ this is not the folder meant: one line says so.
                layout_broken = not (root / "test").exists()
    masks: list[Path] = []
    if need_test and not layout_broken:
        result.test, result.defect_types = _test_split(root, problems)
        result.labels = [int(kind != "good") for kind in result.defect_types]
        if result.has_masks:
            masks = _mask_problems(root, result.test, result.defect_types, problems)

    verdicts = _verdicts(result.train + result.test + masks)
    for path, verdict in verdicts.items():
        if isinstance(verdict, str):
            problems.append(InputError(path, verdict))
        else:
            result.sizes[path] = verdict
    for image, kind in zip(result.test, result.defect_types):
        mask = root / "ground_truth" / kind / f"{image.stem}_mask.png"
        if kind == "good" or mask not in result.sizes or image not in result.sizes:
            continue
        if result.sizes[mask] != result.sizes[image]:
            (w, h), (iw, ih) = result.sizes[mask], result.sizes[image]
            problems.append(InputError(mask, f"mask is {w}x{h} but its image {image} is {iw}x{ih}"))

    result.seconds = time.perf_counter() - start
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputErrors(problems, where=root, limit=limit)
    return result

"""What every notebook of the course shares: which images, which settings, and one trained model.

The course runs on a real data set that ships with the repository, ``data/hazelnut_toy`` (Intel, CC
BY 4.0; ``data/README.md``): 28 normal training images of hazelnuts, 6 normal test images and 17 with a
blue-stain defect (``colour``), with pixel masks. :func:`painted_data` adds defects of known shape
(a crack, a hole, a scratch, a stain) painted on copies of its normal test images, for the lessons
that need more than one defect type; :func:`demo_data` paints a whole set on a texture photograph.

Three environment variables switch the whole course at once, so no notebook needs editing:

- ``SIMPLENET_EDU_QUICK=1``: ``SimpleNetConfig.quick()`` (128 px, 300 steps, 2 threshold folds); the quick course
  that CI runs, each notebook in well under two minutes on two CPU cores.
- ``SIMPLENET_EDU_PAPER=1``: the paper's configuration (Wide-ResNet50, 288 px crops, 160 passes);
  practical on a GPU only, and its backbone weights must be downloadable once.
- ``SIMPLENET_EDU_DATA=/path/to/mvtec/hazelnut``: your own MVTec-layout category folder instead of
  ``hazelnut_toy``.

Painted data and cached models live under ``<home>/data`` where ``<home>`` is ``SIMPLENET_EDU_HOME``,
else the repository checkout (when the package is installed in editable mode), else the current folder.

The last three functions are small analyses the notebooks need and the method itself does not:
which patches a mask covers, nearest-neighbour distances, and a gradient picture of a receptive field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import data as data_lib
from ..core import registry
from ..core.checkpoint import CHECKPOINT_VERSION
from ..core.fitted import FittedModel
from ..core.registry import kind_of
from ..evaluation.report import budget_text, input_text, noise_text
from ..simplenet.config import SimpleNetConfig
from ..utils.atomic import replace_folder, temp_name
from ..utils.errors import InputError
from .baselines import nearest_distances
from .results import PAPER_MVTEC_AD, SUITE_SETS, suite_results, suite_table  # noqa: F401 (the course's names)

__all__ = [
    "COURSE_SET", "DEMO_FULL", "DEMO_QUICK", "PAINTED_DEFECTS", "PAPER_MVTEC_AD", "TRAINING_CODE", "cache_key",
    "cache_path", "course_config", "course_data", "course_home", "course_model", "course_supersimplenet_config",
    "demo_data", "folder_tree", "nearest_distances", "painted_data", "paper_mode", "patch_labels", "quick_mode",
    "receptive_field", "settings_table", "shipped_data", "SUITE_SETS", "suite_results", "suite_table", "training_code_version",
]  # fmt: skip

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")

# The real set the course runs on, shipped in the repository's data/ folder.
COURSE_SET = "hazelnut_toy"
# The defects painted_data() adds, one test folder each (the painters of data.demo).
PAINTED_DEFECTS = data_lib.DEMO_DEFECTS
_PAINTED_VERSION = 1  # bump when the painting changes, so that old painted folders are made again
# The painted texture sets of demo_data(); the quick one is small enough that features, training and
# evaluation together take well under a minute on two CPU cores.
DEMO_FULL = dict(image_size=256, n_train=40, n_test_good=12, n_test_per_defect=6)
DEMO_QUICK = dict(image_size=128, n_train=20, n_test_good=8, n_test_per_defect=3)


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(name, f"must be 1 (on) or 0 (off), got {os.environ[name]!r}")


def quick_mode() -> bool:
    """True when ``SIMPLENET_EDU_QUICK=1``: the tiny, CI-sized version of every notebook."""
    return _flag("SIMPLENET_EDU_QUICK")


def paper_mode() -> bool:
    """True when ``SIMPLENET_EDU_PAPER=1``: the paper's configuration (needs a GPU to be practical)."""
    return _flag("SIMPLENET_EDU_PAPER")


def _checkout() -> Path:
    """The repository checkout this package runs from (an editable install), or the current folder."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def course_home() -> Path:
    """The folder whose ``data/`` holds the painted sets and the model cache."""
    if os.environ.get("SIMPLENET_EDU_HOME"):
        return Path(os.environ["SIMPLENET_EDU_HOME"]).expanduser()
    return _checkout()


def shipped_data() -> Path:
    """``data/hazelnut_toy`` of the repository: the real set the course runs on (checked)."""
    root = _checkout() / "data" / COURSE_SET
    if not (root / "train" / "good").is_dir():
        raise InputError(root, "the course's data set ships with the repository checkout; run the course from "
                               "a clone, or set SIMPLENET_EDU_DATA to an MVTec-layout category folder")
    return data_lib.check_mvtec_folder(root)


def course_data() -> Path:
    """The MVTec-layout category folder the notebooks use.

    ``SIMPLENET_EDU_DATA`` when set (checked: it must hold ``train/good``); otherwise the real set
    ``data/hazelnut_toy`` that ships with the repository (:func:`shipped_data`).
    """
    chosen = os.environ.get("SIMPLENET_EDU_DATA")
    if chosen:
        try:
            return data_lib.check_mvtec_folder(Path(chosen).expanduser())
        except InputError as error:
            raise InputError("SIMPLENET_EDU_DATA", str(error)) from None
    return shipped_data()


def demo_data(category: str = "brick") -> Path:
    """A whole set painted on a texture photograph (``data.make_demo_dataset``): ``DEMO_QUICK`` in quick
    mode, ``DEMO_FULL`` otherwise, under ``<home>/data/demo-quick`` or ``<home>/data/demo``; made on first
    use in a second or two and reused after."""
    if quick_mode():
        return data_lib.make_demo_dataset(course_home() / "data" / "demo-quick", category, **DEMO_QUICK)
    return data_lib.make_demo_dataset(course_home() / "data" / "demo", category, **DEMO_FULL)


def _source_files(root: Path) -> list[list]:
    """Every file below ``root`` as ``[relative path, size]``: what a painted copy is made from."""
    return sorted([str(p.relative_to(root)), p.stat().st_size] for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def painted_data(data: str | Path | None = None, defects: tuple[str, ...] = PAINTED_DEFECTS, seed: int = 0) -> Path:
    """``data`` (default :func:`course_data`) with painted defects added: a copy under
    ``<home>/data/painted/<name>`` whose ``test/`` holds, beside the source's folders, one folder
    ``painted_<defect>`` per defect of ``defects``, each with that defect painted on every normal test
    image (same file stem, saved as PNG) and its mask under ``ground_truth/``.

    The training images are the same, so a model trained on ``data`` is evaluated on this folder as
    it is. Each painted image is the copy of a normal test image that differs only by the defect: a
    controlled test of which defects the model sees. The painters are ``data.demo``'s (each defect
    covers 0.5 % to 5 % of the image); the same seed gives the same files. Made on first use (a few
    seconds), reused while the source files and the recipe stay the same.
    """
    from ..simplenet.validation import paint   # the painters on an image tensor [3, H, W]

    source = course_data() if data is None else data_lib.check_mvtec_folder(Path(data).expanduser())
    unknown = sorted(set(defects) - set(PAINTED_DEFECTS))
    if unknown or not defects:
        raise InputError("defects", f"choose from {', '.join(PAINTED_DEFECTS)}, got {list(defects)!r}")
    good = source / "test" / "good"
    normal = data_lib.list_images(good) if good.is_dir() else []
    if not normal:
        raise InputError(source, "painted_data paints on the normal test images, and test/good has none")
    recipe = {"version": _PAINTED_VERSION, "source": str(source.resolve()), "files": _source_files(source),
              "defects": list(defects), "seed": seed}
    parent = course_home() / "data" / "painted"
    target = parent / source.name
    try:
        if json.loads((target / ".complete").read_text()) == recipe:
            return target
    except (OSError, ValueError):
        pass
    parent.mkdir(parents=True, exist_ok=True)
    built = temp_name(parent, source.name)
    try:
        shutil.copytree(source, built)
        for k, defect in enumerate(defects):
            kind = f"painted_{defect}"                               # never a name the source uses
            (built / "test" / kind).mkdir()
            (built / "ground_truth" / kind).mkdir(parents=True)
            for index, path in enumerate(normal):
                rng = np.random.default_rng([seed, k, index])      # one stream per (defect, image)
                with Image.open(path) as opened:
                    pixels = np.asarray(opened.convert("RGB"), dtype=np.float32) / 255   # [H, W, 3]
                painted, mask = paint(torch.from_numpy(pixels).permute(2, 0, 1), defect, rng)
                Image.fromarray((painted.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
                    built / "test" / kind / f"{path.stem}.png", compress_level=1)
                Image.fromarray(mask.astype(np.uint8) * 255).save(
                    built / "ground_truth" / kind / f"{path.stem}_mask.png")
        (built / ".complete").write_text(json.dumps(recipe, sort_keys=True) + "\n")
        replace_folder(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)   # still there only if something failed
    return target


def course_config(**overrides) -> SimpleNetConfig:
    """The configuration of the course: ``quick()`` in quick mode, ``paper()`` with
    ``SIMPLENET_EDU_PAPER=1``, the CPU default otherwise; ``overrides`` change single fields
    (``course_config(epochs=20)``). The device is ``"auto"``: the GPU when there is one."""
    if quick_mode() and paper_mode():
        raise InputError("SIMPLENET_EDU_QUICK", "and SIMPLENET_EDU_PAPER are both set: choose one")
    preset = SimpleNetConfig.quick if quick_mode() else SimpleNetConfig.paper if paper_mode() else SimpleNetConfig
    overrides.setdefault("device", "auto")
    try:
        return preset(**overrides)
    except TypeError:
        known = set(SimpleNetConfig().to_dict())
        unknown = sorted(set(overrides) - known)
        raise InputError(unknown[0] if unknown else "course_config", "is not a SimpleNetConfig field") from None


def course_supersimplenet_config(**overrides):
    """SuperSimpleNet's configuration for the course (notebook 10), chosen like :func:`course_config`:
    ``SuperSimpleNetConfig.quick()`` in quick mode, ``.paper()`` with ``SIMPLENET_EDU_PAPER=1``, the
    CPU default otherwise; ``overrides`` change single fields."""
    from ..supersimplenet.config import SuperSimpleNetConfig

    if quick_mode() and paper_mode():
        raise InputError("SIMPLENET_EDU_QUICK", "and SIMPLENET_EDU_PAPER are both set: choose one")
    preset = SuperSimpleNetConfig.quick if quick_mode() else SuperSimpleNetConfig.paper if paper_mode() \
        else SuperSimpleNetConfig
    overrides.setdefault("device", "auto")
    try:
        return preset(**overrides)
    except TypeError:
        unknown = sorted(set(overrides) - set(SuperSimpleNetConfig().to_dict()))
        raise InputError(unknown[0] if unknown else "course_supersimplenet_config",
                         "is not a SuperSimpleNetConfig field") from None


# The code that decides what a trained model is: a change to any of it makes new cache keys, so that a
# notebook never loads a model trained by older code.
TRAINING_CODE = ("core", "simplenet", "supersimplenet", "stages", "evaluation/localization.py")


@functools.lru_cache(maxsize=1)
def training_code_version() -> str:
    """12 hex digits from the source of :data:`TRAINING_CODE` (read once per process)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in TRAINING_CODE:
        target = package / name
        for source in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            digest.update(str(source.relative_to(package)).encode() + source.read_bytes())
    return digest.hexdigest()[:12]


def cache_key(config: SimpleNetConfig, data: str | Path) -> str:
    """16 hex digits naming one (configuration, data set) pair.

    The device is left out (a model trained on a GPU is the same model on a CPU); the training images
    enter by name and size, so a changed data set gets a new key; so does a change to the training
    code (:func:`training_code_version`).
    """
    root = Path(data).resolve()
    settings = {k: v for k, v in config.to_dict().items() if k != "device"}
    good = root / "train" / "good"
    files = [(p.name, p.stat().st_size) for p in data_lib.list_images(good)] if good.is_dir() else []
    text = json.dumps({"checkpoint": CHECKPOINT_VERSION, "code": training_code_version(), "config": settings,
                       "data": str(root), "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(config: SimpleNetConfig, data: str | Path) -> Path:
    """Where :func:`course_model` keeps the checkpoint of this (configuration, data set) pair."""
    kind = kind_of(config)
    return course_home() / "data" / "cache" / f"{kind}-{cache_key(config, data)}.pt"


def course_model(config: SimpleNetConfig | None = None, data: str | Path | None = None,
                 retrain: bool = False, progress: bool = True) -> FittedModel:
    """A SimpleNet trained on ``data`` with ``config`` (defaults: :func:`course_data`,
    :func:`course_config`), trained once and then loaded from ``<home>/data/cache``. With a
    ``SuperSimpleNetConfig`` (:func:`course_supersimplenet_config`) the same for a SuperSimpleNet.

    The first call trains and saves (atomically); later calls, from any notebook, load the
    checkpoint in a second. ``retrain=True`` trains again and replaces it. A cache file that cannot be
    read is replaced too, with a warning.
    """
    config = config or course_config()
    data = Path(data) if data is not None else course_data()
    path = cache_path(config, data)
    model_class = registry.model_class(kind_of(config))
    if path.is_file() and not retrain:
        try:
            return model_class.load(path, device=config.device)
        except InputError as error:
            warnings.warn(f"retraining: the cached model could not be read ({error})", stacklevel=2)
    model = model_class(config).fit(data, progress=progress)
    model.save(path)
    return model


# ------------------------------------------------------------------ analyses for the notebooks


def patch_labels(masks: torch.Tensor, grid: tuple[int, int], min_fraction: float = 0.5) -> torch.Tensor:
    """Which patches are defective: ``masks [N, H, W]`` of 0/1 -> ``[N, h * w]`` bool.

    A patch (a cell of the ``grid = (h, w)``) counts as defective when at least ``min_fraction`` of
    its pixels are; cells that a defect only grazes are neither clearly normal nor clearly defective.
    """
    if masks.ndim != 3:
        raise InputError("masks", f"expected [N, H, W], got shape {list(masks.shape)}")
    fraction = F.adaptive_avg_pool2d(masks.float().unsqueeze(1), grid)          # [N, 1, h, w]
    return (fraction >= min_fraction).flatten(1)


def receptive_field(backbone: torch.nn.Module, image: torch.Tensor, layer: int, cell: tuple[int, int]) -> torch.Tensor:
    """How much each input pixel moves one feature cell: ``|d sum_c f[c, row, col] / d image|``.

    ``image [3, H, W]`` in ``[0, 1]``; ``layer`` indexes the backbone's outputs (0 = stride 8);
    ``cell = (row, col)`` on that layer's grid. Returns ``[H, W]`` (summed over colour channels),
    exactly zero outside the cell's theoretical receptive field.
    """
    pixels = image.detach().clone().unsqueeze(0).requires_grad_(True)
    with torch.enable_grad():
        row, col = cell
        backbone(pixels)[layer][0, :, row, col].sum().backward()
    return pixels.grad[0].abs().sum(0)


def folder_tree(root: str | Path, max_files: int = 2) -> str:
    """A text drawing of a data folder: every sub-folder, its image count and its first files."""
    root = Path(root)
    lines = [f"{root.name}/"]
    for folder in sorted(p for p in root.rglob("*") if p.is_dir() and not p.name.startswith(".")):
        files = data_lib.list_images(folder)
        depth = len(folder.relative_to(root).parts)
        indent = "    " * depth
        shown = ", ".join(f.name for f in files[:max_files]) + (", ..." if len(files) > max_files else "")
        lines.append(f"{indent}{folder.name}/" + (f"  ({len(files)} images: {shown})" if files else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------ the common header of the notebooks


def settings_table() -> str:
    """The course's three sizes as a text table, read from the presets themselves (so that a change of
    default shows here): input, backbone, training budget, adaptor, loss and noise of
    ``SimpleNetConfig.quick()``, ``SimpleNetConfig()`` and ``SimpleNetConfig.paper()``; the row this
    session runs is marked with ``<-``. All three run on the same data (:func:`course_data`)."""
    current = "quick" if quick_mode() else "paper" if paper_mode() else "default"
    rows = [("SIMPLENET_EDU_QUICK=1", "quick", SimpleNetConfig.quick()),
            ("(nothing)", "default", SimpleNetConfig()),
            ("SIMPLENET_EDU_PAPER=1", "paper", SimpleNetConfig.paper())]
    table = [("setting", "input", "backbone", "budget", "adaptor", "loss", "noise sigma", "")]
    for setting, name, config in rows:
        budget = f"{budget_text(config)} of {config.batch_size} patches"
        table.append((setting, input_text(config), config.backbone, budget, config.adaptor,
                      config.loss, noise_text(config), "<- this session" if name == current else ""))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table)

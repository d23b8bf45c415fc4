"""The model options that ``demo``, ``train``, ``evaluate``, ``ablate`` and ``benchmark`` share, and
:func:`build_config`, which turns them into a configuration.

Torch-free: building the parser reads only the configuration classes (plain dataclasses), so that
``simplenet-edu predict --model x.onnx`` runs without torch. Every default that a help line states is
read from those classes (``SimpleNetConfig()``, ``SuperSimpleNetConfig()`` and their presets), so the
help cannot drift from the code.
"""

from __future__ import annotations

import argparse

from ..evaluation.report import input_text
from ..simplenet.config import CHOICES, SimpleNetConfig
from ..supersimplenet.config import SuperSimpleNetConfig
from ..utils.errors import InputError

# The option a user types for a configuration field whose name differs from it.
OPTION_OF_FIELD = {"weights_path": "--weights"}


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _per_model(field: str, preset: str | None = None, words=None) -> str:
    """``field`` in SimpleNet's and SuperSimpleNet's configuration (``preset``: ``"paper"`` or ``"quick"``;
    ``None``: the CPU default) as help text: ``"SimpleNet 450, SuperSimpleNet 200"``, or one value where
    both agree. ``words(config)``, when given, says the value instead."""
    configs = [cls() if preset is None else getattr(cls, preset)() for cls in (SimpleNetConfig, SuperSimpleNetConfig)]
    simplenet, supersimplenet = (_text(getattr(c, field)) if words is None else words(c) for c in configs)
    return simplenet if simplenet == supersimplenet else f"SimpleNet {simplenet}, SuperSimpleNet {supersimplenet}"


def variant_help(part: str) -> str:
    """``"linear | identity | conv; default identity (the paper's: linear)"``: the choices of ``part``,
    the CPU default's choice and the paper's, read from ``SimpleNetConfig()`` and ``.paper()``."""
    default, paper = getattr(SimpleNetConfig(), part), getattr(SimpleNetConfig.paper(), part)
    whose = "the paper's choice" if default == paper else f"the paper's: {paper}"
    return f"{' | '.join(CHOICES[part])}; default {default} ({whose})"


def add_model_options(parser: argparse.ArgumentParser, every_seed: bool = False) -> None:
    """The ``model`` and ``variants`` option groups, on ``parser`` (``every_seed``: a command that runs
    several seeds, whose ``--seed`` has no default and is refused)."""
    simplenet, paper = SimpleNetConfig(), SimpleNetConfig.paper()
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=["simplenet", "supersimplenet"], default="simplenet",
                       help="simplenet (Liu et al. 2023; default) or supersimplenet (Rolih et al. 2024, its "
                            "successor: Perlin-masked anomalies, segmentation and classification heads)")
    group.add_argument("--preset", choices=["default", "paper", "quick"], default="default",
                       help="configuration preset (default: the CPU default; paper: the paper's configuration, "
                            f"{paper.backbone}; quick: seconds on a CPU, for first experiments)")
    group.add_argument("--backbone", help="efficientnet_lite0, efficientnet_lite1, efficientnet_lite2 (offline; "
                                          "lite1 and lite2 with the backbones extra), wide_resnet50_2 or resnet18 (default "
                                          f"{_per_model('backbone')}; --preset paper: {paper.backbone})")
    group.add_argument("--weights", help="local file with the backbone's ImageNet weights")
    group.add_argument("--image-size", type=int, nargs="+", metavar=("H", "W"),
                       help="one number: resize images to H x H pixels; two: to height H, width W (height "
                            f"first, then width). Default {_per_model('image_size')}; --preset quick: "
                            f"{_per_model('image_size', 'quick')}; --preset paper: "
                            f"{_per_model('image_size', 'paper', input_text)}")
    group.add_argument("--keep-aspect", action=argparse.BooleanOptionalAction, default=None,
                       help="keep the training images' aspect ratio: the short side gets --image-size, the "
                            "long side follows (rounded to the backbone's stride, 16), fixed at training and "
                            "saved with the model; --no-keep-aspect squashes every image to --image-size "
                            "(default: auto, kept when the training images' median long side is at least "
                            "1.5 x the short one, data.AUTO_ASPECT; --preset paper: off)")
    group.add_argument("--steps", type=int,
                       help=f"optimiser steps of the heads (default: {_per_model('steps')}; --preset quick: "
                            f"{_per_model('steps', 'quick')})")
    group.add_argument("--epochs", type=int,
                       help="train for this many passes over the training data instead (--preset paper: "
                            f"{_per_model('epochs', 'paper')})")
    group.add_argument("--noise-std", type=float,
                       help="noise scale: a multiple of the training features' std (default: "
                            f"{_per_model('noise_std')}); --preset paper: an absolute sigma, "
                            f"{_per_model('noise_std', 'paper')}")
    group.add_argument("--select", choices=["last", "validation"],
                       help="keep the last step's heads, or the checkpoint that scores best on held-out normal "
                            f"images with painted defects, never test images (default {simplenet.select})")
    group.add_argument("--threshold-folds", type=int, metavar="K",
                       help="the normal thresholds from every training image, each scored by heads trained on the "
                            "other folds: K folds, K+1 trainings (default "
                            f"{_per_model('threshold_folds')}; --preset quick: {_per_model('threshold_folds', 'quick')}; "
                            f"--preset paper: {_per_model('threshold_folds', 'paper')}); "
                            "0: from one held-out share of the images (the model trains on the rest)")
    if every_seed:  # kept so that --seed is not taken for an abbreviation of --seeds
        group.add_argument("--seed", type=int, help="not used here: every seed of --seeds runs")
    else:
        group.add_argument("--seed", type=int, default=simplenet.seed, help="(default %(default)s)")
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default=simplenet.device,
                       help="(default %(default)s: a GPU where there is one)")

    variants = parser.add_argument_group(
        "variants of SimpleNet's parts",
        "Each default is the CPU default's choice (--preset default); --preset paper takes the paper's.")
    for part in CHOICES:
        variants.add_argument(f"--{part.replace('_', '-')}", choices=CHOICES[part], help=variant_help(part))
    variants.add_argument("--fakes", choices=["gaussian", "painted"],
                          help="gaussian: the paper's noised patch features only; painted: also the cells of one "
                               "painted copy of each training image (a texture or a drawn defect) that lie far "
                               f"from the normal patches (default {simplenet.fakes})")
    variants.add_argument("--topk", type=float,
                          help=f"image score topk: patches (>= 1) or share (< 1); default {simplenet.topk:g}")


def build_config(args: argparse.Namespace):
    """The ``SimpleNetConfig`` named by ``--preset`` with the explicit options applied on top
    (a ``SuperSimpleNetConfig`` with ``--model supersimplenet``). A value the configuration refuses
    is reported as the option's error (``--steps: must be a positive integer, got 0``)."""
    from .. import data as data_lib
    from ..core.registry import config_class

    kind = getattr(args, "model", "simplenet")
    size = args.image_size  # [N] or [H, W]
    if size is not None and not (1 <= len(size) <= 2 and min(size) >= 1):
        raise InputError("--image-size", "takes one positive integer (a square) or two (height, then width)")
    options = {"backbone": args.backbone, "weights_path": args.weights, "steps": args.steps, "epochs": args.epochs,
               "noise_std": args.noise_std, "seed": args.seed, "device": args.device,
               "threshold_folds": getattr(args, "threshold_folds", None)}
    simplenet_only = {"keep_aspect": args.keep_aspect, "select": args.select, "topk": args.topk,
                      "fakes": getattr(args, "fakes", None),
                      **{part: getattr(args, part) for part in CHOICES}}
    if kind == "supersimplenet":
        for option, value in simplenet_only.items():
            if value is not None:
                raise InputError(f"--{option.replace('_', '-')}", "is a SimpleNet option; SuperSimpleNet has no such part")
        if size is not None and len(size) != 1:
            raise InputError("--image-size", "SuperSimpleNet takes one positive integer (square images)")
    else:
        options.update(simplenet_only)
    cls = config_class(kind)
    preset = {"default": cls, "paper": cls.paper, "quick": cls.quick}[args.preset]()
    if size is not None:
        options["image_size"] = size[0] if len(size) == 1 else tuple(size)
        if preset.crop_size is not None and preset.crop_size > min(data_lib.as_shape(options["image_size"])):
            options["crop_size"] = None  # a preset's crop (paper: 329 -> 288) only where it fits
    changes = {key: value for key, value in options.items() if value is not None}
    if args.epochs is not None and kind == "supersimplenet":
        changes["steps"] = None   # a budget in passes replaces the preset's steps ...
    elif args.steps is not None:
        changes["epochs"] = None  # ... and one in steps the preset's epochs (the paper's 160 or 300)
    try:
        return preset.replace(**changes)
    except InputError as error:  # name the option the user typed, not the field
        if error.where in changes:
            raise InputError(OPTION_OF_FIELD.get(error.where, "--" + error.where.replace("_", "-")),
                             error.problem) from None
        raise

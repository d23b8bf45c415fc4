"""SuperSimpleNet's configuration: every setting of a run and its presets (torch-free).

``SuperSimpleNetConfig()`` is the CPU default, ``.paper()`` the paper's configuration, ``.quick()`` a
tiny one for tests and notebooks. A value out of range raises
:class:`~simplenet_edu.utils.errors.InputError` (a ``ValueError``) naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.config import ModelConfig, positive


@dataclass
class SuperSimpleNetConfig(ModelConfig):
    """Every setting of a SuperSimpleNet run. ``SuperSimpleNetConfig()`` is the CPU default,
    ``.paper()`` the paper's configuration, ``.quick()`` a tiny one for tests and notebooks.

    The CPU default keeps the method and changes what costs time or needs the paper's long schedule
    (``benchmarks/supersimplenet_budget.py``, ``results/suite_supersimplenet.md``): EfficientNet-Lite0
    instead of Wide-ResNet50, no 2x upscaling (a 32 x 32 grid at 256 px), heads of 128 and 8 channels
    instead of 1024 and 128, 200 steps of 3 images instead of 300 epochs of 32, learning rates 10 to 25x
    the paper's, noise of 0.5 x the feature spread (chosen on the development suite:
    ``results/supersimplenet_sweep.md``), and the image head's last layer initialised to
    read the map's maximum (``cls_init="map_max"``): with Xavier weights and a few hundred steps that
    head often learned an *inverted* ranking (its AUROC on the training batches fell from 0.27 to 0.01
    over 100 steps on hazelnut_toy), which a long schedule would have had time to undo.
    """

    # Input and frozen features
    backbone: str = "efficientnet_lite0"
    weights_path: str | None = None
    pretrained: bool = True
    image_size: int = 256                 # images are resized to image_size x image_size (no crop)
    crop_size: int | None = None          # kept for the shared data loaders; the paper does not crop
    upscale: int = 1                      # feature grid = upscale x the shallow layer's grid (paper: 2)
    patch_size: int = 3                   # 3x3 average over neighbouring cells
    # Anomaly generator (anomaly_generator.py)
    noise_std: float = 0.5                # x feature std (paper: absolute 0.015 for WRN50)
    noise_scale: str = "relative"         # "relative": sigma = noise_std * std of training features
    perlin_threshold: float = 0.2         # MVTec AD 0.2, VisA 0.6
    zero_prob: float = 0.5                # share of fake images whose mask is emptied
    # Segmentation-detection module (heads.py) and losses (loss.py)
    seg_hidden: int = 128                 # paper: 1024
    cls_channels: int = 8                 # paper: 128
    cls_kernel: int = 5
    cls_features: str = "adapted"         # "adapted" (ICPR paper, authors' code) | "backbone" (JIMS)
    cls_init: str = "map_max"             # "map_max": the image logit starts as the map's max | "xavier" (paper)
    margin: float = 0.5
    focal_gamma: float = 4.0
    # Training
    steps: int | None = 200               # optimiser steps (the CPU budget) ...
    epochs: int | None = None             # ... or passes over the training images (paper: 300)
    batch_size: int = 3                   # images per step, before doubling (paper: 32)
    lr_adaptor: float = 1e-3              # AdamW, weight decay 0.01 (paper: 1e-4)
    lr_seg: float = 2e-3                  # AdamW, weight decay 1e-5 (paper: 2e-4)
    lr_cls: float = 5e-3                  # AdamW, weight decay 1e-5 (paper: 2e-4)
    lr_milestones: tuple[float, ...] = (0.8, 0.9)   # learning rate x lr_gamma at these shares of the run
    lr_gamma: float = 0.4
    adam_beta2: float = 0.999             # AdamW's second-moment decay (torch's default, the paper's)
    supervised: str = "auto"              # "auto": use train/<defect> images and masks when there are any; "never"
    stop_grad: bool | None = None         # None: True unsupervised, False supervised (as the authors)
    clip_grad: float | None = None        # None: 1.0 supervised, off unsupervised (as the authors)
    # Scoring
    smoothing_sigma: float = 4.0
    threshold_folds: int = 5              # normal thresholds from every image scored out of fold (k folds); 0: one held-out split
    holdout_fraction: float = 0.1         # threshold_folds=0: of train/good, held out to set the normal threshold
    normal_max_fpr: float = 0.01          # the normal threshold flags at most this share of the normal images scored
    bank_images: int = 512                # normal training images cached (an even sample beyond; 200 steps of 3 read 600)
    # Run
    seed: int = 0
    device: str = "auto"
    cache_dtype: str = "float32"

    def __post_init__(self):
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        super().__post_init__()

    def problems(self) -> list[tuple[str, str]]:
        rules = [
            ("image_size", positive(self.image_size), "must be a positive integer (square images)"),
            ("crop_size", self.crop_size is None or positive(self.crop_size), "must be None or a positive integer"),
            ("upscale", positive(self.upscale), "must be a positive integer"),
            ("batch_size", positive(self.batch_size), "must be a positive integer"),
            ("cls_kernel", positive(self.cls_kernel) and self.cls_kernel % 2 == 1, "must be odd"),
            ("zero_prob", 0 <= self.zero_prob <= 1, "must be in [0, 1]"),
            ("noise_std", self.noise_std > 0, "must be positive"),
            ("noise_scale", self.noise_scale in ("relative", "absolute"), "must be 'relative' or 'absolute'"),
            ("cls_features", self.cls_features in ("adapted", "backbone"), "must be 'adapted' or 'backbone'"),
            ("cls_init", self.cls_init in ("xavier", "map_max"), "must be 'xavier' or 'map_max'"),
            ("supervised", self.supervised in ("auto", "never"), "must be 'auto' or 'never'"),
            ("steps", self.steps is None or positive(self.steps), "must be None or a positive integer"),
            ("epochs", self.epochs is None or positive(self.epochs), "must be None or a positive integer"),
            ("steps", self.steps is not None or self.epochs is not None, "or epochs must be set"),
            ("threshold_folds", isinstance(self.threshold_folds, int) and not isinstance(self.threshold_folds, bool)
             and (self.threshold_folds == 0 or self.threshold_folds >= 2), "must be 0 (one held-out split) or at least 2"),
            ("holdout_fraction", 0 <= self.holdout_fraction < 1, "must be in [0, 1)"),
            ("bank_images", positive(self.bank_images) and self.bank_images >= 2, "must be an integer of at least 2"),
            ("normal_max_fpr", 0 < self.normal_max_fpr < 1, "must be in (0, 1)"),
            ("cache_dtype", self.cache_dtype in ("float32", "float16", "bfloat16"),
             "must be float32, float16 or bfloat16"),
        ]
        return [(name, problem) for name, ok, problem in rules if not ok]

    @classmethod
    def paper(cls, **overrides: Any) -> "SuperSimpleNetConfig":
        """Rolih et al. 2024 (authors' ``train.py``, unsupervised MVTec AD): Wide-ResNet50 layer2+3
        upscaled x2 (64 x 64 x 1536 at 256 px), absolute sigma 0.015, Perlin threshold 0.2, heads of
        1024 and 128 channels, 300 epochs of batch 32, AdamW 1e-4 / 2e-4 / 2e-4, x0.4 at 80% and 90%.
        Needs a GPU. Its normal thresholds come from one held-out split (``threshold_folds=0``):
        out-of-fold ones would repeat its long training k more times."""
        values = dict(backbone="wide_resnet50_2", image_size=256, upscale=2, noise_std=0.015,
                      noise_scale="absolute", seg_hidden=1024, cls_channels=128, cls_init="xavier",
                      steps=None, epochs=300, batch_size=32, lr_adaptor=1e-4, lr_seg=2e-4, lr_cls=2e-4,
                      threshold_folds=0)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def quick(cls, **overrides: Any) -> "SuperSimpleNetConfig":
        """Seconds on a CPU: 128 px images (a 16 x 16 grid), 100 steps, the normal thresholds from 2 folds
        (the heads trained 3 times instead of the default's 6). For CI and first experiments."""
        values = dict(image_size=128, steps=100, threshold_folds=2)
        values.update(overrides)
        return cls(**values)

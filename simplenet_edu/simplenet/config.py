"""SimpleNet's configuration: every setting of a run, the presets, and the names of the switchable parts.

Plain data without torch, so that the command line can build its options (and ``simplenet-edu
predict --model x.onnx`` can run) without loading the library. :mod:`simplenet_edu.simplenet.variants`
turns the names of :data:`CHOICES` into modules. A configuration checks itself when it is made: a
value out of range raises :class:`~simplenet_edu.utils.errors.InputError` (a ``ValueError``) that
names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.config import ModelConfig, positive, size_ok


CHOICES: dict[str, tuple[str, ...]] = {
    "generator": ("gaussian", "mixup", "adversarial", "learned", "perlin"),
    "adaptor": ("linear", "identity", "conv"),
    "discriminator": ("mlp", "conv"),
    "loss": ("truncated_l1", "bce"),
    "image_score": ("max", "mean", "topk"),
}

# Where each variant comes from, for tables and notebooks (the first choice of every part is the paper's).
ORIGINS: dict[tuple[str, str], str] = {
    ("generator", "gaussian"): "the paper: Gaussian noise on every patch feature",
    ("generator", "mixup"): "common alternative: mixup (Zhang et al. 2018), a blend with another image's feature",
    ("generator", "adversarial"): "common alternative: Gaussian noise, then one step towards where D says normal",
    ("generator", "learned"): "common alternative: a learned perturbation, trained to fool the discriminator",
    ("generator", "perlin"): "SuperSimpleNet (Rolih et al. 2024): Gaussian noise inside Perlin-noise masks",
    ("adaptor", "linear"): "the paper: one Linear(D, D)",
    ("adaptor", "identity"): "the paper's own ablation (no adaptor; also the official main.py default)",
    ("adaptor", "conv"): "common alternative: per layer a 1x1 conv + BatchNorm + ReLU, before pooling",
    ("discriminator", "mlp"): "the paper: a 2-layer MLP on each patch feature",
    ("discriminator", "conv"): "common alternative: a 3-layer conv net over the feature grid",
    ("loss", "truncated_l1"): "the paper: truncated L1 with a margin",
    ("loss", "bce"): "common alternative: binary cross-entropy on logits",
    ("image_score", "max"): "the paper: the highest patch score",
    ("image_score", "mean"): "common alternative: the mean patch score",
    ("image_score", "topk"): "common alternative: the mean of the k highest patch scores",
}


@dataclass
class SimpleNetConfig(ModelConfig):
    """Every setting of a SimpleNet run. ``SimpleNetConfig()`` is the CPU default;
    ``SimpleNetConfig.paper()`` the paper's configuration; ``SimpleNetConfig.quick()`` a tiny one
    for tests and notebooks in CI.

    The CPU default was chosen on the four sets of the development suite at once
    (``results/default_sweep.md``). It departs from the paper where that measured better in a CPU
    budget: no trained adaptor (``adaptor="identity"``: at these budgets the linear adaptor drifts
    and localises worse), the BCE loss (the truncated L1 stops pushing once features pass the margin),
    a relative noise of 0.75 x the features' std, and 450 optimiser steps whatever the data size."""

    # Input and frozen features
    backbone: str = "efficientnet_lite0"
    weights_path: str | None = None
    pretrained: bool = True
    image_size: int | tuple[int, int] = 256  # resize to image_size x image_size, or to (height, width) ...
    crop_size: int | tuple[int, int] | None = None  # ... then centre-crop (paper: 329 -> 288; data.input_shapes)
    keep_aspect: bool | str = "auto"      # True: short side image_size, long side from the training images'
                                          # aspect; "auto": so when the long side is >= 1.5 x the short one
    patch_size: int = 3                   # local aggregation neighbourhood
    pretrain_embed_dim: int = 384         # each layer pooled to this
    target_embed_dim: int = 384           # patch feature dimension D
    # Anomalous feature generator
    noise_std: float = 0.75
    noise_scale: str = "relative"         # "relative": sigma = noise_std * std of training features
    mix_noise: int = 1
    fakes: str = "gaussian"               # gaussian | painted: also cells of painted training images as fakes
    # Discriminator and loss
    dsc_hidden: int = 384
    dsc_layers: int = 2
    dsc_margin: float = 0.5
    # Training: a budget of optimiser steps, the same for 30 training images or 700
    steps: int = 450                      # optimiser steps (the default budget)
    epochs: int | None = None             # if set: this many passes over all cached patches instead
    batch_size: int = 512                 # patch features per optimisation step
    lr_adaptor: float = 5e-4              # AdamW, weight decay 0.01 (paper: 1e-4); unused by identity
    lr_discriminator: float = 1e-3        # Adam, weight decay 1e-5 (paper: 2e-4)
    lr_schedule: str = "constant"         # constant | cosine (decay to 0 over the run)
    # Honest stopping (validation.py): held-out normal images with painted defects, never test images
    val_checkpoints: int = 5              # score the painted validation set this often (0: never)
    val_images: int = 8                   # at most this many held-out images are painted
    select: str = "last"                  # last | validation (the checkpoint that scores best there)
    # Scoring
    smoothing_sigma: float = 4.0
    threshold_folds: int = 5              # normal thresholds from every image scored out of fold (k folds); 0: one held-out split
    holdout_fraction: float = 0.1         # threshold_folds=0: of train/good, held out to set the normal threshold
    normal_max_fpr: float = 0.01          # the normal threshold flags at most this share of the normal images scored
    bank_patches: int = 262_144           # training patches kept (2^18: 256 images of 32 x 32, what 450 steps of 512 read)
    # Variants of each part (variants.py); the paper's choice is listed first
    generator: str = "gaussian"           # gaussian | mixup | adversarial | learned | perlin
    adaptor: str = "identity"             # linear (paper) | identity | conv
    discriminator: str = "mlp"            # mlp | conv
    loss: str = "bce"                     # truncated_l1 (paper) | bce
    image_score: str = "max"              # max | mean | topk
    topk: float = 10                      # topk: mean of this many patches (or this share if < 1)
    perlin_threshold: float = 0.2         # perlin: mask where the noise exceeds this (SuperSimpleNet)
    # Run
    seed: int = 0
    device: str = "auto"
    cache_dtype: str = "float32"          # "float16" halves the feature cache's memory
    amp: bool = False                     # bfloat16 autocast for inference on a GPU

    @classmethod
    def paper(cls, **overrides: Any) -> "SimpleNetConfig":
        """Liu et al. 2023 / the official ``run.sh``: Wide-ResNet50 layer2+3, 329 -> 288 px,
        1536-d features, absolute sigma 0.015, 40 x 4 = 160 passes in batches of 8 images
        (8 x 1296 patches). Needs a GPU to be practical. Its normal thresholds come from one held-out
        split (``threshold_folds=0``): out-of-fold ones would repeat its long training k more times."""
        values = dict(
            backbone="wide_resnet50_2", image_size=329, crop_size=288,
            pretrain_embed_dim=1536, target_embed_dim=1536,
            noise_std=0.015, noise_scale="absolute", dsc_hidden=1024, adaptor="linear", loss="truncated_l1",
            epochs=160, batch_size=8 * 36 * 36, lr_adaptor=1e-4, lr_discriminator=2e-4, threshold_folds=0,
            keep_aspect=False,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def quick(cls, **overrides: Any) -> "SimpleNetConfig":
        """Seconds on a CPU: the default's recipe on 128 px images (a 16 x 16 patch grid, 4x fewer
        patches than the default) in 300 steps of 256 patches, its normal thresholds from 2 folds (every
        normal image still scored by heads that never saw it, with the heads trained 3 times instead of
        the default's 6). For CI and first experiments; too coarse for small defects."""
        values = dict(image_size=128, steps=300, batch_size=256, threshold_folds=2)
        values.update(overrides)
        return cls(**values)

    def problems(self) -> list[tuple[str, str]]:
        rules = [(part, value in CHOICES[part], f"is not a variant; choose from {', '.join(CHOICES[part])}")
                 for part, value in ((part, getattr(self, part)) for part in CHOICES)]
        rules += [
            ("image_size", size_ok(self.image_size), "must be a positive integer or a (height, width) pair"),
            ("crop_size", size_ok(self.crop_size, optional=True), "must be None, a positive integer or a pair"),
            ("keep_aspect", self.keep_aspect is True or self.keep_aspect is False or self.keep_aspect == "auto",
             "must be True, False or 'auto'"),
            ("keep_aspect", self.keep_aspect is not True or isinstance(self.image_size, int),
             "needs one image_size (the short side)"),
            ("fakes", self.fakes in ("gaussian", "painted"), "must be 'gaussian' or 'painted'"),
            ("fakes", self.fakes != "painted" or (self.discriminator == "mlp" and self.adaptor != "conv"),
             "'painted' needs discriminator='mlp' and an adaptor other than 'conv' (it scores single cells)"),
            ("steps", positive(self.steps), "must be a positive integer"),
            ("epochs", self.epochs is None or positive(self.epochs), "must be None or a positive integer"),
            ("batch_size", positive(self.batch_size), "must be a positive integer"),
            ("noise_std", self.noise_std > 0, "must be positive"),
            ("noise_scale", self.noise_scale in ("relative", "absolute"), "must be 'relative' or 'absolute'"),
            ("mix_noise", positive(self.mix_noise), "must be a positive integer"),
            ("dsc_layers", isinstance(self.dsc_layers, int) and self.dsc_layers >= 2, "must be at least 2"),
            ("lr_schedule", self.lr_schedule in ("constant", "cosine"), "must be 'constant' or 'cosine'"),
            ("select", self.select in ("last", "validation"), "must be 'last' or 'validation'"),
            ("val_checkpoints", isinstance(self.val_checkpoints, int) and self.val_checkpoints >= 0,
             "must be a whole number, 0 for none"),
            ("threshold_folds", isinstance(self.threshold_folds, int) and not isinstance(self.threshold_folds, bool)
             and (self.threshold_folds == 0 or self.threshold_folds >= 2), "must be 0 (one held-out split) or at least 2"),
            ("select", self.select != "validation" or self.threshold_folds == 0,
             "'validation' paints defects on held-out images: use it with threshold_folds=0 (one held-out split)"),
            ("holdout_fraction", 0 <= self.holdout_fraction < 1, "must be in [0, 1)"),
            ("bank_patches", positive(self.bank_patches), "must be a positive integer"),
            ("normal_max_fpr", 0 < self.normal_max_fpr < 1, "must be in (0, 1)"),
            ("topk", self.topk > 0, "must be > 0 (patches, or a share below 1)"),
            ("cache_dtype", self.cache_dtype in ("float32", "float16", "bfloat16"),
             "must be float32, float16 or bfloat16"),
        ]
        return [(name, problem) for name, ok, problem in rules if not ok]

"""SuperSimpleNet (Rolih, Fucka, Skocaj; ICPR 2024, extended in JIMS 2025): SimpleNet's successor.

It keeps SimpleNet's frozen backbone, its shallow feature adaptor and its anomalies made in feature
space, and changes three things:

1. **features**: the two backbone layers are upscaled to *twice* the shallow layer's grid (bilinear),
   stacked, and averaged over 3x3 neighbourhoods (``C = C_2 + C_3`` channels, no channel pooling);
   the adaptor is a 1x1 convolution, i.e. ``Linear(C, C)`` at every cell (:func:`upscaled_features`);
2. **anomalies**: the batch is doubled and Gaussian noise is added only inside Perlin-noise masks,
   which become the pixel labels (``perlin.py``);
3. **heads**: a segmentation head (SimpleNet's discriminator, per cell) gives the anomaly map, and a
   classification head reads features and map to give the image score (``segdec.py``), trained with
   focal and truncated L1 losses (``losses.py``).

With real defect masks for some training images it trains *supervised* as well (the paper's
"unifying" claim): the masks are merged into the labels. The layout it reads them from::

    <root>/train/good/*.png                          normal training images (always)
    <root>/train/<defect>/<name>.png                 anomalous training images (supervised mode)
    <root>/ground_truth/<defect>/<name>_mask.png     their masks: MVTec's own rule, as for test images

A training mask must not share its file with a test image's mask (same defect folder, same name):
that is reported as an error. Without ``train/<defect>`` folders training is unsupervised, as
SimpleNet's.

As in SimpleNet here, the frozen backbone runs **once per training image**: its two layer maps are
cached, and each training step rebuilds the upscaled features of its batch from the cache (two
interpolations and a 3x3 average: fixed, cheap, linear), then trains adaptor and heads. Evaluation
is honest: the model of the last step, and ``threshold_normal`` from held-out normal training images.

``SuperSimpleNetConfig()`` is the CPU default; ``.paper()`` the paper's configuration (Wide-ResNet50,
256 px, 300 epochs of batch 32); ``.quick()`` a tiny one for tests and notebooks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import data as data_lib
from .adapter import FeatureAdaptor
from .backbones import load_backbone
from .errors import InputError
from .localization import anomaly_maps
from .losses import SuperSimpleNetLoss
from .model import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, resolve_device, robust_spread
from .noise import noise_sigma
from .perlin import PerlinAnomalyGenerator
from .segdec import SegmentationDetectionModule

MODEL_KIND = "supersimplenet"


@dataclass
class SuperSimpleNetConfig:
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
    # Anomaly generator (perlin.py)
    noise_std: float = 0.5                # x feature std (paper: absolute 0.015 for WRN50)
    noise_scale: str = "relative"         # "relative": sigma = noise_std * std of training features
    perlin_threshold: float = 0.2         # MVTec AD 0.2, VisA 0.6
    zero_prob: float = 0.5                # share of fake images whose mask is emptied
    # Segmentation-detection module (segdec.py) and losses (losses.py)
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
    holdout_fraction: float = 0.1         # of train/good, held out to set the normal threshold
    normal_max_fpr: float = 0.01
    # Run
    seed: int = 0
    device: str = "auto"
    cache_dtype: str = "float32"

    def __post_init__(self):
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        checks = {"upscale": self.upscale >= 1, "batch_size": self.batch_size >= 1,
                  "cls_kernel": self.cls_kernel % 2 == 1, "zero_prob": 0 <= self.zero_prob <= 1,
                  "cls_features": self.cls_features in ("adapted", "backbone"),
                  "cls_init": self.cls_init in ("xavier", "map_max"),
                  "supervised": self.supervised in ("auto", "never"),
                  "steps": self.steps is not None or self.epochs is not None}
        for name, ok in checks.items():
            if not ok:
                raise InputError(name, f"invalid value {getattr(self, name)!r}")

    @classmethod
    def paper(cls, **overrides: Any) -> "SuperSimpleNetConfig":
        """Rolih et al. 2024 (authors' ``train.py``, unsupervised MVTec AD): Wide-ResNet50 layer2+3
        upscaled x2 (64 x 64 x 1536 at 256 px), absolute sigma 0.015, Perlin threshold 0.2, heads of
        1024 and 128 channels, 300 epochs of batch 32, AdamW 1e-4 / 2e-4 / 2e-4, x0.4 at 80% and 90%.
        Needs a GPU."""
        values = dict(backbone="wide_resnet50_2", image_size=256, upscale=2, noise_std=0.015,
                      noise_scale="absolute", seg_hidden=1024, cls_channels=128, cls_init="xavier",
                      steps=None, epochs=300, batch_size=32, lr_adaptor=1e-4, lr_seg=2e-4, lr_cls=2e-4)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def quick(cls, **overrides: Any) -> "SuperSimpleNetConfig":
        """Seconds on a CPU: 128 px images (a 16 x 16 grid), 100 steps. For CI and first experiments."""
        values = dict(image_size=128, steps=100)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["lr_milestones"] = list(self.lr_milestones)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SuperSimpleNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def upscaled_features(maps: list[torch.Tensor], upscale: int = 2, patch_size: int = 3) -> torch.Tensor:
    """SuperSimpleNet's patch features: ``[[B, C_l, h_l, w_l], ...]`` (shallowest first) ->
    ``[B, H, W, sum C_l]`` with ``(H, W) = upscale x (h_0, w_0)``.

    Every layer is resized bilinearly to the common grid (corners aligned, as the authors' code), the
    layers are stacked, and each cell is averaged with its ``patch_size x patch_size`` neighbours
    (zero padding counted, as ``nn.AvgPool2d``). Unlike SimpleNet, no channel is pooled away.
    """
    h, w = maps[0].shape[-2:]
    size = (h * upscale, w * upscale)
    resized = [m.float() if tuple(m.shape[-2:]) == size else
               F.interpolate(m.float(), size=size, mode="bilinear", align_corners=True) for m in maps]
    pooled = F.avg_pool2d(torch.cat(resized, dim=1), patch_size, stride=1, padding=patch_size // 2)
    return pooled.permute(0, 2, 3, 1)


def downsample_masks(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Pixel masks ``[N, H, W]`` -> cell labels ``[N, h, w]`` of 0/1: bilinear, then ``>= 0.5``
    (the downsampling DeSTSeg proposed and SuperSimpleNet uses)."""
    small = F.interpolate(masks.float().unsqueeze(1), size=grid, mode="bilinear", align_corners=False)
    return (small.squeeze(1) >= 0.5).float()


def lr_factor(step: int, milestones: list[int], gamma: float) -> float:
    """The learning-rate factor at ``step`` (0-based): ``gamma`` to the number of milestones reached."""
    return gamma ** sum(step >= m for m in milestones)


def train_step(adaptor, generator, head, loss_fn, optimizer, features: torch.Tensor, masks: torch.Tensor,
               labels: torch.Tensor, cls_features: str = "adapted", clip_grad: float | None = None,
               random: tuple = (None, None)) -> dict:
    """One SuperSimpleNet update on a batch of cached features ``[B, H, W, C]`` with their real
    defect labels (``masks [B, H, W]``, ``labels [B]``; zeros when unsupervised).

    Adapt; double the batch and noise each copy inside its Perlin mask; both heads; the three losses;
    one backward pass through heads and adaptor. ``random``: (CPU generator for the masks, generator
    on the features' device for the noise).
    """
    adapted = adaptor(features)                                                     # [B, H, W, C]
    raw = features if cls_features == "backbone" else None
    noised, noised_raw, masks, labels = generator(adapted, masks, labels, raw, *random)   # [2B, ...]
    anomaly_map, score = head(noised, noised_raw)
    loss, parts = loss_fn(anomaly_map, score, masks, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip_grad)
    optimizer.step()
    return {"loss": loss.item(), **parts, "anomalous_cells": masks.mean().item(),
            "anomalous_images": labels.mean().item()}


def read_training_set(root: str | Path, image_size: int, crop_size: int | None = None,
                      supervised: str = "auto") -> dict:
    """The training images of a folder: ``images [N, 3, S, S]``, ``masks [N, S, S]`` (0/1),
    ``labels [N]`` and ``paths``. ``train/good`` always; with ``supervised="auto"`` also every other
    ``train/<defect>`` folder, each image with its ``ground_truth/<defect>/<name>_mask.png``
    (see the module docstring). A plain folder of images is read as normal images."""
    root = Path(root)
    # The whole folder first, every problem at once, before any model work (as SimpleNet.fit).
    normal = data_lib.check_dataset(root, image_size=image_size, crop_size=crop_size).train
    anomalous = []
    if (root / "train").is_dir():
        if supervised == "auto":
            for folder in sorted(p for p in (root / "train").iterdir() if p.is_dir() and p.name != "good"):
                anomalous += [(path, root / "ground_truth" / folder.name / f"{path.stem}_mask.png")
                              for path in data_lib.list_images(folder)]
    side = crop_size or image_size
    images = [data_lib.load_image(p, image_size, crop_size) for p in normal]
    masks = [torch.zeros(side, side) for _ in normal]
    for path, mask_path in anomalous:
        if not mask_path.is_file():
            raise InputError(mask_path, f"mask file missing for the anomalous training image {path}")
        test_twin = root / "test" / path.parent.name / path.name
        if any(test_twin.with_suffix(ext).is_file() for ext in data_lib.IMAGE_EXTENSIONS):
            raise InputError(mask_path, f"is the mask of both {path} and a test image of the same name: rename one")
        image = data_lib._read(path)
        mask = data_lib._read(mask_path)
        if mask.size != image.size:
            raise InputError(mask_path, f"mask is {mask.size[0]}x{mask.size[1]} but its image {path} is "
                                        f"{image.size[0]}x{image.size[1]}")
        images.append(data_lib._image_tensor(image, image_size, crop_size))
        masks.append(data_lib._mask_tensor(mask, image_size, crop_size))
    labels = [0] * len(normal) + [1] * len(anomalous)
    return {"images": torch.stack(images), "masks": torch.stack(masks), "labels": torch.tensor(labels),
            "paths": [str(p) for p in normal] + [str(p) for p, _ in anomalous]}


class SuperSimpleNet(torch.nn.Module):
    """SuperSimpleNet with SimpleNet's interface: ``fit``, ``predict``, ``save``, ``load``.

    >>> model = SuperSimpleNet(SuperSimpleNetConfig.quick()).fit("data/demo/brick")   # doctest: +SKIP
    >>> scores, maps = model.predict(images)   # scores: sigmoid of the classification head  # doctest: +SKIP

    After ``fit``: ``history`` (about twenty rows of training curves), ``feature_std``, ``sigma``,
    ``supervised`` (whether real masks were used), ``threshold_normal`` and ``pixel_threshold_normal``
    (from held-out normal images), ``n_train``, ``n_holdout``, ``timings``.
    """

    kind = MODEL_KIND

    def __init__(self, config: SuperSimpleNetConfig | None = None, backbone: torch.nn.Module | None = None):
        super().__init__()
        self.config = config = config or SuperSimpleNetConfig()
        self.device = resolve_device(config.device)
        self.backbone = backbone if backbone is not None else load_backbone(
            config.backbone, weights_path=config.weights_path, pretrained=config.pretrained)
        torch.manual_seed(config.seed)  # after the backbone: the heads start alike, loaded or shared
        self.dim = sum(self.backbone.channels)
        self.adaptor = FeatureAdaptor(self.dim)          # Linear(C, C) per cell = the paper's 1x1 conv
        self.head = SegmentationDetectionModule(self.dim, config.seg_hidden, config.cls_channels,
                                                config.cls_kernel, stop_grad=True, cls_init=config.cls_init)
        side = config.crop_size or config.image_size
        self.resize_shape = (config.image_size, config.image_size)
        self.image_shape = (side, side)
        self.generator: PerlinAnomalyGenerator | None = None
        self.supervised = False
        self.feature_std: float | None = None
        self.sigma: float | None = None
        self.threshold_normal: float | None = None
        self.pixel_threshold_normal: float | None = None
        self.normal_score_spread: float | None = None
        self.normal_pixel_spread: float | None = None
        self.n_train = self.n_holdout = self.n_anomalous_train = 0
        self.history: list[dict] = []
        self.timings: dict[str, float] = {}
        self.to(self.device)

    # ------------------------------------------------------------------ features
    def grid(self) -> tuple[int, int]:
        """``(H, W)``: the feature grid, ``upscale`` x the shallow layer's (stride 8) grid."""
        stride = self.backbone.strides[0]
        return tuple(math.ceil(s / stride) * self.config.upscale for s in self.image_shape)

    @torch.no_grad()
    def extract(self, images: torch.Tensor, batch_size: int = 8, progress: bool = False) -> list[torch.Tensor]:
        """The frozen backbone's layer maps of ``images [N, 3, H, W]``: ``[[N, C_l, h_l, w_l], ...]``
        on the model's device, in ``config.cache_dtype``: what training caches."""
        dtype = getattr(torch, self.config.cache_dtype)
        chunks = []
        for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
            chunks.append([m.to(dtype) for m in self.backbone(images[start:start + batch_size].to(self.device))])
        return [torch.cat(layer) for layer in zip(*chunks)]

    def features(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Layer maps -> ``[B, H, W, C]`` (:func:`upscaled_features`)."""
        return upscaled_features(maps, self.config.upscale, self.config.patch_size)

    # ------------------------------------------------------------------ training
    def fit(self, data, masks: torch.Tensor | None = None, progress: bool = True) -> "SuperSimpleNet":
        """Train; unsupervised unless real defect masks are given.

        ``data``: an MVTec-layout folder (``train/good``, plus ``train/<defect>`` with masks for the
        supervised mode: see the module docstring), a folder of images, or a tensor ``[N, 3, H, W]``
        in ``[0, 1]`` with optional ``masks [N, H, W]`` (a mask with any defect pixel makes its image
        anomalous). ``config.holdout_fraction`` of the *normal* images is held out (by seed) to set
        ``threshold_normal``.
        """
        cfg = self.config
        if isinstance(data, torch.Tensor):
            if data.ndim != 4 or data.shape[1] != 3:
                raise InputError("images", f"expected a tensor [N, 3, H, W], got shape {list(data.shape)}")
            images = data.float()
            masks = torch.zeros(len(images), *images.shape[-2:]) if masks is None else masks.float()
            if masks.shape != (len(images), *images.shape[-2:]):
                raise InputError("masks", f"expected [N, H, W] = {[len(images), *images.shape[-2:]]}, "
                                          f"got {list(masks.shape)}")
            if tuple(images.shape[-2:]) != self.image_shape:
                self.resize_shape = self.image_shape = tuple(images.shape[-2:])
            labels = masks.flatten(1).amax(dim=1).gt(0).long()
        else:
            found = read_training_set(data, cfg.image_size, cfg.crop_size, cfg.supervised)
            images, masks, labels = found["images"], found["masks"], found["labels"]
        normal = (labels == 0).nonzero().flatten().tolist()
        holdout = []
        if cfg.holdout_fraction > 0 and len(normal) >= 2:
            _, holdout = data_lib.split_holdout(normal, cfg.holdout_fraction, cfg.seed)
        held_out = set(holdout)
        train = [i for i in range(len(images)) if i not in held_out]
        start = time.perf_counter()
        bank = self.extract(images[train], progress=progress)
        self.timings["seconds_features"] = time.perf_counter() - start
        held = self.extract(images[holdout]) if holdout else None
        return self.fit_features(bank, masks[train], held, progress)

    def fit_features(self, maps: list[torch.Tensor], masks: torch.Tensor | None = None,
                     holdout: list[torch.Tensor] | None = None, progress: bool = True) -> "SuperSimpleNet":
        """Train on cached layer maps from :meth:`extract` (what :meth:`fit` does after the backbone).

        ``masks [N, H_img, W_img]``: real defect masks of the training images (zeros or ``None``:
        unsupervised); ``holdout``: maps of held-out normal images, which set the thresholds.
        """
        cfg = self.config
        n = len(maps[0])
        grid = tuple(self.features([m[:1] for m in maps]).shape[1:3])
        cells = torch.zeros(n, *grid) if masks is None else downsample_masks(masks, grid)
        labels = cells.flatten(1).amax(dim=1)
        self.supervised = bool(labels.any())
        self.n_train, self.n_anomalous_train = n, int(labels.sum())
        self.n_holdout = 0 if holdout is None else len(holdout[0])
        self.head.stop_grad = (not self.supervised) if cfg.stop_grad is None else cfg.stop_grad
        bank = self._feature_bank(maps)
        with torch.no_grad():  # the noise scale follows the features: their std over all training cells
            sums = torch.zeros(2, dtype=torch.float64)
            for i in range(0, n, 8):
                chunk = (bank[i:i + 8] if bank is not None else self.features([m[i:i + 8] for m in maps])).double()
                sums += torch.stack([chunk.sum(), chunk.pow(2).sum()]).cpu()
            count = n * grid[0] * grid[1] * self.dim
            self.feature_std = math.sqrt(max(sums[1].item() / count - (sums[0].item() / count) ** 2, 0.0))
        self.sigma = noise_sigma(cfg.noise_std, self.feature_std, cfg.noise_scale)
        self.generator = PerlinAnomalyGenerator(self.sigma, cfg.perlin_threshold, cfg.zero_prob)

        start = time.perf_counter()
        self._train(maps, cells.to(self.device), labels.to(self.device), progress, bank)
        self.timings["seconds_train"] = time.perf_counter() - start
        normal = (labels == 0).nonzero().flatten().tolist()
        scored = [self.score_maps([m[normal] for m in maps])] if normal else []   # normal training images
        if holdout is not None:
            from .metrics import threshold_from_normal

            scores, amaps = self.score_maps(holdout)
            scored.append((scores, amaps))
            self.threshold_normal = threshold_from_normal(scores.numpy(), cfg.normal_max_fpr)
            self.pixel_threshold_normal = threshold_from_normal(amaps.flatten().numpy(), cfg.normal_max_fpr)
        if scored:  # display scale of deployed scores (heatmaps.normalised), as SimpleNet's
            self.normal_score_spread = robust_spread(torch.cat([s for s, _ in scored]).numpy())
            self.normal_pixel_spread = robust_spread(torch.cat([a.flatten() for _, a in scored]).numpy())
        return self

    @torch.no_grad()
    def _feature_bank(self, maps: list[torch.Tensor]) -> torch.Tensor | None:
        """The upscaled features of all training images ``[N, H, W, C]`` (``cache_dtype``), when they take
        at most 4x the memory of the layer maps (the CPU default: 2.2x); else ``None`` and every step
        rebuilds its batch's features from the maps (the paper's 2x upscaled Wide-ResNet50: 8x)."""
        n = len(maps[0])
        one = self.features([m[:1] for m in maps])
        if one.numel() > 4 * sum(m[0].numel() for m in maps):
            return None
        dtype = getattr(torch, self.config.cache_dtype)
        return torch.cat([self.features([m[i:i + 8] for m in maps]).to(dtype) for i in range(0, n, 8)])

    def _train(self, maps, cells, labels, progress: bool, bank: torch.Tensor | None = None) -> None:
        cfg = self.config
        n = len(labels)
        batch = min(cfg.batch_size, n)
        per_pass = math.ceil(n / batch)
        total = cfg.steps if cfg.epochs is None else cfg.epochs * per_pass
        # The authors step their schedule once per epoch: milestones fall on whole passes.
        milestones = ([int(f * cfg.epochs) * per_pass for f in cfg.lr_milestones] if cfg.epochs is not None
                      else [int(f * total) for f in cfg.lr_milestones])
        optimizer = torch.optim.AdamW([
            {"params": self.adaptor.parameters(), "lr": cfg.lr_adaptor},              # weight decay 0.01
            {"params": self.head.seg.parameters(), "lr": cfg.lr_seg, "weight_decay": 1e-5},
            {"params": self.head.cls.parameters(), "lr": cfg.lr_cls, "weight_decay": 1e-5},
        ], betas=(0.9, cfg.adam_beta2))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, milestones, cfg.lr_gamma))
        loss_fn = SuperSimpleNetLoss(cfg.margin, cfg.focal_gamma)
        clip = cfg.clip_grad if cfg.clip_grad is not None else (1.0 if self.supervised else None)
        order = torch.Generator().manual_seed(cfg.seed)
        random = (torch.Generator().manual_seed(cfg.seed + 1),
                  torch.Generator(self.device).manual_seed(cfg.seed + 2))
        every = per_pass if cfg.epochs is not None else max(1, math.ceil(total / 20))
        self.train()
        self.history, window, queue = [], [], []
        bar = tqdm(total=total, desc="train steps", disable=not progress)
        for step in range(1, total + 1):
            if not queue:
                queue = list(torch.randperm(n, generator=order).split(batch))
            idx = queue.pop(0).to(self.device)
            features = bank[idx].float() if bank is not None else self.features([m[idx] for m in maps])
            window.append(train_step(self.adaptor, self.generator, self.head, loss_fn, optimizer, features,
                                     cells[idx], labels[idx], cfg.cls_features, clip, random))
            schedule.step()
            if step % every == 0 or step == total:
                record = {key: float(np.mean([s[key] for s in window])) for key in window[0]}
                self.history.append({"step": step, "epoch": step / per_pass, "lr_factor":
                                     lr_factor(step - 1, milestones, cfg.lr_gamma), **record})
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                window = []
            bar.update()
        bar.close()
        self.eval()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def heads(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer maps -> (anomaly logits ``[B, H, W]``, image logits ``[B]``)."""
        features = self.features(maps)
        adapted = self.adaptor(features)
        return self.head(adapted, features if self.config.cls_features == "backbone" else None)

    @torch.no_grad()
    def score_maps(self, maps: list[torch.Tensor], size: tuple[int, int] | None = None,
                   batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` on cached layer maps: image scores ``[B]`` (float64, the sigmoid of the
        classification head, as the paper) and anomaly maps ``[B, H, W]`` (the segmentation logits
        upsampled to ``size`` and smoothed with sigma ``smoothing_sigma``), on the CPU."""
        self.eval()
        size = size or self.image_shape
        scores, amaps = [], []
        for start in range(0, len(maps[0]), batch_size):
            anomaly_map, logit = self.heads([m[start:start + batch_size] for m in maps])
            # float64: a float32 sigmoid rounds every logit above ~17 to exactly 1 (ties)
            scores.append(torch.sigmoid(logit.double()).cpu())
            amaps.append(anomaly_maps(anomaly_map.float(), size, self.config.smoothing_sigma).cpu())
        return torch.cat(scores), torch.cat(amaps)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """``images [B, 3, H, W]`` in ``[0, 1]`` -> image scores ``[B]`` (probability of a defect) and
        anomaly maps ``[B, H, W]`` (on the CPU). Higher means more anomalous."""
        if self.sigma is None:
            raise InputError("model", "is not trained yet: call fit() first")
        self.eval()
        scores, amaps = [], []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            s, m = self.score_maps(self.extract(batch, batch_size), tuple(batch.shape[-2:]), batch_size)
            scores.append(s)
            amaps.append(m)
        return torch.cat(scores), torch.cat(amaps)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trained adaptor and heads, configuration and thresholds (not the frozen backbone),
        atomically. The file says ``"model": "supersimplenet"``, which :func:`simplenet_edu.models.load_model`
        reads to pick the class."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": MODEL_KIND,
            "config": self.config.to_dict(),
            "adaptor": self.adaptor.state_dict(), "head": self.head.state_dict(),
            "state": {"feature_std": self.feature_std, "sigma": self.sigma, "supervised": self.supervised,
                      "stop_grad": self.head.stop_grad, "threshold_normal": self.threshold_normal,
                      "pixel_threshold_normal": self.pixel_threshold_normal,
                      "normal_score_spread": self.normal_score_spread, "normal_pixel_spread": self.normal_pixel_spread,
                      "n_train": self.n_train,
                      "n_holdout": self.n_holdout, "n_anomalous_train": self.n_anomalous_train,
                      "resize_shape": list(self.resize_shape), "image_shape": list(self.image_shape),
                      "timings": self.timings},
            "history": self.history,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> "SuperSimpleNet":
        """Load a checkpoint written by :meth:`save` (a SimpleNet file gets a one-line error)."""
        from .models import read_checkpoint

        payload = read_checkpoint(path)
        if payload.get("model", "simplenet") != MODEL_KIND:
            raise InputError(path, f"is a {payload.get('model', 'simplenet')} checkpoint, not a SuperSimpleNet one: "
                                   "load it with SimpleNet.load or simplenet_edu.models.load_model")
        config = SuperSimpleNetConfig.from_dict(payload["config"])
        if device is not None:
            config.device = device
        model = cls(config)
        model.adaptor.load_state_dict(payload["adaptor"])
        model.head.load_state_dict(payload["head"])
        state = dict(payload["state"])
        model.head.stop_grad = state.pop("stop_grad")
        for key, value in state.items():
            setattr(model, key, tuple(value) if key in ("resize_shape", "image_shape") else value)
        if model.sigma is not None:
            model.generator = PerlinAnomalyGenerator(model.sigma, config.perlin_threshold, config.zero_prob)
        model.history = list(payload.get("history", []))
        model.eval()
        return model

"""SimpleNet, the whole model: configuration, training step, fit, predict, save and load.

Read top to bottom, this file is the method:

1. a frozen backbone and local aggregation turn each image into patch features ``[B, h*w, D]``
   (``features.py``, run once per training image and cached);
2. the feature adaptor re-mixes them (``adapter.py``; the CPU default leaves them as they are);
3. Gaussian noise makes anomalous copies (``noise.py``);
4. the discriminator learns to tell them apart with the paper's truncated L1 loss, or BCE in the CPU
   default (``discriminator.py``);
5. at test time ``-D(adapted feature)`` scores each patch; the image score is the maximum, the
   anomaly map is the upsampled, smoothed score grid (``localization.py``).

Each of those parts can be swapped for a variant from the seed document or SuperSimpleNet
(``SimpleNetConfig(generator="perlin")``...; the list is in ``variants.py``). ``SimpleNetConfig.paper()``
uses the paper's choice of every part; the CPU default ``SimpleNetConfig()`` differs in two, measured
on the development suite (see the class docstring).
"""

from __future__ import annotations

import copy
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
from . import variants
from .backbones import load_backbone
from .adapter import FeatureAdaptor, IdentityAdaptor
from .discriminator import Discriminator, TruncatedL1Loss
from .errors import InputError
from .features import FeatureExtractor, LocalAggregation, pool_to_dim, resize_to_grid
from .localization import anomaly_maps
from .noise import noise_sigma
from .validation import ValidationSet, painted_validation_set, validation_scores

CHECKPOINT_FORMAT = "simplenet-edu"
CHECKPOINT_VERSION = 1


@dataclass
class SimpleNetConfig:
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
    keep_aspect: bool = False             # short side image_size, long side from the training images' aspect
    patch_size: int = 3                   # local aggregation neighbourhood
    pretrain_embed_dim: int = 384         # each layer pooled to this
    target_embed_dim: int = 384           # patch feature dimension D
    # Anomalous feature generator
    noise_std: float = 0.75
    noise_scale: str = "relative"         # "relative": sigma = noise_std * std of training features
    mix_noise: int = 1
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
    holdout_fraction: float = 0.1         # of train/good, held out to set the normal threshold
    normal_max_fpr: float = 0.01          # the normal threshold flags at most this share of them
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
        (8 x 1296 patches). Needs a GPU to be practical."""
        values = dict(
            backbone="wide_resnet50_2", image_size=329, crop_size=288,
            pretrain_embed_dim=1536, target_embed_dim=1536,
            noise_std=0.015, noise_scale="absolute", dsc_hidden=1024, adaptor="linear", loss="truncated_l1",
            epochs=160, batch_size=8 * 36 * 36, lr_adaptor=1e-4, lr_discriminator=2e-4,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def quick(cls, **overrides: Any) -> "SimpleNetConfig":
        """Seconds on a CPU: the default's recipe on 128 px images (a 16 x 16 patch grid, 4x fewer
        patches than the default) in 300 steps of 256 patches. For CI and first experiments; too coarse
        for small defects."""
        values = dict(image_size=128, steps=300, batch_size=256)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SimpleNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        for key in ("image_size", "crop_size"):  # a (height, width) pair comes back from JSON as a list
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


def robust_spread(values: np.ndarray) -> float:
    """``1.4826 * median(|v - median(v)|)``: the standard deviation of normal data, robust to a few
    odd values (one strange training image does not widen it)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when there is a GPU, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda", "no CUDA GPU is available on this machine")
    return torch.device(device)


def train_step(adaptor, generator, discriminator, optimizers, features: torch.Tensor, loss) -> dict:
    """One SimpleNet update on a mini-batch of frozen patch features: ``[N, D]`` shuffled patches, or
    ``[B, h, w, D]`` grids for the variants that need neighbours.

    Adapt, make fakes, score both with one discriminator call (so BatchNorm sees both), loss
    (``loss``: a loss object from ``discriminator.py``, or the paper's truncated L1 margin as a number),
    one backward pass through discriminator, adaptor (and a learned generator).
    """
    loss_fn = loss if callable(loss) else TruncatedL1Loss(loss)
    normal = adaptor(features)
    fake = generator(normal, discriminator=discriminator)
    scores = discriminator(torch.cat([normal, fake]))
    normal_scores, fake_scores = scores[: len(normal)].flatten(), scores[len(normal):]
    # A fake the generator left unchanged (outside a Perlin mask) is a normal feature.
    changed = (fake != normal).any(dim=-1)
    normal_scores = torch.cat([normal_scores, fake_scores[~changed]])
    fake_scores = fake_scores[changed]
    loss = loss_fn(normal_scores, fake_scores)

    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()

    with torch.no_grad():
        p_normal, p_fake = loss_fn.accuracy(normal_scores, fake_scores)
        # adapted_std: the scale of the adapted features, against which the fixed noise sigma acts.
        return {"loss": loss.item(), "d_normal": normal_scores.mean().item(),
                "d_fake": fake_scores.mean().item(), "p_normal": p_normal, "p_fake": p_fake,
                "adapted_std": normal.std().item()}


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there are none (without numpy's empty-slice warning)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def make_optimizers(config: SimpleNetConfig, adaptor, discriminator, generator=None) -> list:
    """The official optimisers: AdamW (weight decay 0.01) for the adaptor, Adam (weight decay 1e-5)
    for the discriminator and for a learned generator; parts without parameters get none.
    ``fused`` runs each update as one kernel (a measurable share of a CPU training step)."""
    heads = [(adaptor, torch.optim.AdamW, config.lr_adaptor, 0.01),
             (discriminator, torch.optim.Adam, config.lr_discriminator, 1e-5),
             (generator, torch.optim.Adam, config.lr_discriminator, 1e-5)]
    return [make(part.parameters(), lr=lr, weight_decay=decay, fused=True)
            for part, make, lr, decay in heads if part is not None and any(True for _ in part.parameters())]


@torch.no_grad()
def layer_features(extractor: FeatureExtractor, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Local aggregation stopped before the layers are combined: ``[B, h*w, L * pretrain_embed_dim]``.

    What the ``conv`` adaptor reads; :func:`aggregate` finishes the paper's aggregation from it.
    """
    stacked, grid = extractor.aggregation.pooled_layers(extractor.backbone(images))
    return stacked.view(len(images), grid[0] * grid[1], -1), grid


def aggregate(layers: torch.Tensor, dim: int) -> torch.Tensor:
    """``[..., L * Dp] -> [..., dim]``: the last step of local aggregation (pool the stacked layers)."""
    return pool_to_dim(layers.reshape(-1, layers.shape[-1]), dim).view(*layers.shape[:-1], dim)


def training_steps(config: SimpleNetConfig, steps_per_pass: int) -> int:
    """The run's length in optimiser steps: ``config.steps``, or ``config.epochs`` whole passes of
    ``steps_per_pass`` steps when the budget is given in passes (the paper's schedule)."""
    return config.steps if config.epochs is None else config.epochs * steps_per_pass


def make_schedule(optimizer: torch.optim.Optimizer, kind: str, total_steps: int):
    """The learning rate over the run: ``constant``, or ``cosine`` (half a cosine from the set rate
    down to zero at ``total_steps``). Call ``.step()`` after every optimiser step."""
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    raise InputError("lr_schedule", f"must be 'constant' or 'cosine', got {kind!r}")


def endless(batches, total: int):
    """``total`` mini-batches from ``batches``, passing over it again (freshly shuffled) as often as
    needed: the budget is counted in steps, not passes."""
    count = 0
    while count < total:
        for batch in batches:
            yield batch
            count += 1
            if count == total:
                return


class PatchBatches:
    """Mini-batches of ``batch_size`` patch features drawn at random from all cached images: ``[n, D]``
    (the paper)."""

    def __init__(self, bank: torch.Tensor, batch_size: int, generator: torch.Generator):
        self.bank, self.batch_size, self.generator = bank.flatten(0, 1), batch_size, generator

    def __len__(self) -> int:
        """Mini-batches in one pass (a last batch of one patch is dropped: BatchNorm needs two)."""
        full, rest = divmod(len(self.bank), self.batch_size)
        return full + (rest > 1)

    def __iter__(self):
        order = torch.randperm(len(self.bank), generator=self.generator).to(self.bank.device)
        for idx in order.split(self.batch_size):
            if len(idx) > 1:  # BatchNorm needs two samples
                yield self.bank[idx].float()


class GridBatches:
    """Mini-batches that keep the feature grid, for variants that need neighbours or whole images
    (Perlin masks, mixup across images, conv discriminator): ``[k, c, c, D]``, ``k >= 2`` windows of
    ``c x c`` cells, so that ``k * c * c`` is about ``batch_size``.

    Each image's grid is cut into ``c x c`` tiles (the last row and column of tiles aligned to the far
    edge), and one pass visits every tile of every image once: round after round, each image gives one
    of its tiles (in a fresh random order) and the images come in a fresh random order, so the ``k``
    windows of a step are ``k`` different images (except in a step that straddles two rounds). Every
    cell is then seen equally often, as with shuffled patches. (One random window shared by the ``k``
    images, as before, visited the border cells of a 32 x 32 grid 0.1 times per pass and the central
    ones 2.2 times, left 46 % of the cells unseen in a pass, and its BatchNorm statistics ended twice as
    far from the test-time ones: ``benchmarks/grid_path.py``, ``results/grid_path_hazelnut.md``.)
    """

    def __init__(self, bank: torch.Tensor, grid: tuple[int, int], batch_size: int, generator: torch.Generator):
        self.bank = bank.view(len(bank), *grid, bank.shape[-1])                       # [N, h, w, D]
        self.generator = generator
        n, h, w = self.bank.shape[:3]
        self.images = max(2, min(n, batch_size // (h * w)))
        self.side = c = max(2, min(h, w, math.isqrt(max(1, batch_size // self.images))))
        self.corners = [(top, left) for top in sorted({*range(0, h - c + 1, c), h - c})
                        for left in sorted({*range(0, w - c + 1, c), w - c})]
        self.steps = max(1, math.ceil(n * len(self.corners) / self.images))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        n, c, k = len(self.bank), self.side, self.images
        tiles = [torch.randperm(len(self.corners), generator=self.generator) for _ in range(n)]   # per image
        order = [(i, int(tiles[i][r])) for r in range(len(self.corners))
                 for i in torch.randperm(n, generator=self.generator).tolist()]
        for step in range(self.steps):
            chosen = [order[(step * k + j) % len(order)] for j in range(k)]
            yield torch.stack([self.bank[i, top:top + c, left:left + c]
                               for i, (top, left) in ((i, self.corners[t]) for i, t in chosen)]).float()


class FoldedScorer:
    """The trained paper model at inference, with its linear stages folded into one convolution.

    Local aggregation, the adaptor, the discriminator's first linear layer and its BatchNorm (in
    evaluation mode an affine map) are all linear, and so is their chain: for each backbone layer one
    3x3 convolution ``[H, C_l, 3, 3]`` and one bias give the discriminator's hidden activations
    directly. Only the LeakyReLU and the last ``Linear(H, 1)`` remain. Same scores as
    ``-D(adaptor(aggregate(maps)))`` up to rounding, without the ``[B*h*w, D]`` feature matrix.
    ``of(model)`` returns ``None`` for the variants that do not fold (conv adaptor or discriminator).
    """

    def __init__(self, kernels: list[torch.Tensor], bias: torch.Tensor, head: torch.Tensor, slope: float,
                 padding: int):
        self.kernels, self.bias, self.head, self.slope, self.padding = kernels, bias, head, slope, padding

    @classmethod
    @torch.no_grad()
    def of(cls, model: "SimpleNet") -> "FoldedScorer | None":
        adaptor, disc = model.adaptor, model.discriminator
        if not isinstance(adaptor, (FeatureAdaptor, IdentityAdaptor)) or type(disc) is not Discriminator \
                or len(disc.body) != 3 or disc.training:
            return None
        linear, norm, act = disc.body
        dim = model.config.target_embed_dim
        if isinstance(adaptor, FeatureAdaptor):
            a_weight, a_bias = adaptor.linear.weight, adaptor.linear.bias
        else:
            a_weight = torch.eye(dim, device=model.device)
            a_bias = torch.zeros(dim, device=model.device)
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)                        # BatchNorm, eval
        weight = scale[:, None] * (linear.weight @ a_weight)                                   # [H, D]
        bias = scale * (linear.weight @ a_bias + linear.bias - norm.running_mean) + norm.bias  # [H]
        aggregation = model.extractor.aggregation
        kernels = [(weight @ k.to(weight).flatten(1)).view(len(weight), *k.shape[1:])
                   for k in aggregation.kernels(model.extractor.backbone.channels)]
        return cls(kernels, bias, disc.tail.weight[0], act.negative_slope,
                   (aggregation.patch_size - 1) // 2)

    def __call__(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Backbone maps ``[[B, C_l, h_l, w_l], ...]`` -> patch anomaly scores ``[B, h, w]``."""
        grid = tuple(maps[0].shape[-2:])
        hidden = self.bias.view(1, -1, 1, 1).to(maps[0])
        for fmap, kernel in zip(maps, self.kernels):
            hidden = hidden + resize_to_grid(F.conv2d(fmap, kernel.to(fmap), padding=self.padding), grid)
        hidden = F.leaky_relu(hidden, self.slope)                                              # [B, H, h, w]
        return -torch.einsum("bhyx,h->byx", hidden, self.head.to(hidden)).float()


class SimpleNet(torch.nn.Module):
    """SimpleNet with a scikit-learn-like interface.

    >>> model = SimpleNet(SimpleNetConfig.quick()).fit("data/demo/brick")   # doctest: +SKIP
    >>> scores, maps = model.predict(images)                                 # doctest: +SKIP

    After ``fit``: ``history`` (training curves: about twenty rows over the run, each with its ``step``), ``feature_std``, ``sigma`` (the absolute
    noise scale used), ``threshold_normal`` (image threshold from held-out normal images),
    ``pixel_threshold_normal``, ``normal_score_spread`` and ``normal_pixel_spread`` (how widely the
    scores of normal images and pixels vary: :func:`robust_spread`) and ``timings``. ``resize_shape``
    and ``image_shape`` (both ``(height, width)``) are the resize and the model's input: load images for this model with
    ``data.load_image(path, model.resize_shape, model.image_shape)``.
    """

    def __init__(self, config: SimpleNetConfig | None = None, backbone: torch.nn.Module | None = None):
        """``backbone``: one already loaded for this configuration, to share between models (the
        ablation); by default it is loaded from ``config.backbone``."""
        super().__init__()
        self.config = config = config or SimpleNetConfig()
        variants.check(config)
        if config.keep_aspect and not isinstance(config.image_size, int):
            raise InputError("keep_aspect", f"needs one image_size (the short side), got {config.image_size!r}")
        # (height, width) of the resized image and of the model's input (its centre crop); fixed by
        # fit when keep_aspect is on, and saved with the model.
        self.resize_shape, self.image_shape = data_lib.input_shapes(config.image_size, config.crop_size)
        self.device = resolve_device(config.device)
        if backbone is None:
            backbone = load_backbone(config.backbone, weights_path=config.weights_path, pretrained=config.pretrained)
        torch.manual_seed(config.seed)  # after the backbone: the heads start alike, loaded or shared
        aggregation = LocalAggregation(config.pretrain_embed_dim, config.target_embed_dim, config.patch_size)
        self.extractor = FeatureExtractor(backbone, aggregation)
        self.adaptor = variants.make_adaptor(config, n_layers=len(backbone.channels))
        self.discriminator = variants.make_discriminator(config)
        self.image_score = variants.make_image_score(config)
        self.generator = None                 # built by fit, once the noise scale is known
        self.feature_std: float | None = None
        self.sigma: float | None = None
        self.threshold_normal: float | None = None
        self.pixel_threshold_normal: float | None = None
        self.normal_score_spread: float | None = None
        self.normal_pixel_spread: float | None = None
        self.n_train = self.n_holdout = 0
        self.history: list[dict] = []
        self.selected_step: int | None = None   # the step whose heads were kept (the last, by default)
        self.timings: dict[str, float] = {}
        self.to(self.device)

    # ------------------------------------------------------------------ features
    def extract(self, images: torch.Tensor, batch_size: int = 8, progress: bool = False,
                layers: bool = False) -> torch.Tensor:
        """Patch features of ``images [N, 3, H, W]``: ``[N, h*w, D]`` on the model's device
        (``layers=True``: the per-layer features ``[N, h*w, L * pretrain_embed_dim]`` of
        :func:`layer_features`)."""
        chunks = []
        for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
            batch = images[start:start + batch_size].to(self.device)
            chunks.append(layer_features(self.extractor, batch)[0] if layers else self.extractor(batch)[0])
        return torch.cat(chunks)

    def grid(self) -> tuple[int, int]:
        """``(h, w)``: the patch grid of one image (the shallowest layer's stride, 8)."""
        h, w = self.image_shape
        stride = self.extractor.backbone.strides[0]
        return math.ceil(h / stride), math.ceil(w / stride)

    # ------------------------------------------------------------------ training
    def fit(self, data, progress: bool = True) -> "SimpleNet":
        """Train on normal images only.

        ``data``: an MVTec-layout folder (its ``train/good`` is used), a folder of images, a
        ``Dataset`` of dicts with ``"image"``, or a tensor ``[N, 3, H, W]`` in ``[0, 1]``.
        ``config.holdout_fraction`` of the images is held out (by seed) to set ``threshold_normal``.
        """
        images = self._training_images(data)
        train_images, holdout_images = self._split_holdout(images)
        self.n_train, self.n_holdout = len(train_images), 0 if holdout_images is None else len(holdout_images)

        start = time.perf_counter()
        layers = self.adaptor.reads_layers
        bank = self.extract(train_images, progress=progress, layers=layers)        # [N, h*w, F] cached
        self.timings["seconds_features"] = time.perf_counter() - start
        holdout = None if holdout_images is None else self.extract(holdout_images, layers=layers)
        validation = None
        if holdout_images is not None and self.config.val_checkpoints > 0:
            painted = painted_validation_set(holdout_images[: self.config.val_images], self.config.seed)
            validation = (painted, self.extract(painted.images, layers=layers))
        return self.fit_features(bank, self.grid(), holdout, progress, validation)

    def fit_features(self, bank: torch.Tensor, grid: tuple[int, int], holdout: torch.Tensor | None = None,
                     progress: bool = True, validation: "tuple[ValidationSet, torch.Tensor] | None" = None,
                     ) -> "SimpleNet":
        """Train the heads on precomputed features (what :meth:`fit` does after the backbone).

        ``bank [N, h*w, F]``: the training images' features from :meth:`extract` (``F = D``; the
        ``conv`` adaptor reads ``layers=True`` features), on the ``grid = (h, w)``; ``holdout``: the
        same for held-out normal images, which set ``threshold_normal``; ``validation``: a
        :class:`~simplenet_edu.validation.ValidationSet` and its features, scored at
        ``config.val_checkpoints`` points of the run. Lets an ablation extract once and train many heads.
        """
        cfg = self.config
        start = time.perf_counter()
        # The noise scale follows the patch features, whichever form the adaptor reads.
        self.feature_std = aggregate(bank, cfg.target_embed_dim).std().item() if self.adaptor.reads_layers \
            else bank.std().item()
        bank = bank.to(self.device, getattr(torch, cfg.cache_dtype))
        self.sigma = noise_sigma(cfg.noise_std, self.feature_std, cfg.noise_scale)
        self.generator = variants.make_generator(cfg, self.sigma).to(self.device)
        self.timings.setdefault("seconds_features", time.perf_counter() - start)

        start = time.perf_counter()
        self._train(bank, grid, progress, validation)
        self.timings["seconds_train"] = time.perf_counter() - start

        scored = [self.score_features(bank, grid)]                 # training images: (scores [N], maps)
        if holdout is not None:
            scores, maps = self.score_features(holdout, grid)
            scored.append((scores, maps))
            from .metrics import threshold_from_normal

            self.threshold_normal = threshold_from_normal(scores.numpy(), cfg.normal_max_fpr)
            self.pixel_threshold_normal = threshold_from_normal(maps.flatten().numpy(), cfg.normal_max_fpr)
        # How widely normal images and pixels vary, over every normal image fitted on (training and
        # held-out). With the thresholds they scale the normalised score of deployed predictions
        # (heatmaps.normalised): a display scale, never a decision, and never from test images.
        self.normal_score_spread = robust_spread(torch.cat([s for s, _ in scored]).numpy())
        self.normal_pixel_spread = robust_spread(torch.cat([m.flatten() for _, m in scored]).numpy())
        return self

    def _train(self, bank: torch.Tensor, grid: tuple[int, int], progress: bool, validation=None) -> None:
        """``config.steps`` optimiser steps (or ``config.epochs`` passes) over the cached ``bank``;
        the painted ``validation`` set (if any) is scored at ``config.val_checkpoints`` points."""
        cfg = self.config
        optimizers = make_optimizers(cfg, self.adaptor, self.discriminator, self.generator)
        loss_fn = variants.make_loss(cfg)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        needs_grid = self.generator.needs_grid or self.discriminator.needs_grid
        batches = GridBatches(bank, grid, cfg.batch_size, shuffle) if needs_grid \
            else PatchBatches(bank, cfg.batch_size, shuffle)
        total = training_steps(cfg, len(batches))
        schedulers = [make_schedule(opt, cfg.lr_schedule, total) for opt in optimizers]
        # About twenty rows of history (one per pass when the budget is given in passes); validation
        # checkpoints fall on rows, evenly spread, the last one at the end.
        every = len(batches) if cfg.epochs is not None else max(1, math.ceil(total / 20))
        checkpoints = set() if validation is None else \
            {min(total, every * math.ceil(total * i / cfg.val_checkpoints / every))
             for i in range(1, cfg.val_checkpoints + 1)}
        best = None                                                    # (val_score, step, state)
        self.train()
        self.history, window = [], []
        bar = tqdm(total=total, desc="train steps", disable=not progress)
        for step, batch in enumerate(endless(batches, total), start=1):
            window.append(train_step(self.adaptor, self.generator, self.discriminator, optimizers, batch, loss_fn))
            for schedule in schedulers:
                schedule.step()
            if step % every == 0 or step == total or step in checkpoints:
                # nanmean: a step whose Perlin masks were all empty has no fakes (d_fake is NaN).
                record = {key: _nanmean([s[key] for s in window]) for key in window[0]}
                if step in checkpoints:
                    record.update(self._validate(validation, grid))
                    if best is None or record["val_score"] >= best[0]:
                        best = (record["val_score"], step, self._head_state())
                self.history.append({"step": step, "epoch": step / len(batches), **record})
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                window = []
            bar.update()
        bar.close()
        self.selected_step = total
        if cfg.select == "validation" and best is not None:
            self.selected_step = best[1]
            self._load_head_state(best[2])
        self.eval()

    def _validate(self, validation, grid: tuple[int, int]) -> dict:
        """Scores on the painted validation set (``validation.py``), without disturbing training."""
        painted, features = validation
        scores, maps = self.score_features(features, grid)
        self.train()
        return validation_scores(painted.labels, painted.masks, scores.numpy(), maps.numpy())

    def _head_state(self) -> dict:
        parts = {"adaptor": self.adaptor, "discriminator": self.discriminator, "generator": self.generator}
        return {name: copy.deepcopy(part.state_dict()) for name, part in parts.items()}

    def _load_head_state(self, state: dict) -> None:
        for name, values in state.items():
            getattr(self, name).load_state_dict(values)

    def _training_images(self, data) -> torch.Tensor:
        """``[N, 3, H, W]``. A folder is checked whole first (:func:`~simplenet_edu.data.check_dataset`:
        every problem reported before any model work); with ``keep_aspect`` its training images' median
        aspect ratio fixes ``resize_shape`` and ``image_shape``. Tensors are the model's input as they are."""
        cfg = self.config
        if isinstance(data, (str, Path)):
            check = data_lib.check_dataset(data, image_size=cfg.image_size, crop_size=cfg.crop_size,
                                           backbone=cfg.backbone)
            if cfg.keep_aspect:
                self.resize_shape, self.image_shape = data_lib.aspect_shapes(
                    cfg.image_size, cfg.crop_size, check.aspect(), multiple=max(self.extractor.backbone.strides))
            return torch.stack([data_lib.load_image(p, self.resize_shape, self.image_shape) for p in check.train])
        images = data if isinstance(data, torch.Tensor) else torch.stack([item["image"] for item in data])
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError("images", f"expected a tensor [N, 3, H, W], got shape {list(images.shape)}")
        if tuple(images.shape[-2:]) != self.image_shape:  # the grid follows the images given
            self.resize_shape = self.image_shape = tuple(images.shape[-2:])
        return images.float()

    def _split_holdout(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``config.holdout_fraction`` of the images, chosen by seed, kept aside for the normal threshold."""
        if self.config.holdout_fraction <= 0 or len(images) < 2:
            return images, None
        train, holdout = data_lib.split_holdout(range(len(images)), self.config.holdout_fraction, self.config.seed)
        return images[train], images[holdout]

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def patch_scores(self, images: torch.Tensor, folded: "FoldedScorer | None" = None) -> torch.Tensor:
        """Anomaly score of every patch: ``[B, 3, H, W] -> [B, h, w]`` (``-D(adaptor(feature))``).

        ``folded``: a :class:`FoldedScorer` of this trained model, the same numbers faster."""
        use_amp = self.config.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            images = images.to(self.device)
            if folded is not None:
                return folded(self.extractor.backbone(images))
            features, grid = layer_features(self.extractor, images) if self.adaptor.reads_layers \
                else self.extractor(images)
            return self.feature_scores(features, grid)

    @torch.no_grad()
    def feature_scores(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch anomaly scores from precomputed features: ``[B, h*w, F] -> [B, h, w]``."""
        grids = features.to(self.device).float().view(len(features), *grid, features.shape[-1])
        return -self.discriminator(self.adaptor(grids)).float()

    @torch.no_grad()
    def score_features(self, features: torch.Tensor, grid: tuple[int, int], size: tuple[int, int] | None = None,
                       batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` on precomputed features ``[B, h*w, F]``: image scores ``[B]`` and anomaly
        maps ``[B, H, W]`` (``size = (H, W)``, default the model's input size), on the CPU."""
        self.eval()
        size = size or self.image_shape
        all_scores, all_maps = [], []
        for chunk in features.split(batch_size):
            scores = self.feature_scores(chunk, grid)
            all_scores.append(self.image_score(scores.flatten(1)).cpu())
            all_maps.append(anomaly_maps(scores, size, self.config.smoothing_sigma).cpu())
        return torch.cat(all_scores), torch.cat(all_maps)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """``images [B, 3, H, W]`` in ``[0, 1]`` -> image scores ``[B]`` and anomaly maps ``[B, H, W]``
        (on the CPU). Higher means more anomalous."""
        if self.sigma is None:
            raise InputError("model", "is not trained yet: call fit() first")
        self.eval()
        folded = FoldedScorer.of(self)
        all_scores, all_maps = [], []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            grid = self.patch_scores(batch, folded)
            all_scores.append(self.image_score(grid.flatten(1)).cpu())
            all_maps.append(anomaly_maps(grid, tuple(batch.shape[-2:]), self.config.smoothing_sigma).cpu())
        return torch.cat(all_scores), torch.cat(all_maps)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trained heads, configuration and thresholds (not the frozen backbone, which is
        rebuilt from its source). Written atomically: a temporary file, then a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "adaptor": self.adaptor.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator": None if self.generator is None else self.generator.state_dict(),
            "state": {
                "feature_std": self.feature_std, "sigma": self.sigma,
                "threshold_normal": self.threshold_normal,
                "pixel_threshold_normal": self.pixel_threshold_normal,
                "normal_score_spread": self.normal_score_spread, "normal_pixel_spread": self.normal_pixel_spread,
                "n_train": self.n_train, "n_holdout": self.n_holdout, "timings": self.timings,
                "selected_step": self.selected_step,
                "resize_shape": self.resize_shape, "image_shape": self.image_shape,
            },
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
    def load(cls, path: str | os.PathLike, device: str | None = None) -> "SimpleNet":
        """Load a checkpoint written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "checkpoint not found")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unpickling failure means: not a checkpoint of ours
            raise InputError(path, f"not a simplenet-edu checkpoint ({type(exc).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise InputError(path, "not a simplenet-edu checkpoint")
        if payload.get("version") != CHECKPOINT_VERSION:
            raise InputError(path, f"checkpoint version {payload.get('version')} is not supported "
                                   f"(this simplenet-edu reads version {CHECKPOINT_VERSION})")
        if payload.get("model", "simplenet") != "simplenet":  # the kind: only SuperSimpleNet files carry it
            raise InputError(path, f"is a {payload['model']} checkpoint, not a SimpleNet one: load it with "
                                   "simplenet_edu.models.load_model (or SuperSimpleNet.load)")
        config = SimpleNetConfig.from_dict(payload["config"])
        if device is not None:
            config.device = device
        model = cls(config)
        model.adaptor.load_state_dict(payload["adaptor"])
        model.discriminator.load_state_dict(payload["discriminator"])
        for key, value in payload["state"].items():
            setattr(model, key, tuple(value) if key in ("resize_shape", "image_shape") else value)
        if payload.get("generator") is not None and model.sigma is not None:
            model.generator = variants.make_generator(config, model.sigma).to(model.device)
            model.generator.load_state_dict(payload["generator"])
        model.history = list(payload.get("history", []))
        model.eval()
        return model

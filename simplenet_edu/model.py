"""SimpleNet, the whole model: configuration, training step, fit, predict, save and load.

Read top to bottom, this file is the method:

1. a frozen backbone and local aggregation turn each image into patch features ``[B, h*w, D]``
   (``features.py``, run once per training image and cached);
2. the feature adaptor re-mixes them (``adapter.py``);
3. Gaussian noise makes anomalous copies (``noise.py``);
4. the discriminator learns to tell them apart with the truncated L1 loss (``discriminator.py``);
5. at test time ``-D(adapted feature)`` scores each patch; the image score is the maximum, the
   anomaly map is the upsampled, smoothed score grid (``localization.py``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data as data_lib
from .adapter import FeatureAdaptor
from .backbones import load_backbone
from .discriminator import Discriminator, truncated_l1_loss
from .errors import InputError
from .features import FeatureExtractor, LocalAggregation
from .localization import anomaly_maps
from .noise import GaussianNoise, noise_sigma

CHECKPOINT_FORMAT = "simplenet-edu"
CHECKPOINT_VERSION = 1


@dataclass
class SimpleNetConfig:
    """Every setting of a SimpleNet run. ``SimpleNetConfig()`` is the CPU default;
    ``SimpleNetConfig.paper()`` the paper's configuration; ``SimpleNetConfig.quick()`` a tiny one
    for tests and notebooks in CI."""

    # Input and frozen features
    backbone: str = "efficientnet_lite0"
    weights_path: str | None = None
    pretrained: bool = True
    image_size: int = 256                 # images are resized to image_size x image_size ...
    crop_size: int | None = None          # ... then centre-cropped to crop_size (paper: 329 -> 288)
    patch_size: int = 3                   # local aggregation neighbourhood
    pretrain_embed_dim: int = 384         # each layer pooled to this
    target_embed_dim: int = 384           # patch feature dimension D
    # Anomalous feature generator
    noise_std: float = 0.15
    noise_scale: str = "relative"         # "relative": sigma = noise_std * std of training features
    mix_noise: int = 1
    # Discriminator and loss
    dsc_hidden: int = 384
    dsc_layers: int = 2
    dsc_margin: float = 0.5
    # Training
    epochs: int = 6                       # passes over all cached training patches
    batch_size: int = 512                 # patch features per optimisation step
    lr_adaptor: float = 5e-4              # AdamW, weight decay 0.01 (paper: 1e-4)
    lr_discriminator: float = 1e-3        # Adam, weight decay 1e-5 (paper: 2e-4)
    # Scoring
    smoothing_sigma: float = 4.0
    holdout_fraction: float = 0.1         # of train/good, held out to set the normal threshold
    normal_max_fpr: float = 0.01          # the normal threshold flags at most this share of them
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
            noise_std=0.015, noise_scale="absolute", dsc_hidden=1024,
            epochs=160, batch_size=8 * 36 * 36, lr_adaptor=1e-4, lr_discriminator=2e-4,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def quick(cls, **overrides: Any) -> "SimpleNetConfig":
        """A few seconds on a CPU: 128 px images, fewer passes. For CI and first experiments."""
        values = dict(image_size=128, epochs=8, batch_size=256)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SimpleNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when there is a GPU, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda", "no CUDA GPU is available on this machine")
    return torch.device(device)


def train_step(adaptor, generator, discriminator, optimizers, features: torch.Tensor, margin: float) -> dict:
    """One SimpleNet update on a mini-batch of frozen patch features ``[N, D]``.

    Adapt, add noise, score both with one discriminator call (so BatchNorm sees both), truncated L1,
    one backward pass through discriminator and adaptor.
    """
    normal = adaptor(features)
    fake = generator(normal)
    scores = discriminator(torch.cat([normal, fake]))
    normal_scores, fake_scores = scores[: len(normal)], scores[len(normal):]
    loss = truncated_l1_loss(normal_scores, fake_scores, margin)

    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()

    with torch.no_grad():
        return {
            "loss": loss.item(),
            "d_normal": normal_scores.mean().item(),
            "d_fake": fake_scores.mean().item(),
            "p_normal": (normal_scores >= margin).float().mean().item(),
            "p_fake": (fake_scores <= -margin).float().mean().item(),
        }


class SimpleNet(torch.nn.Module):
    """SimpleNet with a scikit-learn-like interface.

    >>> model = SimpleNet(SimpleNetConfig.quick()).fit("data/demo/brick")   # doctest: +SKIP
    >>> scores, maps = model.predict(images)                                 # doctest: +SKIP

    After ``fit``: ``history`` (per-epoch training curves), ``feature_std``, ``sigma`` (the absolute
    noise scale used), ``threshold_normal`` (image threshold from held-out normal images),
    ``pixel_threshold_normal`` and ``timings``.
    """

    def __init__(self, config: SimpleNetConfig | None = None):
        super().__init__()
        self.config = config = config or SimpleNetConfig()
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        backbone = load_backbone(config.backbone, weights_path=config.weights_path, pretrained=config.pretrained)
        aggregation = LocalAggregation(config.pretrain_embed_dim, config.target_embed_dim, config.patch_size)
        self.extractor = FeatureExtractor(backbone, aggregation)
        self.adaptor = FeatureAdaptor(config.target_embed_dim)
        self.discriminator = Discriminator(config.target_embed_dim, config.dsc_hidden, config.dsc_layers)
        self.feature_std: float | None = None
        self.sigma: float | None = None
        self.threshold_normal: float | None = None
        self.pixel_threshold_normal: float | None = None
        self.n_train = self.n_holdout = 0
        self.history: list[dict] = []
        self.timings: dict[str, float] = {}
        self.to(self.device)

    # ------------------------------------------------------------------ features
    @property
    def image_shape(self) -> tuple[int, int]:
        side = self.config.crop_size or self.config.image_size
        return side, side

    def extract(self, images: torch.Tensor, batch_size: int = 8, progress: bool = False) -> torch.Tensor:
        """Patch features of ``images [N, 3, H, W]``: ``[N, h*w, D]`` on the model's device."""
        chunks = []
        for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
            batch = images[start:start + batch_size].to(self.device)
            chunks.append(self.extractor(batch)[0])
        return torch.cat(chunks)

    # ------------------------------------------------------------------ training
    def fit(self, data, progress: bool = True) -> "SimpleNet":
        """Train on normal images only.

        ``data``: an MVTec-layout folder (its ``train/good`` is used), a folder of images, a
        ``Dataset`` of dicts with ``"image"``, or a tensor ``[N, 3, H, W]`` in ``[0, 1]``.
        ``config.holdout_fraction`` of the images is held out (by seed) to set ``threshold_normal``.
        """
        cfg = self.config
        images = self._training_images(data)
        train_images, holdout_images = self._split_holdout(images)
        self.n_train, self.n_holdout = len(train_images), 0 if holdout_images is None else len(holdout_images)

        start = time.perf_counter()
        bank = self.extract(train_images, progress=progress).flatten(0, 1)      # [N*h*w, D] cached
        self.feature_std = bank.std().item()
        bank = bank.to(getattr(torch, cfg.cache_dtype))
        self.timings["seconds_features"] = time.perf_counter() - start

        self.sigma = noise_sigma(cfg.noise_std, self.feature_std, cfg.noise_scale)
        generator = GaussianNoise(self.sigma, cfg.mix_noise)

        start = time.perf_counter()
        self._train(bank, generator, progress)
        self.timings["seconds_train"] = time.perf_counter() - start

        if holdout_images is not None:
            scores, maps = self.predict(holdout_images)
            from .metrics import threshold_from_normal

            self.threshold_normal = threshold_from_normal(scores.numpy(), cfg.normal_max_fpr)
            self.pixel_threshold_normal = threshold_from_normal(maps.flatten().numpy(), cfg.normal_max_fpr)
        return self

    def _train(self, bank: torch.Tensor, generator: GaussianNoise, progress: bool) -> None:
        cfg = self.config
        optimizers = [
            torch.optim.AdamW(self.adaptor.parameters(), lr=cfg.lr_adaptor),
            torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_discriminator, weight_decay=1e-5),
        ]
        shuffle = torch.Generator().manual_seed(cfg.seed)
        self.adaptor.train()
        self.discriminator.train()
        self.history = []
        bar = tqdm(range(cfg.epochs), desc="train", disable=not progress)
        for epoch in bar:
            order = torch.randperm(len(bank), generator=shuffle).to(bank.device)
            steps = [
                train_step(self.adaptor, generator, self.discriminator, optimizers, bank[idx].float(), cfg.dsc_margin)
                for idx in order.split(cfg.batch_size)
                if len(idx) > 1  # BatchNorm needs two samples
            ]
            record = {key: float(np.mean([s[key] for s in steps])) for key in steps[0]}
            self.history.append({"epoch": epoch + 1, **record})
            bar.set_postfix(loss=f"{record['loss']:.3f}")
        self.adaptor.eval()
        self.discriminator.eval()

    def _training_images(self, data) -> torch.Tensor:
        if isinstance(data, torch.Tensor):
            if data.ndim != 4 or data.shape[1] != 3:
                raise InputError("images", f"expected a tensor [N, 3, H, W], got shape {list(data.shape)}")
            return data.float()
        if isinstance(data, (str, Path)):
            root = Path(data)
            if (root / "train").exists() or not root.is_dir():
                root = data_lib.check_mvtec_folder(root)
                folder = root / "train" / "good"
            else:
                folder = root
            paths = data_lib.list_images(folder)
            if not paths:
                raise InputError(folder, "no images found")
            return torch.stack([data_lib.load_image(p, self.config.image_size, self.config.crop_size) for p in paths])
        return torch.stack([item["image"] for item in data])

    def _split_holdout(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        n_hold = int(round(len(images) * self.config.holdout_fraction))
        if self.config.holdout_fraction <= 0 or len(images) < 2:
            return images, None
        n_hold = min(max(n_hold, 1), len(images) - 1)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.config.seed))
        return images[order[n_hold:]], images[order[:n_hold]]

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Anomaly score of every patch: ``[B, 3, H, W] -> [B, h, w]`` (``-D(adaptor(feature))``)."""
        use_amp = self.config.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            features, (h, w) = self.extractor(images.to(self.device))
            scores = -self.discriminator(self.adaptor(features.flatten(0, 1)))
        return scores.float().view(len(images), h, w)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """``images [B, 3, H, W]`` in ``[0, 1]`` -> image scores ``[B]`` and anomaly maps ``[B, H, W]``
        (on the CPU). Higher means more anomalous."""
        if self.sigma is None:
            raise InputError("model", "is not trained yet: call fit() first")
        self.eval()
        all_scores, all_maps = [], []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            grid = self.patch_scores(batch)
            all_scores.append(grid.flatten(1).max(dim=1).values.cpu())
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
            "state": {
                "feature_std": self.feature_std, "sigma": self.sigma,
                "threshold_normal": self.threshold_normal,
                "pixel_threshold_normal": self.pixel_threshold_normal,
                "n_train": self.n_train, "n_holdout": self.n_holdout, "timings": self.timings,
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
        config = SimpleNetConfig.from_dict(payload["config"])
        if device is not None:
            config.device = device
        model = cls(config)
        model.adaptor.load_state_dict(payload["adaptor"])
        model.discriminator.load_state_dict(payload["discriminator"])
        for key, value in payload["state"].items():
            setattr(model, key, value)
        model.history = list(payload.get("history", []))
        model.eval()
        return model

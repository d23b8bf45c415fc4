"""Every switchable part of SimpleNet, by name: the paper's choice first, then its variants.

``SimpleNetConfig`` names one choice per part (``generator="gaussian"``, ``adaptor="linear"``...);
the functions here turn the names into the small objects that ``train_step`` and ``predict`` call,
so the training step itself never asks which variant is running.

- ``generator`` (:mod:`.anomaly_generator`): the paper's ``gaussian``; variants ``mixup``,
  ``adversarial``, ``learned``, ``perlin``;
- ``adaptor`` (:mod:`.feature_adaptor`): the paper's ``linear``; variants ``identity``, ``conv``;
- ``discriminator`` (:mod:`.discriminator`): the paper's ``mlp``; variant ``conv``;
- ``loss`` (:mod:`.loss`): the paper's ``truncated_l1``; variant ``bce``;
- ``image_score`` (here): the paper's ``max``; variants ``mean``, ``topk``.

The names and their origins are in :mod:`.config` (``CHOICES``, ``ORIGINS``); a configuration checks
its own choices. ``simplenet-edu ablate`` (:mod:`simplenet_edu.apps.ablation`) trains one row per
variant and compares it with the base configuration.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .anomaly_generator import AdversarialNoise, GaussianNoise, LearnedNoise, MixupNoise, PerlinNoise
from .config import CHOICES
from .discriminator import ConvDiscriminator, Discriminator
from .feature_adaptor import ConvAdaptor, FeatureAdaptor, IdentityAdaptor
from .loss import BCELoss, TruncatedL1Loss


# ------------------------------------------------------------------ image scores


class MaxScore(nn.Module):
    """``image_score="max"`` (paper): the most anomalous patch. ``[B, P] -> [B]``."""

    def forward(self, patch_scores: torch.Tensor) -> torch.Tensor:
        return patch_scores.max(dim=1).values


class MeanScore(nn.Module):
    """``image_score="mean"`` (a common alternative): the mean over all patches. ``[B, P] -> [B]``.
    Small defects are diluted by the many normal patches around them."""

    def forward(self, patch_scores: torch.Tensor) -> torch.Tensor:
        return patch_scores.mean(dim=1)


class TopKMeanScore(nn.Module):
    """``image_score="topk"`` (general ML; common in patch-based detectors): the mean of the ``k``
    highest patch scores. ``k >= 1`` counts patches, ``0 < k < 1`` is a share of them (rounded up).
    Between max (k = 1; one noisy patch decides) and mean (k = all). ``[B, P] -> [B]``."""

    def __init__(self, k: float = 10):
        super().__init__()
        self.k = k

    def count(self, n_patches: int) -> int:
        """How many patches are averaged out of ``n_patches``."""
        k = math.ceil(self.k * n_patches) if self.k < 1 else int(self.k)
        return max(1, min(k, n_patches))

    def forward(self, patch_scores: torch.Tensor) -> torch.Tensor:
        return patch_scores.topk(self.count(patch_scores.shape[1]), dim=1).values.mean(dim=1)


# ------------------------------------------------------------------ builders


def make_adaptor(config, n_layers: int = 2) -> nn.Module:
    """The feature adaptor the configuration names (``n_layers``: backbone layers, for ``conv``)."""
    d = config.target_embed_dim
    return {
        "linear": lambda: FeatureAdaptor(d),
        "identity": IdentityAdaptor,
        "conv": lambda: ConvAdaptor(n_layers, config.pretrain_embed_dim, d),
    }[config.adaptor]()


def make_discriminator(config) -> nn.Module:
    d = config.target_embed_dim
    return {
        "mlp": lambda: Discriminator(d, config.dsc_hidden, config.dsc_layers),
        "conv": lambda: ConvDiscriminator(d, max(8, config.dsc_hidden // 4)),
    }[config.discriminator]()


def make_generator(config, sigma: float) -> nn.Module:
    """The anomalous-feature generator, with the absolute noise scale ``sigma`` of this run."""
    return {
        "gaussian": lambda: GaussianNoise(sigma, config.mix_noise),
        "mixup": MixupNoise,
        "adversarial": lambda: AdversarialNoise(sigma, mix_noise=config.mix_noise),
        "learned": lambda: LearnedNoise(config.target_embed_dim, sigma),
        "perlin": lambda: PerlinNoise(sigma, config.perlin_threshold, mix_noise=config.mix_noise),
    }[config.generator]()


def needs_grid(config) -> bool:
    """Whether the configured generator or discriminator trains on windows of whole feature grids
    (:class:`~.batches.GridBatches`) rather than on shuffled single patches; read from the classes,
    so that asking makes no module (and draws no random number)."""
    generators = {"gaussian": GaussianNoise, "mixup": MixupNoise, "adversarial": AdversarialNoise,
                  "learned": LearnedNoise, "perlin": PerlinNoise}
    discriminators = {"mlp": Discriminator, "conv": ConvDiscriminator}
    return generators[config.generator].needs_grid or discriminators[config.discriminator].needs_grid


def make_loss(config) -> nn.Module:
    return {"truncated_l1": lambda: TruncatedL1Loss(config.dsc_margin), "bce": BCELoss}[config.loss]()


def make_image_score(config) -> nn.Module:
    return {"max": MaxScore, "mean": MeanScore, "topk": lambda: TopKMeanScore(config.topk)}[config.image_score]()


def describe(config) -> str:
    """One line naming the configured variants, e.g. ``gaussian / linear / mlp / truncated_l1 / max``."""
    return " / ".join(str(getattr(config, part)) for part in CHOICES)

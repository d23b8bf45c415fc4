"""Anomalous feature generator: normal patch features plus Gaussian noise.

SimpleNet never sees a real defect during training. It makes "anomalous" features by adding
Gaussian noise ``N(0, sigma^2)`` to each dimension of the adapted normal features, and teaches the
discriminator to tell the two apart. The only knob is ``sigma``:

- too small, and noised features are indistinguishable from normal ones, so the discriminator learns
  nothing useful;
- too large, and they are trivially far away, so the boundary it learns is loose and real defects,
  which sit close to normal features, fall on the normal side.

The paper's ``sigma = 0.015`` was chosen for Wide-ResNet50 features. Other backbones produce features
on another scale (EfficientNet-Lite0's aggregated features have a standard deviation about 50 times
larger), so an absolute sigma does not transfer. simplenet-edu therefore offers a *relative* scale:
``sigma = noise_std * feature_std``, where ``feature_std`` is the standard deviation of the training
patch features measured once before training. ``noise_std = 0.15`` then reads as "move each feature by
15% of its typical spread". The paper preset keeps the absolute ``0.015``.

Mix-noise (official code): each noised feature draws its sigma from ``sigma * 1.1**k`` with ``k``
uniform in ``0 .. mix_noise - 1``; ``mix_noise = 1`` is plain Gaussian noise.
"""

from __future__ import annotations

import torch
from torch import nn


def noise_sigma(noise_std: float, feature_std: float, scale: str = "relative") -> float:
    """The absolute sigma used for the noise.

    ``scale="relative"``: ``noise_std * feature_std``; ``scale="absolute"``: ``noise_std`` as is.
    """
    if scale == "absolute":
        return float(noise_std)
    if scale == "relative":
        return float(noise_std) * float(feature_std)
    raise ValueError(f"noise scale must be 'relative' or 'absolute', not {scale!r}")


class GaussianNoise(nn.Module):
    """Add ``N(0, (sigma * 1.1**k)^2)`` noise, ``k ~ U{0 .. mix_noise - 1}`` per feature.

    ``forward(features [N, D], generator=None) -> [N, D]``. Pass a ``torch.Generator`` for noise
    that does not depend on the global random state.
    """

    def __init__(self, sigma: float, mix_noise: int = 1):
        super().__init__()
        if mix_noise < 1:
            raise ValueError("mix_noise must be >= 1")
        self.sigma = float(sigma)
        self.mix_noise = int(mix_noise)

    def sigmas(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``[n, 1]``: the sigma each of ``n`` features is noised with."""
        k = torch.randint(0, self.mix_noise, (n, 1), generator=generator, device=device)
        return self.sigma * (1.1 ** k.float())

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(features.shape, generator=generator, device=features.device, dtype=features.dtype)
        return features + noise * self.sigmas(len(features), generator, features.device).to(features.dtype)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}, mix_noise={self.mix_noise}"

"""Anomalous feature generator: normal patch features plus Gaussian noise.

SimpleNet never sees a real defect during training. It makes "anomalous" features by adding
Gaussian noise ``N(0, sigma^2)`` to each dimension of the adapted normal features, and teaches the
discriminator to tell the two apart. The only knob is ``sigma``:

- too small, and noised features are indistinguishable from normal ones, so the discriminator learns
  nothing useful;
- too large, and they are trivially far away, so the boundary it learns is loose and real defects,
  which sit close to normal features, fall on the normal side.

The paper's ``sigma = 0.015`` was chosen for Wide-ResNet50 features. Other backbones produce features
on another scale (EfficientNet-Lite0's aggregated features have a standard deviation near 4, and at
``sigma = 0.015`` SimpleNet on hazelnut_toy falls below chance at the pixel level: AUROC 0.22), so an
absolute sigma does not transfer. simplenet-edu therefore offers a *relative* scale:
``sigma = noise_std * feature_std``, where ``feature_std`` is the standard deviation of the training
patch features measured once before training. The CPU default ``noise_std = 0.75`` then reads as "move
each feature dimension by three quarters of its typical spread"; it was chosen on the four sets of the
development suite at once (``results/default_sweep.md``). The paper preset keeps the absolute ``0.015``.

Mix-noise (official code): each noised feature draws its sigma from ``sigma * 1.1**k`` with ``k``
uniform in ``0 .. mix_noise - 1``; ``mix_noise = 1`` is plain Gaussian noise.
"""

from __future__ import annotations

import torch
from torch import nn

from ..stages.perlin import perlin_masks


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

    needs_grid = False  # works on shuffled patches [N, D] as well as on grids [B, h, w, D]

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None,
                discriminator: nn.Module | None = None) -> torch.Tensor:
        # discriminator: unused here; generators that play against it (adversarial) read it.
        noise = torch.randn(features.shape, generator=generator, device=features.device, dtype=features.dtype)
        sigmas = self.sigmas(features[..., 0].numel(), generator, features.device).to(features.dtype)
        return features + noise * sigmas.view(*features.shape[:-1], 1)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}, mix_noise={self.mix_noise}"


# ---------------------------------------------------------------------------------------------------
# Variants (config ``generator=...``). The paper uses only the Gaussian noise above; the ones below are
# common alternatives and SuperSimpleNet's masks, here to be compared with it (``ablate``).


class MixupNoise(nn.Module):
    """``generator="mixup"`` (a common alternative: mixup, Zhang et al. 2018).

    A fake feature is a convex combination ``(1 - w) * a + w * b`` of a feature ``a`` and a feature
    ``b`` taken at a random cell of a *different* image of the batch, ``w ~ U(low, high)``. Unlike the
    paper's noise it stays inside the span of real features: it imitates "a bit of another place
    pasted here" rather than an arbitrary small shift.

    ``forward(features [B, h, w, D]) -> [B, h, w, D]``; needs whole-image batches (``B >= 2``).
    """

    needs_grid = True

    def __init__(self, low: float = 0.2, high: float = 0.5):
        super().__init__()
        if not 0.0 < low <= high <= 1.0:
            raise ValueError("mixup weights need 0 < low <= high <= 1")
        self.low, self.high = float(low), float(high)

    def draw(self, shape: torch.Size, generator: torch.Generator | None = None, device=None):
        """For features of ``shape = [B, h, w, D]``: the weight ``w [B, h, w, 1]``, and the partner
        of each feature as image index ``[B, h, w]`` and flat cell index ``[B, h, w]``."""
        b, h, w, _ = shape
        if b < 2:
            raise ValueError("mixup needs at least two images per batch")
        weight = self.low + (self.high - self.low) * torch.rand((b, h, w, 1), generator=generator, device=device)
        # A shift of 1 .. B-1 images can never land on the feature's own image.
        shift = torch.randint(1, b, (b, h, w), generator=generator, device=device)
        own = torch.arange(b, device=device).view(b, 1, 1)
        cell = torch.randint(0, h * w, (b, h, w), generator=generator, device=device)
        return weight, (own + shift) % b, cell

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None,
                discriminator: nn.Module | None = None) -> torch.Tensor:
        weight, image, cell = self.draw(features.shape, generator, features.device)
        partners = features.flatten(1, 2)[image, cell]                       # [B, h, w, D]
        return (1 - weight.to(features.dtype)) * features + weight.to(features.dtype) * partners

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class AdversarialNoise(nn.Module):
    """``generator="adversarial"`` (a common alternative: FGSM-style hard negatives, Goodfellow et
    al. 2015).

    Start from the paper's Gaussian noise, then take one normalised gradient step of length
    ``step * r`` on the noised features *against* the discriminator: towards a higher normality
    score, i.e. where the discriminator would wrongly call them normal. The whole perturbation is then
    projected back into the ball of radius ``max_norm * r`` around the normal feature, so fakes stay
    near normal ones. ``r = sigma * sqrt(D)`` is the typical length of the Gaussian noise itself.

    The paper's fakes are blind to the discriminator; these are the hardest fakes within the bound,
    which pushes the discriminator to tighten its boundary where it is weakest.
    ``forward(features [..., D], generator, discriminator) -> [..., D]``; the discriminator is probed
    in eval mode (its BatchNorm statistics are not touched) and receives no gradient from the probe.
    """

    needs_grid = False

    def __init__(self, sigma: float, step: float = 0.5, max_norm: float = 2.0, mix_noise: int = 1):
        super().__init__()
        self.gaussian = GaussianNoise(sigma, mix_noise)
        self.step, self.max_norm = float(step), float(max_norm)

    def radius(self, dim: int) -> float:
        """``r = sigma * sqrt(D)``: the typical norm of the Gaussian noise."""
        return self.gaussian.sigma * dim ** 0.5

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None,
                discriminator: nn.Module | None = None) -> torch.Tensor:
        if discriminator is None:
            raise ValueError("the adversarial generator needs the discriminator")
        base = features.detach()
        delta = self.gaussian(base, generator) - base
        was_training = discriminator.training
        discriminator.eval()
        with torch.enable_grad():
            probe = (base + delta).requires_grad_(True)
            (grad,) = torch.autograd.grad(discriminator(probe).sum(), probe)
        discriminator.train(was_training)
        r = self.radius(features.shape[-1])
        delta = delta + self.step * r * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        delta = delta * (self.max_norm * r / delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
        # The gradient of the loss still reaches the adaptor through `features`, as for Gaussian noise.
        return features + delta.detach()

    def extra_repr(self) -> str:
        return f"step={self.step}, max_norm={self.max_norm}"


class _ReverseGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class LearnedNoise(nn.Module):
    """``generator="learned"`` (a common alternative: a learned MLP generator, GAN-style).

    An MLP ``Linear(D, hidden) - LeakyReLU(0.2) - Linear(hidden, D)`` reads each normal feature and
    proposes a perturbation ``u``; its length is squashed with tanh into the shell
    ``[min_norm * r, max_norm * r]`` (``r = sigma * sqrt(D)``), so fakes never collapse onto the normal
    feature nor drift far from it. The MLP is trained to *fool* the discriminator: its perturbation
    passes through a gradient-reversal layer, so the single backward pass of ``train_step`` makes the
    discriminator minimise the loss and the generator maximise it. The paper has no learned generator.

    ``forward(features [..., D]) -> [..., D]``.
    """

    needs_grid = False

    def __init__(self, dim: int, sigma: float, hidden: int | None = None,
                 min_norm: float = 0.5, max_norm: float = 2.0):
        super().__init__()
        if not 0.0 <= min_norm < max_norm:
            raise ValueError("learned generator needs 0 <= min_norm < max_norm")
        hidden = hidden or dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, dim))
        self.sigma, self.min_norm, self.max_norm = float(sigma), float(min_norm), float(max_norm)

    def bounds(self, dim: int) -> tuple[float, float]:
        """The smallest and largest perturbation norm."""
        r = self.sigma * dim ** 0.5
        return self.min_norm * r, self.max_norm * r

    def perturbation(self, features: torch.Tensor) -> torch.Tensor:
        """``[..., D] -> [..., D]``, each row of norm within :meth:`bounds`."""
        u = self.mlp(features.detach())    # the adaptor learns from the discriminator, not from here
        length = u.norm(dim=-1, keepdim=True)
        lo, hi = self.bounds(features.shape[-1])
        return u / length.clamp_min(1e-12) * (lo + (hi - lo) * torch.tanh(length))

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None,
                discriminator: nn.Module | None = None) -> torch.Tensor:
        return features + _ReverseGradient.apply(self.perturbation(features))

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}, min_norm={self.min_norm}, max_norm={self.max_norm}"


class PerlinNoise(nn.Module):
    """``generator="perlin"`` (SuperSimpleNet, Rolih et al. 2024): Gaussian noise inside a Perlin mask.

    Each image gets a blob-shaped mask on its feature grid, drawn exactly as SuperSimpleNet draws its
    own (:func:`~simplenet_edu.stages.perlin.perlin_masks`: Perlin noise above ``threshold``, 0.2 for
    MVTec, and emptied with probability ``zero_prob``, 0.5, so some fake images carry no defect at
    all). Gaussian noise (the paper's ``sigma``) is added inside the mask only; features outside it are
    returned unchanged, and ``train_step`` counts unchanged features as normal. Defects thus come as
    spatially coherent regions instead of the paper's independent patches.

    ``forward(features [B, h, w, D]) -> [B, h, w, D]``.
    """

    needs_grid = True

    def __init__(self, sigma: float, threshold: float = 0.2, zero_prob: float = 0.5, mix_noise: int = 1):
        super().__init__()
        self.gaussian = GaussianNoise(sigma, mix_noise)
        self.threshold, self.zero_prob = float(threshold), float(zero_prob)

    def mask(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
             device=None) -> torch.Tensor:
        """``[batch, height, width]`` bool on ``device``: where each image gets its fake defect."""
        return perlin_masks(batch, height, width, self.threshold, self.zero_prob, generator).to(device)

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None,
                discriminator: nn.Module | None = None) -> torch.Tensor:
        b, h, w, _ = features.shape
        inside = self.mask(b, h, w, generator, features.device).unsqueeze(-1)
        return torch.where(inside, self.gaussian(features, generator), features)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, zero_prob={self.zero_prob}"

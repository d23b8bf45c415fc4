"""SimpleNet's loss: how the discriminator is told to separate normal patch features from fakes.

The discriminator outputs a *normality* score (high for normal). The paper's loss is the truncated L1
with margin ``m = 0.5``::

    L = mean(max(0, m - D(normal))) + mean(max(0, m + D(fake)))

A normal feature stops contributing once ``D >= m``, a fake once ``D <= -m``: the discriminator is
pushed only to a margin, not to ever more extreme scores. The CPU default uses the binary
cross-entropy on the same logits instead, which never stops pushing (measured on the development
suite: ``results/default_sweep.md``). Both objects also report their accuracy for the training history.
"""

from __future__ import annotations

import torch
from torch import nn


def truncated_l1_loss(normal_scores: torch.Tensor, fake_scores: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """``mean(relu(margin - D(normal))) + mean(relu(margin + D(fake)))``; inputs ``[N]`` and ``[M]``
    (:class:`TruncatedL1Loss` as a function)."""
    return TruncatedL1Loss(margin)(normal_scores, fake_scores)


def _mean(values: torch.Tensor) -> torch.Tensor:
    # A batch can hold no fakes at all (Perlin masks are sometimes empty): that half adds nothing.
    return values.mean() if values.numel() else values.sum()


class TruncatedL1Loss(nn.Module):
    """``loss="truncated_l1"`` (paper): :func:`truncated_l1_loss` as an object, with its accuracy.

    ``forward(normal_scores [N], fake_scores [M]) -> scalar``; scores are normality logits.
    """

    def __init__(self, margin: float = 0.5):
        super().__init__()
        self.margin = float(margin)

    def forward(self, normal_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return _mean(torch.relu(self.margin - normal_scores)) + _mean(torch.relu(self.margin + fake_scores))

    def accuracy(self, normal_scores: torch.Tensor, fake_scores: torch.Tensor) -> tuple[float, float]:
        """Shares of normal features at or above ``margin`` and of fakes at or below ``-margin``."""
        return ((normal_scores >= self.margin).float().mean().item(),
                (fake_scores <= -self.margin).float().mean().item())


class BCELoss(nn.Module):
    """``loss="bce"`` (a common alternative; the CPU default): binary cross-entropy, label 1 for normal and 0 for fake.

    Computed on logits (``log(1 + e^-s)`` for normal, ``log(1 + e^s)`` for fake, averaged over all
    features), which is the same as BCE on ``sigmoid(s)`` but never takes ``log(0)``. Unlike the
    truncated L1 it never stops pushing: correct features keep contributing, ever less.
    ``forward(normal_scores [N], fake_scores [M]) -> scalar``.
    """

    def forward(self, normal_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([normal_scores, fake_scores])
        labels = torch.cat([torch.ones_like(normal_scores), torch.zeros_like(fake_scores)])
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)

    def accuracy(self, normal_scores: torch.Tensor, fake_scores: torch.Tensor) -> tuple[float, float]:
        """Shares of normal features with ``p(normal) > 0.5`` and of fakes below it."""
        return (normal_scores > 0).float().mean().item(), (fake_scores < 0).float().mean().item()

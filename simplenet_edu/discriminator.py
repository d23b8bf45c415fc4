"""Discriminator and loss: tell normal patch features from noised ones.

The discriminator is a small MLP applied to each patch feature on its own. It outputs a *normality*
score: high for normal features, low for anomalous ones. At test time the anomaly score of a patch
is simply ``-D(feature)``.

The loss is the paper's truncated L1 with margin ``m = 0.5``::

    L = mean(max(0, m - D(normal))) + mean(max(0, m + D(noised)))

A normal feature stops contributing once ``D >= m``, a noised one once ``D <= -m``: the discriminator
is not pushed to ever more extreme scores, only to a margin, which keeps training stable.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` for ``[N, C]`` features, computed on an ``[N, C, 1]`` view.

    Same statistics, parameters and state dict; PyTorch's CPU kernel is several times faster on the
    three-dimensional layout (measured in ``benchmarks/``), and this layer sits in every training step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(-1)).squeeze(-1)


class Discriminator(nn.Module):
    """``Linear(D, hidden) - BatchNorm1d - LeakyReLU(0.2) - Linear(hidden, 1, bias=False)``.

    ``forward(features [N, D]) -> [N]`` normality scores. Xavier-normal weights (official code).
    ``n_layers`` counts the linear layers (paper: 2); hidden blocks are repeated for ``n_layers > 2``.
    """

    def __init__(self, dim: int, hidden: int = 1024, n_layers: int = 2):
        super().__init__()
        blocks, width = [], dim
        for _ in range(n_layers - 1):
            blocks += [nn.Linear(width, hidden), BatchNorm1d(hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.tail = nn.Linear(width, 1, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)

    needs_grid = False  # scores each patch on its own

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Any leading shape ([N, D] or a grid [B, h, w, D]); BatchNorm1d wants [M, D].
        flat = features.reshape(-1, features.shape[-1])
        return self.tail(self.body(flat)).view(features.shape[:-1])


def truncated_l1_loss(normal_scores: torch.Tensor, fake_scores: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """``mean(relu(margin - D(normal))) + mean(relu(margin + D(fake)))``; both inputs ``[N]``."""
    return torch.relu(margin - normal_scores).mean() + torch.relu(margin + fake_scores).mean()


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
    """``loss="bce"`` (seed document): binary cross-entropy, label 1 for normal and 0 for fake.

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


class ConvDiscriminator(nn.Module):
    """``discriminator="conv"`` (seed document's 3-layer conv net with a sigmoid).

    ``Conv3x3(D, hidden) - BN - LeakyReLU(0.2) - Conv3x3(hidden, hidden) - BN - LeakyReLU(0.2) -
    Conv1x1(hidden, 1)`` over the feature grid. Each score sees a 3x3 (then 5x5) neighbourhood of
    patch features, where the paper's MLP judges every patch alone.

    ``forward(features [B, h, w, D]) -> [B, h, w]`` normality *logits*, so that both losses work
    (BCE on logits, truncated L1 on unbounded scores) and the patch anomaly score is ``-logit``, as
    for the MLP. ``probability(features)`` applies the seed's sigmoid: ``p(normal)`` in ``(0, 1)``;
    ``1 - p`` ranks patches exactly as ``-logit`` does.
    """

    needs_grid = True

    def __init__(self, dim: int, hidden: int = 96):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 1, 1),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features.permute(0, 3, 1, 2)).squeeze(1)

    def probability(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, h, w, D] -> [B, h, w]``: the probability that each patch is normal."""
        return torch.sigmoid(self(features))

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


class Discriminator(nn.Module):
    """``Linear(D, hidden) - BatchNorm1d - LeakyReLU(0.2) - Linear(hidden, 1, bias=False)``.

    ``forward(features [N, D]) -> [N]`` normality scores. Xavier-normal weights (official code).
    ``n_layers`` counts the linear layers (paper: 2); hidden blocks are repeated for ``n_layers > 2``.
    """

    def __init__(self, dim: int, hidden: int = 1024, n_layers: int = 2):
        super().__init__()
        blocks, width = [], dim
        for _ in range(n_layers - 1):
            blocks += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.tail = nn.Linear(width, 1, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(features)).squeeze(-1)


def truncated_l1_loss(normal_scores: torch.Tensor, fake_scores: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """``mean(relu(margin - D(normal))) + mean(relu(margin + D(fake)))``; both inputs ``[N]``."""
    return torch.relu(margin - normal_scores).mean() + torch.relu(margin + fake_scores).mean()

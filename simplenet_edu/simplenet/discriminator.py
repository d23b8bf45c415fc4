"""The discriminator: tell normal patch features from anomalous ones.

A small MLP applied to each patch feature on its own. It outputs a *normality* score: high for
normal features, low for anomalous ones, trained with the loss of :mod:`simplenet_edu.simplenet.loss`.
At test time the anomaly score of a patch is simply ``-D(feature)``.
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


class ConvDiscriminator(nn.Module):
    """``discriminator="conv"`` (a common alternative: a 3-layer conv net with a sigmoid).

    ``Conv3x3(D, hidden) - BN - LeakyReLU(0.2) - Conv3x3(hidden, hidden) - BN - LeakyReLU(0.2) -
    Conv1x1(hidden, 1)`` over the feature grid. Each score sees a 3x3 (then 5x5) neighbourhood of
    patch features, where the paper's MLP judges every patch alone.

    ``forward(features [B, h, w, D]) -> [B, h, w]`` normality *logits*, so that both losses work
    (BCE on logits, truncated L1 on unbounded scores) and the patch anomaly score is ``-logit``, as
    for the MLP. ``probability(features)`` applies that sigmoid: ``p(normal)`` in ``(0, 1)``;
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

"""Feature adaptor: one linear layer that moves ImageNet features towards the target domain.

The backbone was trained on ImageNet, not on hazelnuts or bricks. SimpleNet lets a single, shallow,
trainable layer re-mix the frozen patch features before the discriminator sees them. The paper finds
that one linear layer is enough; deeper adaptors overfit the few normal images there are.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureAdaptor(nn.Module):
    """``Linear(D, D)`` with bias, Xavier-normal weights (as the official code).

    ``forward(features [N, D]) -> [N, D]``. Xavier-normal with ``fan_in = fan_out = D`` draws weights
    of variance ``1 / D``, so at the start the adapted features keep the scale of the input features.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.linear.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

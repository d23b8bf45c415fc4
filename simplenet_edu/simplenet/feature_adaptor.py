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

    reads_layers = False  # reads the aggregated patch features [..., D]

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.linear.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


# ---------------------------------------------------------------------------------------------------
# Variants (config ``adaptor=...``), compared with the paper's linear layer by ``simplenet-edu ablate``.


class IdentityAdaptor(nn.Module):
    """``adaptor="identity"``: no adaptor at all; the discriminator sees the frozen features as they
    are. The paper's ablation "w/o adaptor" (and the official ``main.py`` default). No parameters.

    ``forward(features [..., D]) -> [..., D]`` (the same tensor).
    """

    reads_layers = False

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class ConvAdaptor(nn.Module):
    """``adaptor="conv"`` (a common alternative, in neither the paper nor its code): per backbone layer a
    1x1 convolution + BatchNorm + ReLU, *before* the layers are combined.

    Where it acts: local aggregation first describes each grid cell, layer by layer, by its 3x3
    neighbourhood pooled to ``layer_dim`` values; the paper then concatenates the layers and pools them
    to ``D``. This adaptor works on those cached per-layer vectors ``[..., L * layer_dim]``: for each
    layer a 1x1 convolution (a ``Linear(layer_dim, layer_dim)`` applied at every grid cell, which is
    exactly what a 1x1 convolution is), BatchNorm and ReLU; then the paper's concatenation and
    pooling to ``out_dim``. Applying it to the raw backbone maps instead would give the same kind of
    map, at the cost of re-running aggregation at every step. Unlike the paper's single linear layer
    it is non-linear, per-layer, and its BatchNorm fixes the output scale.

    ``forward(layer_features [..., L * layer_dim]) -> [..., out_dim]``.
    """

    reads_layers = True  # SimpleNet caches the per-layer features for it

    def __init__(self, n_layers: int, layer_dim: int, out_dim: int):
        super().__init__()
        self.layer_dim, self.out_dim = layer_dim, out_dim
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(layer_dim, layer_dim), nn.BatchNorm1d(layer_dim), nn.ReLU())
            for _ in range(n_layers)
        )
        for block in self.layers:
            nn.init.xavier_normal_(block[0].weight)

    def forward(self, layer_features: torch.Tensor) -> torch.Tensor:
        from .local_aggregation import pool_to_dim

        flat = layer_features.reshape(-1, layer_features.shape[-1])                    # [M, L*Dl]
        chunks = flat.split(self.layer_dim, dim=1)
        adapted = torch.cat([block(chunk) for block, chunk in zip(self.layers, chunks)], dim=1)
        return pool_to_dim(adapted, self.out_dim).view(*layer_features.shape[:-1], self.out_dim)

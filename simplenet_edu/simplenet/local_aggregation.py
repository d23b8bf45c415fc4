"""Feature extraction and local aggregation: from images to one feature vector per patch.

SimpleNet describes every location of the stride-8 grid by the backbone features of its 3x3
neighbourhood, taken from two layers (for Wide-ResNet50: layer2 and layer3). The official code does
it in four steps, reproduced here one function each:

1. :func:`unfold_neighbourhoods` -- each layer's map ``[B, C, h, w]`` becomes, at every location, the
   ``C * 3 * 3`` values of its 3x3 neighbourhood (stride 1, zero padding 1).
2. :func:`resize_to_grid` -- the deeper (stride-16) layer is resized bilinearly to the stride-8 grid,
   so both layers describe the same locations.
3. :func:`pool_to_dim` -- each layer's ``C * 9`` vector is average-pooled (1-D, adaptive) to
   ``pretrain_embed_dim`` values, so deep and shallow layers weigh the same.
4. The two pooled layers are concatenated and pooled again to ``target_embed_dim``.

The result is ``[B, H * W, D]``: ``H * W`` patch features of dimension ``D`` per image, plus the grid
size ``(H, W)`` needed to turn patch scores back into a map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def unfold_neighbourhoods(feature_map: torch.Tensor, patch_size: int = 3) -> torch.Tensor:
    """Stack each location's ``patch_size x patch_size`` neighbourhood into its channels.

    Args:
        feature_map: ``[B, C, h, w]``.

    Returns:
        ``[B, C * p * p, h, w]``, channel-major (``C`` outer, then the ``p x p`` offsets), the same
        ordering as the official code's ``[C, p, p]`` patches flattened.
    """
    b, c, h, w = feature_map.shape
    patches = F.unfold(feature_map, kernel_size=patch_size, padding=(patch_size - 1) // 2, stride=1)
    return patches.reshape(b, c * patch_size * patch_size, h, w)


def resize_to_grid(patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize ``[B, K, h, w]`` bilinearly to ``[B, K, H, W]`` (``grid = (H, W)``).

    Each of the ``K`` channels is interpolated on its own, exactly as the official code does after
    moving the patch dimensions out of the way.
    """
    if tuple(patches.shape[-2:]) == tuple(grid):
        return patches
    return F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)


def pool_to_dim(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    """Adaptive 1-D average pooling of the last axis: ``[N, K] -> [N, dim]``.

    With ``K = 4608`` and ``dim = 1536`` each output is the mean of 3 neighbouring inputs; when
    ``dim > K`` inputs are repeated instead.
    """
    return F.adaptive_avg_pool1d(vectors.unsqueeze(1), dim).squeeze(1)


def pooling_matrix(in_dim: int, out_dim: int) -> torch.Tensor:
    """:func:`pool_to_dim` written as a matrix: ``[out_dim, in_dim]``, each row averaging a window."""
    return pool_to_dim(torch.eye(in_dim, dtype=torch.float64), out_dim).T


class LocalAggregation(nn.Module):
    """Turn a backbone's multi-layer feature maps into patch features ``[B, H * W, D]``.

    Args:
        pretrain_embed_dim: dimension each layer is pooled to (paper: 1536).
        target_embed_dim: dimension of the final patch feature ``D`` (paper: 1536).
        patch_size: neighbourhood size (paper: 3).

    No parameters: aggregation is a fixed *linear* map, which is why it can be cached once per image.
    It also means the four steps fold into one convolution per layer: unfolding a 3x3 neighbourhood
    and averaging channels is a 3x3 convolution whose weights are the averaging windows, and bilinear
    resizing commutes with mixing channels. :meth:`forward` uses that folded form (faster, same
    numbers); :meth:`forward_steps` does the four steps one by one, as the official code, to read and
    to test against.
    """

    def __init__(self, pretrain_embed_dim: int, target_embed_dim: int, patch_size: int = 3):
        super().__init__()
        self.pretrain_embed_dim = pretrain_embed_dim
        self.target_embed_dim = target_embed_dim
        self.patch_size = patch_size
        self._kernels: dict[tuple, list[torch.Tensor]] = {}

    def pooled_layers(self, feature_maps: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Steps 1-3 of the official recipe: ``[[B, C_l, h_l, w_l], ...]`` -> ``([B*H*W, L*Dp], (H, W))``,
        each layer's neighbourhoods pooled to ``Dp``, the layers side by side."""
        grid = tuple(feature_maps[0].shape[-2:])
        per_layer = []
        for fmap in feature_maps:
            patches = resize_to_grid(unfold_neighbourhoods(fmap, self.patch_size), grid)  # [B, C*9, H, W]
            vectors = patches.flatten(2).transpose(1, 2).flatten(0, 1)                    # [B*H*W, C*9]
            per_layer.append(pool_to_dim(vectors, self.pretrain_embed_dim))
        return torch.cat(per_layer, dim=1), grid                                           # [B*H*W, L*Dp]

    def forward_steps(self, feature_maps: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, int]]:
        """The official recipe, step by step: ``[[B, C_l, h_l, w_l], ...]`` -> ``([B, H * W, D], (H, W))``."""
        stacked, grid = self.pooled_layers(feature_maps)
        features = pool_to_dim(stacked, self.target_embed_dim)                             # [B*H*W, D]
        batch = feature_maps[0].shape[0]
        return features.reshape(batch, grid[0] * grid[1], self.target_embed_dim), grid

    def kernels(self, channels: tuple[int, ...]) -> list[torch.Tensor]:
        """The folded weights, one ``[D, C_l, p, p]`` convolution kernel per layer.

        Layer ``l``'s kernel is ``final_l @ pool_l``: ``pool_l [Dp, C_l * p * p]`` averages the unfolded
        neighbourhood to ``Dp`` values, ``final_l [D, Dp]`` is that layer's share of the last pooling.
        """
        key = tuple(channels)
        if key not in self._kernels:
            p, dp = self.patch_size, self.pretrain_embed_dim
            final = pooling_matrix(len(channels) * dp, self.target_embed_dim)        # [D, L*Dp]
            self._kernels[key] = [
                (final[:, i * dp:(i + 1) * dp] @ pooling_matrix(c * p * p, dp)).float().view(-1, c, p, p)
                for i, c in enumerate(channels)
            ]
        return self._kernels[key]

    def forward(self, feature_maps: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, int]]:
        """``[[B, C_l, h_l, w_l], ...]`` (shallowest first) -> ``([B, H * W, D], (H, W))``."""
        grid = tuple(feature_maps[0].shape[-2:])
        kernels = self.kernels(tuple(m.shape[1] for m in feature_maps))
        out = 0
        for fmap, kernel in zip(feature_maps, kernels):
            kernel = kernel.to(fmap.device, fmap.dtype)
            out = out + resize_to_grid(F.conv2d(fmap, kernel, padding=(self.patch_size - 1) // 2), grid)
        return out.flatten(2).transpose(1, 2), grid                                        # [B, H*W, D]


class FeatureExtractor(nn.Module):
    """The frozen part of SimpleNet: backbone, then local aggregation.

    ``forward(images [B, 3, H, W] in [0, 1]) -> ([B, h * w, D], (h, w))`` with ``h = H / 8``.
    Runs without gradients: nothing here is trained, so the output can be computed once and cached.
    """

    def __init__(self, backbone: nn.Module, aggregation: LocalAggregation):
        super().__init__()
        self.backbone = backbone
        self.aggregation = aggregation

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        return self.aggregation(self.backbone(images))


@torch.no_grad()
def layer_features(extractor: FeatureExtractor, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Local aggregation stopped before the layers are combined: ``[B, h*w, L * pretrain_embed_dim]``.

    What the ``conv`` adaptor reads; :func:`aggregate` finishes the paper's aggregation from it.
    """
    stacked, grid = extractor.aggregation.pooled_layers(extractor.backbone(images))
    return stacked.view(len(images), grid[0] * grid[1], -1), grid


def aggregate(layers: torch.Tensor, dim: int) -> torch.Tensor:
    """``[..., L * Dp] -> [..., dim]``: the last step of local aggregation (pool the stacked layers)."""
    return pool_to_dim(layers.reshape(-1, layers.shape[-1]), dim).view(*layers.shape[:-1], dim)

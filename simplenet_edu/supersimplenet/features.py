"""SuperSimpleNet's features: both backbone layers upscaled, stacked and averaged, nothing pooled away;
and the defect masks brought down to that grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upscaled_features(maps: list[torch.Tensor], upscale: int = 2, patch_size: int = 3) -> torch.Tensor:
    """SuperSimpleNet's patch features: ``[[B, C_l, h_l, w_l], ...]`` (shallowest first) ->
    ``[B, H, W, sum C_l]`` with ``(H, W) = upscale x (h_0, w_0)``.

    Every layer is resized bilinearly to the common grid (corners aligned, as the authors' code), the
    layers are stacked, and each cell is averaged with its ``patch_size x patch_size`` neighbours
    (zero padding counted, as ``nn.AvgPool2d``). Unlike SimpleNet, no channel is pooled away.
    """
    h, w = maps[0].shape[-2:]
    size = (h * upscale, w * upscale)
    resized = [m.float() if tuple(m.shape[-2:]) == size else
               F.interpolate(m.float(), size=size, mode="bilinear", align_corners=True) for m in maps]
    pooled = F.avg_pool2d(torch.cat(resized, dim=1), patch_size, stride=1, padding=patch_size // 2)
    return pooled.permute(0, 2, 3, 1)


def downsample_masks(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Pixel masks ``[N, H, W]`` -> cell labels ``[N, h, w]`` of 0/1: bilinear, then ``>= 0.5``
    (the downsampling DeSTSeg proposed and SuperSimpleNet uses)."""
    small = F.interpolate(masks.float().unsqueeze(1), size=grid, mode="bilinear", align_corners=False)
    return (small.squeeze(1) >= 0.5).float()

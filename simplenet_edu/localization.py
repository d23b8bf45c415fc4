"""From patch scores to a pixel anomaly map.

The discriminator scores each cell of the stride-8 patch grid. To compare with a pixel mask, the
official code upsamples that small score map bilinearly to the image size and smooths it with a
Gaussian of ``sigma = 4`` pixels. Only the one-channel score map is upsampled, never the feature map
(the official code upsamples all features first, then throws them away: wasted time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """``[2r + 1]`` normalised Gaussian weights, ``r = round(truncate * sigma)`` (as SciPy)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def _reflect_pad(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Pad ``radius`` samples on both sides of ``dim`` by mirroring including the edge sample
    (``d c b a | a b c d | d c``), SciPy's ``reflect`` mode; repeats with period ``2n`` for tiny maps."""
    n = x.shape[dim]
    index = torch.arange(-radius, n + radius, device=x.device) % (2 * n)
    index = torch.where(index >= n, 2 * n - 1 - index, index)
    return x.index_select(dim, index)


def gaussian_smooth(maps: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """Separable Gaussian smoothing of ``[B, H, W]`` maps; matches ``scipy.ndimage.gaussian_filter``."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel1d(sigma).to(maps.device, maps.dtype)
    radius = (len(kernel) - 1) // 2
    x = maps.unsqueeze(1)                                                  # [B, 1, H, W]
    x = F.conv2d(_reflect_pad(x, radius, 3), kernel.view(1, 1, 1, -1))
    x = F.conv2d(_reflect_pad(x, radius, 2), kernel.view(1, 1, -1, 1))
    return x.squeeze(1)


def anomaly_maps(patch_scores: torch.Tensor, size: tuple[int, int], sigma: float = 4.0) -> torch.Tensor:
    """``[B, h, w]`` patch scores -> ``[B, H, W]`` pixel anomaly maps (bilinear, then Gaussian)."""
    upsampled = F.interpolate(patch_scores.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return gaussian_smooth(upsampled.squeeze(1), sigma)

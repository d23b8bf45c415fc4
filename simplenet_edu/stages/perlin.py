"""Perlin noise and the masks cut from it: the shapes of fake defects.

SuperSimpleNet (and SimpleNet's ``perlin`` generator variant) make fake defects as connected regions
of the feature grid instead of scattered patches: a Perlin-noise map thresholded into a mask. Both
draw their masks with :func:`perlin_masks`: one rule for the shapes of both.
"""

from __future__ import annotations

import math

import torch


def perlin_noise(height: int, width: int, cells: tuple[int, int] = (4, 4),
                 generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """2-D Perlin gradient noise ``[height, width]``, values roughly in ``[-1, 1]`` (Perlin 1985/2002).

    A random unit gradient sits at each corner of a ``cells[0] x cells[1]`` lattice; each point blends
    the dot products with its cell's four corner gradients using the quintic fade ``6t^5 - 15t^4 +
    10t^3``. Smooth blobs about ``height / cells[0]`` across: the shapes SuperSimpleNet (and DRAEM)
    threshold into fake defect masks. Same generator seed, same noise.
    """
    ry, rx = cells
    angles = 2 * torch.pi * torch.rand((ry + 1, rx + 1), generator=generator, device=device)
    grads = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)          # [ry+1, rx+1, 2]
    y = (torch.arange(height, device=device) + 0.5) / height * ry
    x = (torch.arange(width, device=device) + 0.5) / width * rx
    y0, x0 = y.floor().long(), x.floor().long()
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]                                 # [h, 1], [1, w]

    def corner(dy: int, dx: int) -> torch.Tensor:
        g = grads[(y0 + dy)[:, None], (x0 + dx)[None, :]]                          # [h, w, 2]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return t * t * t * (t * (t * 6 - 15) + 10)

    uy, ux = fade(fy), fade(fx)
    top = torch.lerp(corner(0, 0), corner(0, 1), ux)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), ux)
    return 2 ** 0.5 * torch.lerp(top, bottom, uy)


def perlin_scales(height: int, width: int) -> int:
    """``K``: lattice sizes ``2**0 .. 2**(K-1)`` cells per axis for a ``height x width`` grid.

    SuperSimpleNet draws ``k`` in ``0..5`` on its 64 x 64 grid, so the finest blobs are two cells
    across; this keeps that ratio on any grid (``K = log2`` of the next power of two of the shorter side).
    """
    side = max(2, min(height, width))
    return max(1, math.ceil(math.log2(side)))


def perlin_masks(batch: int, height: int, width: int, threshold: float = 0.2, zero_prob: float = 0.5,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``[batch, height, width]`` bool on the CPU: one thresholded Perlin mask per image.

    Per image, in this order from ``generator`` (a CPU ``torch.Generator``; same seed, same masks):
    the lattice ``2**ky x 2**kx`` cells with ``ky, kx`` uniform in ``0 .. K-1`` (:func:`perlin_scales`),
    the noise (:func:`perlin_noise`), then whether the mask is emptied (probability ``zero_prob``, so
    that some fake images carry no defect at all). The mask is where the noise exceeds ``threshold``
    (SuperSimpleNet: 0.2 for MVTec AD, 0.6 for VisA).
    """
    scales = perlin_scales(height, width)
    masks = torch.zeros(batch, height, width, dtype=torch.bool)
    for i in range(batch):
        ky, kx = torch.randint(0, scales, (2,), generator=generator).tolist()
        noise = perlin_noise(height, width, (2 ** ky, 2 ** kx), generator)
        empty = torch.rand((), generator=generator).item() < zero_prob
        if not empty:
            masks[i] = noise > threshold
    return masks

"""Perlin noise: smooth random blobs, the shapes that fake defects are cut from.

SuperSimpleNet (and SimpleNet's ``perlin`` generator variant) make fake defects as connected regions
of the feature grid instead of scattered patches: a Perlin-noise map thresholded into a mask.
"""

from __future__ import annotations

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

"""How SimpleNet's training steps draw their mini-batches from the cached patch features.

The backbone is frozen, so every training image's patch features are computed once and cached as a
bank ``[N, h*w, D]``. A training step reads a mini-batch of that bank: shuffled single patches
(:class:`PatchBatches`, the paper's way), or windows of the grid (:class:`GridBatches`) for the
variants that need neighbours. :func:`endless` passes over a batcher as often as the budget of
steps needs.
"""

from __future__ import annotations

import math

import torch


def endless(batches, total: int):
    """``total`` mini-batches from ``batches``, passing over it again (freshly shuffled) as often as
    needed: the budget is counted in steps, not passes."""
    count = 0
    while count < total:
        for batch in batches:
            yield batch
            count += 1
            if count == total:
                return


class PatchBatches:
    """Mini-batches of ``batch_size`` patch features drawn at random from all cached images: ``[n, D]``
    (the paper)."""

    def __init__(self, bank: torch.Tensor, batch_size: int, generator: torch.Generator):
        self.bank, self.batch_size, self.generator = bank.flatten(0, 1), batch_size, generator

    def __len__(self) -> int:
        """Mini-batches in one pass (a last batch of one patch is dropped: BatchNorm needs two)."""
        full, rest = divmod(len(self.bank), self.batch_size)
        return full + (rest > 1)

    def __iter__(self):
        order = torch.randperm(len(self.bank), generator=self.generator).to(self.bank.device)
        for idx in order.split(self.batch_size):
            if len(idx) > 1:  # BatchNorm needs two samples
                yield self.bank[idx].float()


class GridBatches:
    """Mini-batches that keep the feature grid, for variants that need neighbours or whole images
    (Perlin masks, mixup across images, conv discriminator): ``[k, c, c, D]``, ``k >= 2`` windows of
    ``c x c`` cells, so that ``k * c * c`` is about ``batch_size``.

    Each image's grid is cut into ``c x c`` tiles (the last row and column of tiles aligned to the far
    edge), and one pass visits every tile of every image once: round after round, each image gives one
    of its tiles (in a fresh random order) and the images come in a fresh random order, so the ``k``
    windows of a step are ``k`` different images (except in a step that straddles two rounds). Every
    cell is then seen equally often, as with shuffled patches. (A single random window shared by the
    ``k`` images would visit the border cells of a 32 x 32 grid 0.1 times per pass and the central ones
    2.2 times, leave 46 % of the cells unseen in a pass, and end with BatchNorm statistics twice as far
    from the test-time ones: measured by ``benchmarks/grid_path.py``.)
    """

    def __init__(self, bank: torch.Tensor, grid: tuple[int, int], batch_size: int, generator: torch.Generator):
        self.bank = bank.view(len(bank), *grid, bank.shape[-1])                       # [N, h, w, D]
        self.generator = generator
        n, h, w = self.bank.shape[:3]
        self.images = max(2, min(n, batch_size // (h * w)))
        self.side = c = max(2, min(h, w, math.isqrt(max(1, batch_size // self.images))))
        self.corners = [(top, left) for top in sorted({*range(0, h - c + 1, c), h - c})
                        for left in sorted({*range(0, w - c + 1, c), w - c})]
        self.steps = max(1, math.ceil(n * len(self.corners) / self.images))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        n, c, k = len(self.bank), self.side, self.images
        tiles = [torch.randperm(len(self.corners), generator=self.generator) for _ in range(n)]   # per image
        order = [(i, int(tiles[i][r])) for r in range(len(self.corners))
                 for i in torch.randperm(n, generator=self.generator).tolist()]
        for step in range(self.steps):
            chosen = [order[(step * k + j) % len(order)] for j in range(k)]
            yield torch.stack([self.bank[i, top:top + c, left:left + c]
                               for i, (top, left) in ((i, self.corners[t]) for i, t in chosen)]).float()

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
    (the paper). ``images``: draw only from these images of the bank ``[N, P, D]`` (the heads of one
    fold of the threshold's cross-validation); the rows are indexed, not copied."""

    def __init__(self, bank: torch.Tensor, batch_size: int, generator: torch.Generator,
                 images: list[int] | None = None):
        self.bank, self.batch_size, self.generator = bank.flatten(0, 1), batch_size, generator
        self.rows = None
        if images is not None:
            per_image = bank.shape[1]
            self.rows = (torch.tensor(images).unsqueeze(1) * per_image + torch.arange(per_image)).flatten()

    def __len__(self) -> int:
        """Mini-batches in one pass (a last batch of one patch is dropped: BatchNorm needs two)."""
        full, rest = divmod(len(self.bank) if self.rows is None else len(self.rows), self.batch_size)
        return full + (rest > 1)

    def __iter__(self):
        if self.rows is None:
            order = torch.randperm(len(self.bank), generator=self.generator)
        else:
            order = self.rows[torch.randperm(len(self.rows), generator=self.generator)]
        for idx in order.to(self.bank.device).split(self.batch_size):
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

    def __init__(self, bank: torch.Tensor, grid: tuple[int, int], batch_size: int, generator: torch.Generator,
                 images: list[int] | None = None):
        self.bank = bank.view(len(bank), *grid, bank.shape[-1])                       # [N, h, w, D]
        self.generator = generator
        self.members = list(range(len(bank))) if images is None else list(images)    # the images drawn from
        n, (h, w) = len(self.members), self.bank.shape[1:3]
        self.images = max(2, min(n, batch_size // (h * w)))
        self.side = c = max(2, min(h, w, math.isqrt(max(1, batch_size // self.images))))
        self.corners = [(top, left) for top in sorted({*range(0, h - c + 1, c), h - c})
                        for left in sorted({*range(0, w - c + 1, c), w - c})]
        self.steps = max(1, math.ceil(n * len(self.corners) / self.images))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        n, c, k = len(self.members), self.side, self.images
        tiles = [torch.randperm(len(self.corners), generator=self.generator) for _ in range(n)]   # per image
        order = [(i, int(tiles[i][r])) for r in range(len(self.corners))
                 for i in torch.randperm(n, generator=self.generator).tolist()]
        for step in range(self.steps):
            chosen = [order[(step * k + j) % len(order)] for j in range(k)]
            yield torch.stack([self.bank[self.members[i], top:top + c, left:left + c]
                               for i, (top, left) in ((i, self.corners[t]) for i, t in chosen)]).float()

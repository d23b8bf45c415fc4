"""The grid training path of SimpleNet's grid variants: one pass of GridBatches visits every cell of
every image exactly once, and the windows of a step come from different images."""

import torch

from simplenet_edu.simplenet.model import GridBatches


def test_one_pass_visits_every_cell_once_and_mixes_images():
    n, h, w = 5, 6, 6
    ids = torch.arange(n * h * w, dtype=torch.float32).view(n, h * w, 1)     # each cell holds its own id
    batches = GridBatches(ids, (h, w), batch_size=8, generator=torch.Generator().manual_seed(0))
    assert (batches.images, batches.side) == (2, 2) and len(batches) == n * 9 // 2 + 1
    seen = torch.cat([b.flatten() for b in batches]).long()
    counts = torch.bincount(seen, minlength=n * h * w)
    # 45 tiles in 23 steps of 2: the last step wraps around to the first tile, the rest once each.
    assert counts.min() == 1 and (counts > 1).sum() == 4
    for batch in batches:
        images = (batch.flatten(1).long() // (h * w))
        assert (images == images[:, :1]).all()             # a window is one image's ...
        rows = (batch[..., 0].long() % (h * w)) // w
        assert (rows[:, 1:] - rows[:, :-1] == 1).all()     # ... contiguous rows
    distinct = [len(set((b.flatten().long() // (h * w)).tolist())) for b in batches]
    assert sum(d == 2 for d in distinct) >= len(distinct) - 2  # only steps across two rounds may repeat


def test_odd_grid_aligns_the_last_tiles_to_the_edge():
    ids = torch.arange(2 * 5 * 5, dtype=torch.float32).view(2, 25, 1)
    batches = GridBatches(ids, (5, 5), batch_size=8, generator=torch.Generator().manual_seed(1))
    assert batches.corners == [(0, 0), (0, 2), (0, 3), (2, 0), (2, 2), (2, 3), (3, 0), (3, 2), (3, 3)]
    seen = set(torch.cat([b.flatten() for b in batches]).long().tolist())
    assert seen == set(range(50))                           # no cell left out, the edge included

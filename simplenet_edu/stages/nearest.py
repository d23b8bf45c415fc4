"""Nearest-neighbour distances between patch features, shared by the nearest-neighbour baseline and
the painted fakes' distance rule."""

from __future__ import annotations

import torch


@torch.no_grad()
def nearest_distances(queries: torch.Tensor, reference: torch.Tensor, query_groups: torch.Tensor | None = None,
                      reference_groups: torch.Tensor | None = None, chunk: int = 2048) -> torch.Tensor:
    """Euclidean distance from each of ``queries [M, D]`` to its nearest row of ``reference [R, D]``: ``[M]``.

    With groups (``query_groups [M]``, ``reference_groups [R]``: the image of each row), to its nearest
    row of *another* group (``inf`` where there is none). The nearest row is found with matrix products
    (``torch.cdist``, fast but inexact near zero: it subtracts large squared norms); the distance to it
    is then computed directly, so a query equal to a reference row scores 0 exactly.
    """
    reference = reference.float()
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk].float()
        distances = torch.cdist(q, reference)                                             # [m, R]
        if query_groups is not None:
            distances[query_groups[start:start + chunk, None] == reference_groups[None, :]] = float("inf")
        nearest = distances.argmin(dim=1)                                                 # [m]
        exact = torch.linalg.vector_norm(q - reference[nearest], dim=1)
        out.append(torch.where(torch.isinf(distances.min(dim=1).values), float("inf"), exact))
    return torch.cat(out) if out else queries.new_zeros(0)

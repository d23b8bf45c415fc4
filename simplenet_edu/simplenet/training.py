"""SimpleNet's training step, the optimisers that drive it, and the learning rate over a run.

:func:`train_step` is the whole method in one function: adapt the frozen patch features, make
anomalous copies, score both with the discriminator, one loss, one backward pass. The loop around it
(:meth:`simplenet_edu.simplenet.model.SimpleNet.fit_features`) draws the batches and keeps the history.
A run's length is the rule every model shares, :func:`~simplenet_edu.core.fitted.training_steps`
(importable from here too).
"""

from __future__ import annotations

import math

import torch

from ..core.fitted import training_steps  # noqa: F401  (a run's length, shared by every model)
from .config import SimpleNetConfig
from .loss import TruncatedL1Loss


def train_step(adaptor, generator, discriminator, optimizers, features: torch.Tensor, loss,
               painted: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """One SimpleNet update on frozen patch features ``[N, D]`` (or ``[B, h, w, D]`` grids for variants
    that need neighbours): adapt, make fakes, score both in one discriminator call (so BatchNorm sees
    both), ``loss`` (an object of :mod:`.loss`, or the truncated L1 margin as a number), one backward
    pass. ``painted``: ``(normal [C, D], fake [M, D])`` cells of painted training images
    (``fakes="painted"``, :mod:`.anomaly_generator_painted`), scored in a call and a loss term of their own."""
    loss_fn = loss if callable(loss) else TruncatedL1Loss(loss)
    normal = adaptor(features)
    fake = generator(normal, discriminator=discriminator)
    scores = discriminator(torch.cat([normal, fake]))
    normal_scores, fake_scores = scores[: len(normal)].flatten(), scores[len(normal):]
    # A fake the generator left unchanged (outside a Perlin mask) is a normal feature. Gaussian noise
    # changes every one: then the scores stay as they are (no copy through a mask, the same numbers).
    changed = (fake != normal).any(dim=-1)
    if bool(changed.all()):
        fake_scores = fake_scores.flatten()
    else:
        normal_scores = torch.cat([normal_scores, fake_scores[~changed]])
        fake_scores = fake_scores[changed]
    loss = loss_fn(normal_scores, fake_scores)
    if painted is not None:
        # Their own discriminator call: the rows of a painted image are not the batch's shuffled patches,
        # and this is the form measured on the development suite.
        painted_scores = discriminator(adaptor(torch.cat(painted))).flatten()
        loss = loss + loss_fn(painted_scores[: len(painted[0])], painted_scores[len(painted[0]):])

    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()

    with torch.no_grad():
        p_normal, p_fake = loss_fn.accuracy(normal_scores, fake_scores)
        # adapted_std: the scale of the adapted features, against which the fixed noise sigma acts.
        return {"loss": loss.item(), "d_normal": normal_scores.mean().item(),
                "d_fake": fake_scores.mean().item(), "p_normal": p_normal, "p_fake": p_fake,
                "adapted_std": normal.std().item()}


def make_optimizers(config: SimpleNetConfig, adaptor, discriminator, generator=None) -> list:
    """The official optimisers: AdamW (weight decay 0.01) for the adaptor, Adam (weight decay 1e-5)
    for the discriminator and for a learned generator; parts without parameters get none.
    ``fused`` runs each update as one kernel (a measurable share of a CPU training step)."""
    heads = [(adaptor, torch.optim.AdamW, config.lr_adaptor, 0.01),
             (discriminator, torch.optim.Adam, config.lr_discriminator, 1e-5),
             (generator, torch.optim.Adam, config.lr_discriminator, 1e-5)]
    return [make(part.parameters(), lr=lr, weight_decay=decay, fused=True)
            for part, make, lr, decay in heads if part is not None and any(True for _ in part.parameters())]


def make_schedule(optimizer: torch.optim.Optimizer, kind: str, total_steps: int):
    """The learning rate over the run: ``constant``, or ``cosine`` (half a cosine from the set rate
    down to zero at ``total_steps``). Call ``.step()`` after every optimiser step."""
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {kind!r}")

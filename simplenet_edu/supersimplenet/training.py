"""SuperSimpleNet's training step, its learning-rate schedule, and its anomalous training images.

:func:`train_step` is one update: adapt the cached features, double the batch and noise each copy
inside its Perlin mask, both heads, the three losses, one backward pass.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import data as data_lib
from ..utils.errors import InputError


def lr_factor(step: int, milestones: list[int], gamma: float) -> float:
    """The learning-rate factor at ``step`` (0-based): ``gamma`` to the number of milestones reached."""
    return gamma ** sum(step >= m for m in milestones)


def train_step(adaptor, generator, head, loss_fn, optimizer, features: torch.Tensor, masks: torch.Tensor,
               labels: torch.Tensor, cls_features: str = "adapted", clip_grad: float | None = None,
               random: tuple = (None, None)) -> dict:
    """One SuperSimpleNet update on a batch of cached features ``[B, H, W, C]`` with their real
    defect labels (``masks [B, H, W]``, ``labels [B]``; zeros when unsupervised).

    Adapt; double the batch and noise each copy inside its Perlin mask; both heads; the three losses;
    one backward pass through heads and adaptor. ``random``: (CPU generator for the masks, generator
    on the features' device for the noise).
    """
    adapted = adaptor(features)                                                     # [B, H, W, C]
    raw = features if cls_features == "backbone" else None
    noised, noised_raw, masks, labels = generator(adapted, masks, labels, raw, *random)   # [2B, ...]
    anomaly_map, score = head(noised, noised_raw)
    loss, parts = loss_fn(anomaly_map, score, masks, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip_grad)
    optimizer.step()
    return {"loss": loss.item(), **parts, "anomalous_cells": masks.mean().item(),
            "anomalous_images": labels.mean().item()}


def read_anomalous_training_set(root: str | Path, resize_shape: tuple[int, int], image_shape: tuple[int, int]
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The supervised mode's training images: every ``train/<defect>`` image of an MVTec-layout
    folder (all but ``train/good``) with its ``ground_truth/<defect>/<name>_mask.png``, as
    ``(images [M, 3, H, W], masks [M, H, W] of 0/1)``; empty tensors when there are none.

    A missing mask, a mask of the wrong size, or a mask that would also be a test image's (same
    defect folder and name) is a one-line :class:`InputError`.
    """
    root = Path(root)
    anomalous = []
    if (root / "train").is_dir():
        for folder in sorted(p for p in (root / "train").iterdir() if p.is_dir() and p.name != "good"):
            anomalous += [(path, root / "ground_truth" / folder.name / f"{path.stem}_mask.png")
                          for path in data_lib.list_images(folder)]
    images, masks = [], []
    for path, mask_path in anomalous:
        if not mask_path.is_file():
            raise InputError(mask_path, f"mask file missing for the anomalous training image {path}")
        test_twin = root / "test" / path.parent.name / path.name
        if any(test_twin.with_suffix(ext).is_file() for ext in data_lib.IMAGE_EXTENSIONS):
            raise InputError(mask_path, f"is the mask of both {path} and a test image of the same name: rename one")
        image = data_lib._read(path)
        mask = data_lib._read(mask_path)
        if mask.size != image.size:
            raise InputError(mask_path, f"mask is {mask.size[0]}x{mask.size[1]} but its image {path} is "
                                        f"{image.size[0]}x{image.size[1]}")
        images.append(data_lib._image_tensor(image, resize_shape, image_shape))
        masks.append(data_lib._mask_tensor(mask, resize_shape, image_shape))
    if not images:
        return torch.zeros(0, 3, *image_shape), torch.zeros(0, *image_shape)
    return torch.stack(images), torch.stack(masks)

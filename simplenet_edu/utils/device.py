"""Which device runs the model: the GPU when there is one, else the CPU."""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when there is a GPU, else the CPU; ``"cuda"`` without a GPU is a one-line error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda", "no CUDA GPU is available on this machine")
    return torch.device(device)

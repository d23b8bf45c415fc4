"""The two models by name, and one loader that reads which one a checkpoint holds.

``simplenet`` is :class:`~simplenet_edu.model.SimpleNet` (Liu et al., CVPR 2023), ``supersimplenet``
its successor :class:`~simplenet_edu.supersimplenet.SuperSimpleNet` (Rolih et al., ICPR 2024). Both
write ``{"format": "simplenet-edu", "version": 1, ...}`` checkpoints; a SuperSimpleNet one also
says ``"model": "supersimplenet"`` (a file without the key is a SimpleNet one, as every checkpoint
written before SuperSimpleNet existed). :func:`load_model` picks the class from that key.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import InputError

MODEL_KINDS = ("simplenet", "supersimplenet")


def model_class(kind: str):
    """The class for a model name: ``"simplenet"`` or ``"supersimplenet"``."""
    if kind == "simplenet":
        from .model import SimpleNet

        return SimpleNet
    if kind == "supersimplenet":
        from .supersimplenet import SuperSimpleNet

        return SuperSimpleNet
    raise InputError("--model", f"unknown model {kind!r}; choose from {', '.join(MODEL_KINDS)}")


def config_class(kind: str):
    """The configuration class for a model name (``SimpleNetConfig`` or ``SuperSimpleNetConfig``)."""
    if kind == "simplenet":
        from .model import SimpleNetConfig

        return SimpleNetConfig
    model_class(kind)
    from .supersimplenet import SuperSimpleNetConfig

    return SuperSimpleNetConfig


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checked payload of a simplenet-edu checkpoint (either model), or a one-line :class:`InputError`."""
    from .model import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means: not a checkpoint of ours
        raise InputError(path, f"not a simplenet-edu checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "not a simplenet-edu checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise InputError(path, f"checkpoint version {payload.get('version')} is not supported "
                               f"(this simplenet-edu reads version {CHECKPOINT_VERSION})")
    if payload.get("model", "simplenet") not in MODEL_KINDS:
        raise InputError(path, f"holds an unknown model {payload.get('model')!r}")
    return payload


def checkpoint_kind(path: str | os.PathLike) -> str:
    """``"simplenet"`` or ``"supersimplenet"``: which model a checkpoint holds."""
    return read_checkpoint(path).get("model", "simplenet")


def load_model(path: str | os.PathLike, device: str | None = None):
    """Load either model from its checkpoint, whichever it is."""
    return model_class(checkpoint_kind(path)).load(path, device=device)

"""The models by name, and one loader that reads which one a checkpoint holds.

``simplenet`` is :class:`~simplenet_edu.simplenet.model.SimpleNet` (Liu et al., CVPR 2023),
``supersimplenet`` its successor :class:`~simplenet_edu.supersimplenet.model.SuperSimpleNet` (Rolih et
al., ICPR 2024). Both write the checkpoints of :mod:`simplenet_edu.core.checkpoint`, whose ``"model"``
key names the kind; :func:`load_model` picks the class from it. A new model is registered by adding
its kind to :data:`MODEL_KINDS` and a branch to :func:`model_class`.
"""

from __future__ import annotations

import os

from ..utils.errors import InputError
from .checkpoint import checkpoint_kind as _kind_of
from .checkpoint import read_checkpoint

MODEL_KINDS = ("simplenet", "supersimplenet")


def model_class(kind: str):
    """The class for a model name (imported on first use: the command line builds its options without torch)."""
    if kind == "simplenet":
        from ..simplenet.model import SimpleNet

        return SimpleNet
    if kind == "supersimplenet":
        from ..supersimplenet.model import SuperSimpleNet

        return SuperSimpleNet
    raise InputError("--model", f"unknown model {kind!r}; choose from {', '.join(MODEL_KINDS)}")


def config_class(kind: str):
    """The configuration class for a model name (torch-free)."""
    if kind == "simplenet":
        from ..simplenet.config import SimpleNetConfig

        return SimpleNetConfig
    if kind == "supersimplenet":
        from ..supersimplenet.config import SuperSimpleNetConfig

        return SuperSimpleNetConfig
    raise InputError("--model", f"unknown model {kind!r}; choose from {', '.join(MODEL_KINDS)}")


def kind_of(config) -> str:
    """The model kind whose configuration class ``config`` is an instance of."""
    for kind in MODEL_KINDS:
        if isinstance(config, config_class(kind)):
            return kind
    raise InputError("config", f"{type(config).__name__} is not the configuration of a known model")


def checkpoint_kind(path: str | os.PathLike) -> str:
    """Which model a checkpoint holds: one of :data:`MODEL_KINDS`."""
    kind = _kind_of(read_checkpoint(path))
    if kind not in MODEL_KINDS:
        raise InputError(path, f"holds an unknown model {kind!r}")
    return kind


def load_model(path: str | os.PathLike, device: str | None = None):
    """Load either model from its checkpoint, whichever it is."""
    return model_class(checkpoint_kind(path)).load(path, device=device)

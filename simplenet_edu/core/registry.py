"""The models by name, and one loader that reads which one a checkpoint holds.

``simplenet`` is :class:`~simplenet_edu.simplenet.model.SimpleNet` (Liu et al., CVPR 2023),
``supersimplenet`` its successor :class:`~simplenet_edu.supersimplenet.model.SuperSimpleNet` (Rolih et
al., ICPR 2024). Both write the checkpoints of :mod:`simplenet_edu.core.checkpoint`, whose ``"model"``
key names the kind; :func:`load_model` picks the class from it. A new model is registered with one
line in :data:`MODELS`.

The core sits below the models (they import it), so it names them here instead of importing them:
each is imported on first use. This module and the configuration classes load without torch, so
the command line builds its options without it.
"""

from __future__ import annotations

import importlib
import os

from ..utils.errors import InputError
from .checkpoint import checkpoint_kind as _kind_of
from .checkpoint import read_checkpoint

# kind -> (its model class, its configuration class), each "module:name" inside simplenet_edu. The
# configuration modules are torch-free.
MODELS = {
    "simplenet": ("simplenet.model:SimpleNet", "simplenet.config:SimpleNetConfig"),
    "supersimplenet": ("supersimplenet.model:SuperSimpleNet", "supersimplenet.config:SuperSimpleNetConfig"),
}
MODEL_KINDS = tuple(MODELS)
_PACKAGE = __name__.split(".")[0]


def _import(kind: str, which: int):
    if kind not in MODELS:
        raise InputError("--model", f"unknown model {kind!r}; choose from {', '.join(MODEL_KINDS)}")
    module, name = MODELS[kind][which].split(":")
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)


def model_class(kind: str):
    """The class for a model name."""
    return _import(kind, 0)


def config_class(kind: str):
    """The configuration class for a model name (torch-free)."""
    return _import(kind, 1)


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

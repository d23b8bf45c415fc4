"""One checkpoint format for every model: a ``torch.save`` dict, written atomically, read with checks.

::

    {"format": "simplenet-edu", "version": 1, "model": "<kind>", "config": {...},
     "<part>": state_dict, ...,            # the trained modules (adaptor, discriminator, head...)
     "state": {...},                       # thresholds, spreads, shapes, counts, timings
     "history": [...]}                     # the training curves

The frozen backbone is not stored: it is rebuilt from its source. ``"model"`` names the class
(:mod:`simplenet_edu.core.registry`); a file without it holds a SimpleNet.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..utils.atomic import atomic_path
from ..utils.errors import InputError

CHECKPOINT_FORMAT = "simplenet-edu"
CHECKPOINT_VERSION = 1


class _KeptErrors:
    """A binary file's ``write``, keeping the ``OSError`` it raises: torch's zip writer turns the error
    of a failed write (no space left...) into ``RuntimeError: ... unexpected pos``."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        try:
            self.handle.flush()
        except OSError as error:
            self.error = error
            raise


def write_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` with the format's header, atomically (a temporary file, then a rename).

    ``torch.save`` writes into an open file, so that a failed write raises the operating system's own
    error (a full disk: ``ENOSPC``), which :func:`~simplenet_edu.utils.atomic.atomic_path` turns into
    the one-line ``WriteError``."""
    import torch  # here, not above: the registry reads model kinds through this module without torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        kept = _KeptErrors(handle)
        try:
            torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, kept)
        except RuntimeError:
            if kept.error is None:
                raise
            raise kept.error from None
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checked payload of a simplenet-edu checkpoint, or a one-line :class:`InputError`."""
    import torch

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
    return payload


def checkpoint_kind(payload: dict) -> str:
    """The model a checked payload holds (``"simplenet"`` when the file does not say)."""
    return payload.get("model", "simplenet")

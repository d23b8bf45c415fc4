"""What every model's configuration shares: a dict round trip and a check of every field when made.

A configuration is a plain dataclass of values (torch-free, so that the command line builds its
options without loading torch). Subclasses list their rules in :meth:`ModelConfig.problems`; a
configuration that breaks one cannot be made: ``SimpleNetConfig(steps=0)`` raises
:class:`~simplenet_edu.utils.errors.InputError` (a ``ValueError``) naming the field. Change a
configuration with :meth:`ModelConfig.replace`, which checks again.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from ..utils.errors import InputError

C = TypeVar("C", bound="ModelConfig")


class ModelConfig:
    """Mixin for the ``@dataclass`` configurations of the models."""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            name, problem = problems[0]
            raise InputError(name, f"{problem}, got {getattr(self, name)!r}")

    def problems(self) -> list[tuple[str, str]]:
        """``[(field, what is wrong), ...]`` for every field that breaks a rule; empty when all is well."""
        return []

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plain values (what a checkpoint and a results JSON store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """The configuration of :meth:`to_dict`'s output (or of a JSON file): unknown keys are ignored
        (a newer file), missing ones take their defaults, lists come back as the tuples they were."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})


def positive(value) -> bool:
    """A whole number of at least 1 (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def size_ok(value, optional: bool = False) -> bool:
    """An image side, or a ``(height, width)`` pair, of positive integers."""
    if value is None:
        return optional
    if isinstance(value, (tuple, list)):
        return len(value) == 2 and all(positive(v) for v in value)
    return positive(value)

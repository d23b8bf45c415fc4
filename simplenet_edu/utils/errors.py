"""The one exception type for a user's mistake.

Bad input (a missing folder, an unreadable image, a checkpoint that is not ours...) raises
:class:`InputError` with a one-line message that names the path and what is wrong. The command line
catches it, prints the line and exits with code 2, so a user never sees a stack trace for a mistake
of theirs. Bugs in the library stay ordinary exceptions with their traceback.

A check that finds several mistakes at once (:func:`simplenet_edu.data.check_dataset`) raises
:class:`InputErrors`: still an :class:`InputError`, with one line per mistake.

A file that cannot be written (a full disk, no permission, a parent of the path that is a file)
raises :class:`WriteError`: the same one line, naming the path and the reason, the same exit code 2
(:mod:`simplenet_edu.utils.atomic` raises it and leaves nothing half-written behind).
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A user's mistake, explained in one line that names the offending path or argument."""

    def __init__(self, where: str | Path | None, problem: str):
        self.where = None if where is None else str(where)
        self.problem = problem
        super().__init__(problem if where is None else f"{where}: {problem}")

    def lines(self) -> list[str]:
        """What the command line prints, one ``simplenet-edu: error:`` line each."""
        return [str(self)]


class InputErrors(InputError):
    """Several mistakes found in one pass, each an :class:`InputError` naming its file.

    ``errors`` holds them all; ``lines()`` (and ``str()``) gives the first ``limit`` of them, one per
    line, and a last line that counts the rest.
    """

    def __init__(self, errors: list[InputError], where: str | Path | None = None, limit: int = 20):
        self.errors = list(errors)
        self.limit = limit
        super().__init__(where, f"{len(self.errors)} problems")
        self.args = ("\n".join(self.lines()),)

    def lines(self) -> list[str]:
        shown = [str(error) for error in self.errors[: self.limit]]
        if len(self.errors) > self.limit:
            shown.append(f"... and {len(self.errors) - self.limit} more problems")
        return shown

    def __str__(self) -> str:
        return "\n".join(self.lines())


class WriteError(InputError):
    """A file or folder that could not be written, in one line: the path and why (``no space left on
    device``, ``permission denied``, ``read-only file system``, ``<parent> is a file, not a folder``)."""


class DataWarning(UserWarning):
    """Something about the data that changes what a result means (no masks: no pixel metrics).

    The command line prints it as one ``simplenet-edu: warning:`` line."""

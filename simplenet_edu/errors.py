"""The one exception type for a user's mistake.

Bad input (a missing folder, an unreadable image, a checkpoint that is not ours...) raises
:class:`InputError` with a one-line message that names the path and what is wrong. The command line
catches it, prints the line and exits with code 2, so a user never sees a stack trace for a mistake
of theirs. Bugs in the library stay ordinary exceptions with their traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A user's mistake, explained in one line that names the offending path or argument."""

    def __init__(self, where: str | Path | None, problem: str):
        self.where = None if where is None else str(where)
        self.problem = problem
        super().__init__(problem if where is None else f"{where}: {problem}")

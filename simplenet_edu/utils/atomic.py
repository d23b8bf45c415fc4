"""Every file and folder the package writes appears whole or not at all, and a write that fails says why in one line.

A file is written under a hidden temporary name beside its target (``.NAME.tmp`` plus the target's
suffix, so that writers that read the format from the name still can) and renamed over the target
when complete; the temporary file is removed on every way out, an error or Ctrl-C included. A rename
within one folder is atomic, so a reader (or the next run, after a crash) sees the old file or the
new one, never half of one. Folders are built under a fresh hidden name and moved into place the same way.
A process killed outright (SIGKILL, a power cut) cannot remove its temporary file: :func:`remove_temps`
clears such leftovers, and nothing reads a temporary name as a result.

A write that fails for lack of space, for permission, on a read-only file system, or because a parent
of the path is a file raises :class:`~simplenet_edu.utils.errors.WriteError`, one line naming the
path and the reason (``m.pt: cannot write: no space left on device``), after the temporary file is
removed. :func:`check_writable` asks the cheap part of that question (the folder, the permission)
before any long work.

A table that grows as results come (``scores.csv``) is written row by row (:class:`CsvRows`): each
row whole, so a run cut short keeps a valid CSV of everything up to there. Its text cells never run
as spreadsheet formulas (:func:`csv_cell`).

>>> with atomic_path("model.pt") as tmp:          # doctest: +SKIP
...     torch.save(payload, tmp)
>>> write_text("results.json", json.dumps(report))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Iterator

from .errors import WriteError


def temp_path(path: str | os.PathLike) -> Path:
    """The hidden temporary name that :func:`atomic_path` writes ``path`` under."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{path.suffix}")


# ------------------------------------------------------------------ why a write failed


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """The first of ``path``'s parents (or ``path`` itself) that exists and is not a folder."""
    for candidate in [*reversed(path.parents), path]:
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def write_reason(error: OSError, path: str | os.PathLike) -> str:
    """What a failed write of ``path`` means, in words: ``no space left on device``, ``permission
    denied``, ``read-only file system``, ``<parent> is a file, not a folder``..."""
    path = Path(path)
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = _file_in_the_way(path)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    if error.errno == errno.EISDIR or (path.is_dir() and error.errno in (errno.EEXIST, errno.ENOTEMPTY)):
        return "it is a folder"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    text = os.strerror(error.errno) if error.errno is not None else str(error)
    return text[:1].lower() + text[1:]


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Raise :class:`WriteError` now if ``path`` (a file, or with ``folder`` a folder) clearly cannot be
    written: a parent is a file, the file is a folder, the file system is read-only, no permission.
    Creates nothing; space is not checked (only the write itself can tell)."""
    path = Path(path)
    if not folder and path.is_dir():
        raise WriteError(path, "cannot write: it is a folder")
    existing = _nearest_existing(path if folder else path.parent)
    if not existing.is_dir():
        raise WriteError(path, f"cannot write: {existing} is a file, not a folder")
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            raise WriteError(path, "cannot write: read-only file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WriteError(path, f"cannot write: permission denied (in {existing})")
    return path


def make_folder(folder: str | os.PathLike, for_path: str | os.PathLike | None = None) -> Path:
    """``mkdir -p folder``; a failure is a :class:`WriteError` naming ``for_path`` (default the folder)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(for_path or folder, f"cannot write: {write_reason(error, folder)}") from error
    return folder


# ------------------------------------------------------------------ whole files


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any exception it is removed.

    A failed write (an ``OSError`` with an error number) becomes a one-line :class:`WriteError` naming
    ``path`` and the reason. A writer that hides the operating system's error is given an open file
    instead of the path, so that the error comes from the write itself
    (:func:`~simplenet_edu.core.checkpoint.write_checkpoint`)."""
    path = Path(path)
    make_folder(path.parent, path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        if error.errno is None:
            raise
        raise WriteError(path, f"cannot write: {write_reason(error, path)}") from error
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (``newline=""`` keeps a CSV's line endings as they are)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline=newline) as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


_TEMP_NAME = re.compile(r"^\..+\.tmp(\.[^.]+)?$")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary name of this module (``.NAME.tmp.SUFFIX``, ``.PREFIX-HEX.tmp``)."""
    return bool(_TEMP_NAME.match(name))


def remove_temps(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Remove the temporary files that a killed writer left in ``folder`` (and below); the removed paths.
    Only for a folder that no other process is writing at the same time."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(".*") if recursive else folder.glob(".*")
    removed = []
    for path in sorted(found):
        if path.is_file() and is_temp_name(path.name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def temp_name(parent: Path, prefix: str) -> Path:
    """A fresh hidden name in ``parent`` for a folder being built, so that it never has a real name."""
    return parent / f".{prefix}-{uuid.uuid4().hex[:12]}.tmp"


def replace_folder(built: Path, target: Path) -> None:
    """Replace ``target`` (if any) by the finished folder ``built``, both in the same parent folder."""
    if not target.exists():
        os.replace(built, target)
        return
    old = temp_name(target.parent, f"{target.name}-old")
    os.replace(target, old)
    try:
        os.replace(built, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old)


# ------------------------------------------------------------------ a CSV, row by row

# What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value):
    """A CSV cell that a spreadsheet shows as written: text beginning with ``=``, ``+``, ``-``, ``@``, a
    tab or a carriage return gets a leading apostrophe (``=HYPERLINK(1).png`` -> ``'=HYPERLINK(1).png``);
    numbers (``-0.25``) and other values are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


class CsvRows:
    """A CSV written row by row straight into ``path`` (truncated first), each row whole.

    A run cut short (Ctrl-C, a kill, a full disk) leaves a valid CSV: the header and every row written
    up to there. A row that fails to write is cut off again and raises :class:`WriteError`; a header
    that fails leaves no file. Every cell goes through :func:`csv_cell`.

    >>> with CsvRows("scores.csv", ["path", "score"]) as table:      # doctest: +SKIP
    ...     table.write({"path": "a.png", "score": "0.25"})
    """

    def __init__(self, path: str | os.PathLike, fields: Iterable[str]):
        self.path, self.fields, self.rows = Path(path), list(fields), 0
        make_folder(self.path.parent, self.path)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as error:
            raise WriteError(self.path, f"cannot write: {write_reason(error, self.path)}") from error
        self._size = 0
        try:
            self._append(self.fields)
        except BaseException:
            self.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise

    def write(self, row: dict) -> None:
        """Append ``row`` (missing fields empty)."""
        self._append([row.get(field, "") for field in self.fields])
        self.rows += 1

    def _append(self, cells: list) -> None:
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerow([csv_cell(cell) for cell in cells])
        encoded = buffer.getvalue().encode("utf-8")
        data = memoryview(encoded)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)   # no half row stays behind
            if isinstance(error, OSError) and error.errno is not None:
                raise WriteError(self.path, f"cannot write: {write_reason(error, self.path)}") from error
            raise
        self._size += len(encoded)

    def close(self) -> Path:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return self.path

    def __enter__(self) -> "CsvRows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

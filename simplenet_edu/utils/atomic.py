"""Every file and folder the package writes appears whole or not at all.

A file is written under a hidden temporary name beside its target (``.NAME.tmp`` plus the target's
suffix, so that writers that read the format from the name still can) and renamed over the target
when complete; the temporary file is removed on every way out, an error or Ctrl-C included. A rename
within one folder is atomic, so a reader (or the next run, after a crash) sees the old file or the
new one, never half of one. Folders are built under a fresh hidden name and moved into place the same way.

>>> with atomic_path("model.pt") as tmp:          # doctest: +SKIP
...     torch.save(payload, tmp)
>>> write_text("results.json", json.dumps(report))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def temp_path(path: str | os.PathLike) -> Path:
    """The hidden temporary name that :func:`atomic_path` writes ``path`` under."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
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

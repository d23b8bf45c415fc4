"""Writing folders atomically: a half-built folder never has its real name."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path



def _temp_name(parent: Path, prefix: str) -> Path:
    """A fresh hidden name in `parent`, so that a half-built folder never has a real name."""
    return parent / f".{prefix}-{uuid.uuid4().hex[:12]}.tmp"


def _move_into_place(built: Path, target: Path) -> None:
    """Replace `target` (if any) by the finished folder `built`, both in the same parent folder."""
    if not target.exists():
        os.replace(built, target)
        return
    old = _temp_name(target.parent, f"{target.name}-old")
    os.replace(target, old)
    try:
        os.replace(built, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old)

"""Shared fixtures: where the small real hazelnut data set lives, when it is on this machine."""

import os
from pathlib import Path

import pytest

HAZELNUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hazelnut_toy"


@pytest.fixture(scope="session")
def hazelnut_root() -> Path:
    """The hazelnut toy set in MVTec layout (env var SIMPLENET_EDU_HAZELNUT overrides the path)."""
    root = Path(os.environ.get("SIMPLENET_EDU_HAZELNUT") or HAZELNUT)
    if not (root / "train" / "good").is_dir():
        pytest.skip(f"hazelnut toy data not found at {root} (set SIMPLENET_EDU_HAZELNUT to its folder)")
    return root

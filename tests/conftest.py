"""Shared test set-up: a per-session cache directory so tests never touch the user's cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="byol-bench-test-cache-"))
os.environ.setdefault("BYOL_BENCH_CACHE", str(_SESSION_CACHE))


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The cache directory every test in this session shares (generated datasets are reused)."""
    return Path(os.environ["BYOL_BENCH_CACHE"])

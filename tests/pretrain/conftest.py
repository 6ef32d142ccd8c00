"""Fixtures of the pretraining tests; the tiny configs live in ``pretrain_tiny``."""

from __future__ import annotations

import pytest
import torch
from pretrain_tiny import tiny_config


@pytest.fixture
def tiny() -> type:
    return tiny_config  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: on a shared 2-core machine a second OpenMP thread makes small ops slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""Tiny artifacts for the downstream tests (16-px resnet18: fast on 2 CPU cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.baselines import random_init_artifact


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory) -> Path:
    return random_init_artifact(tmp_path_factory.mktemp("art") / "rand-s0", "resnet18", seed=0, input_size=16)


@pytest.fixture(scope="session")
def tiny_artifact_other(tmp_path_factory) -> Path:
    return random_init_artifact(tmp_path_factory.mktemp("art") / "rand-s1", "resnet18", seed=1, input_size=16)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread per test: on a shared 2-core machine OpenMP spinning makes the many tiny
    L-BFGS steps 20× slower with 2 threads than with 1. Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

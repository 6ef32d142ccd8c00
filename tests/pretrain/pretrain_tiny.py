"""Tiny BYOL configs for fast CPU tests (16-px digits, narrow heads, a few dozen images).

A module of its own (not ``conftest``): ``from conftest import …`` resolves to whichever ``conftest`` pytest
imported first, which depends on the order of the paths on the command line.
"""

from __future__ import annotations

from pathlib import Path

from pretrain.config import PretrainConfig, load_pretrain_config

CONFIGS = Path(__file__).resolve().parents[2] / "pretrain" / "configs"

TINY = [
    "data.image_size=16",
    "data.limit=48",
    "data.knn_limit=40",
    "heads.projector_hidden=32",
    "heads.projector_out=16",
    "heads.predictor_hidden=32",
    "optim.batch_size=16",
    "optim.warmup_epochs=1",
    "run.epochs=2",
    "run.progress=false",
    "run.log_every=1",
    "run.checkpoint_every=2",
    "run.threads=1",
]


def tiny_config(*overrides: str, base: str = "byol.yaml") -> PretrainConfig:
    """The shipped ``base`` config shrunk by ``TINY`` plus ``overrides``."""
    return load_pretrain_config(CONFIGS / base, [*TINY, *overrides])

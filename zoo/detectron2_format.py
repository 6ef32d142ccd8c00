"""torchvision ResNet → detectron2 ResNet weights, the one implementation both stages call.

Key mapping as in MoCo's ``convert-pretrain-to-detectron2.py``: ``conv1``/``bn1`` → ``stem.conv1``/
``stem.conv1.norm``; ``layerN`` → ``res{N+1}``; ``bnK`` → ``convK.norm``; ``downsample.0`` →
``shortcut`` and ``downsample.1`` → ``shortcut.norm``. ``fc.*`` is dropped. The ``.pkl`` holds numpy
arrays under ``"model"`` with ``matching_heuristics: True`` so detectron2's checkpointer adds the
``backbone.bottom_up.`` (FPN) or ``backbone.`` (C4) prefix itself.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from zoo.io import atomic_write_bytes

__all__ = [
    "torchvision_to_detectron2_key",
    "detectron2_to_torchvision_key",
    "torchvision_to_detectron2",
    "save_detectron2_pkl",
]


def torchvision_to_detectron2_key(key: str) -> str:
    """Rename one torchvision ResNet key to detectron2's ResNet naming."""
    if key.startswith(("conv1.", "bn1.")):
        key = "stem." + key
    key = re.sub(r"^layer(\d)", lambda m: f"res{int(m.group(1)) + 1}", key)
    key = re.sub(r"\bbn(\d)\b", r"conv\1.norm", key)
    key = key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
    return key


def detectron2_to_torchvision_key(key: str) -> str:
    """The inverse of :func:`torchvision_to_detectron2_key` (``byol-bench import --layout detectron2``).

    Other names (Caffe2-style ``res2_0_branch2a_w``, ``fc1000``) come back unchanged, so a strict key
    check reports them as unknown.
    """
    key = re.sub(r"^stem\.conv1\.norm\.", "bn1.", key)
    key = re.sub(r"^stem\.(?=conv1\.)", "", key)
    key = re.sub(r"^res([2-5])\.", lambda m: f"layer{int(m.group(1)) - 1}.", key)
    key = key.replace(".shortcut.norm.", ".downsample.1.").replace(".shortcut.", ".downsample.0.")
    key = re.sub(r"\.conv(\d)\.norm\.", r".bn\1.", key)
    return key


def torchvision_to_detectron2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole state dict, ``fc.*`` and BN ``num_batches_tracked`` dropped; names must stay unique."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        new = torchvision_to_detectron2_key(k)
        if new in out:
            raise ValueError(f"two torchvision keys map to detectron2 key '{new}'")
        out[new] = v
    return out


def save_detectron2_pkl(
    path: str | os.PathLike, state: dict[str, torch.Tensor], extra: dict[str, Any] | None = None
) -> Path:
    """Write a detectron2-loadable ``.pkl`` (atomically) from a torchvision ResNet state dict."""
    converted = {k: v.detach().cpu().numpy() for k, v in torchvision_to_detectron2(state).items()}
    obj = {"model": converted, "__author__": "byol-bench", "matching_heuristics": True, **(extra or {})}
    return atomic_write_bytes(path, pickle.dumps(obj, protocol=4))

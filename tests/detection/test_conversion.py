"""torchvision → detectron2 conversion: every backbone tensor, unique names, values kept (no detectron2)."""

from __future__ import annotations

import pytest
import torch

from zoo.backbones import build_backbone
from zoo.detectron2_format import torchvision_to_detectron2, torchvision_to_detectron2_key


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_every_backbone_tensor_converted_with_equal_values(arch: str) -> None:
    torch.manual_seed(0)
    state = build_backbone(arch).state_dict()
    out = torchvision_to_detectron2(state)
    kept = [k for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert len(out) == len(kept)  # nothing lost, no two keys merged
    for k in kept:
        assert torch.equal(out[torchvision_to_detectron2_key(k)], state[k])
    assert all(k.startswith(("stem.", "res2.", "res3.", "res4.", "res5.")) for k in out)


def test_key_mapping_by_hand() -> None:
    cases = {
        "conv1.weight": "stem.conv1.weight",
        "bn1.running_var": "stem.conv1.norm.running_var",
        "layer1.0.conv2.weight": "res2.0.conv2.weight",
        "layer3.1.bn2.bias": "res4.1.conv2.norm.bias",
        "layer4.0.downsample.0.weight": "res5.0.shortcut.weight",
        "layer2.0.downsample.1.running_mean": "res3.0.shortcut.norm.running_mean",
        "layer4.2.bn3.weight": "res5.2.conv3.norm.weight",
    }
    for tv, d2 in cases.items():
        assert torchvision_to_detectron2_key(tv) == d2

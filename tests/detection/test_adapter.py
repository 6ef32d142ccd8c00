"""The backbone adapter (any registered backbone → detectron2 FPN) and the choice between it and the .pkl route."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.detectron2
pytest.importorskip("detectron2")

from detectron2.layers import FrozenBatchNorm2d  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, build_model  # noqa: E402

from downstream.detection.backbone import (  # noqa: E402
    FPN_STRIDES,
    AdapterError,
    ByolBenchResNet,
    register_backbones,
    stage_geometry,
)
from downstream.detection.config import DetectionConfig, load_preset  # noqa: E402
from downstream.detection.modeling import build_d2_config  # noqa: E402
from downstream.detection.weights import (  # noqa: E402
    BackboneWeights,
    DetectionWeightsError,
    backbone_weights,
    choose_route,
    load_backbone_strict,
)
from zoo.artifact import ArtifactMeta, load_artifact, save_artifact  # noqa: E402
from zoo.backbones import build_backbone, get_spec  # noqa: E402
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def _cfg(weights: BackboneWeights, preset: str = "shapes-det-cpu"):  # noqa: ANN202
    return build_d2_config(
        load_preset(preset),
        DetectionConfig(preset=preset),
        backbone=weights,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        num_classes=10,
        train_name="unused_train",
        test_name="unused_test",
        output_dir="/nonexistent",
        seed=0,
        device="cpu",
        num_gpus=0,
    )


def _artifact(tmp_path: Path, arch: str) -> Path:
    """An artifact with non-trivial BN statistics, so that a missed or mis-mapped buffer shows."""
    torch.manual_seed(1)
    model = build_backbone(arch)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    meta = ArtifactMeta(architecture=arch, feature_dim=get_spec(arch).feature_dim, input_size=32, method="test")
    return save_artifact(tmp_path / arch, model, meta)


# ---- routes ---------------------------------------------------------------------------------------------


def test_route_choice_keeps_pkl_for_standard_resnets_and_refuses_small_stem() -> None:
    assert choose_route("resnet18") == "pkl" and choose_route("resnet50") == "pkl"
    assert choose_route("resnet18-w32") == "adapter"
    assert choose_route("resnet18", "adapter") == "adapter"  # forced
    with pytest.raises(DetectionWeightsError, match=r"resnet18-w32.*width 32.*adapter"):
        choose_route("resnet18-w32", "pkl")
    with pytest.raises(AdapterError, match=r"resnet18-small.*strides 1/2/4/8.*need 4/8/16/32"):
        choose_route("resnet18-small")
    with pytest.raises(ValueError, match="route must be one of"):
        choose_route("resnet18", "onnx")
    with pytest.raises(ValueError, match="route must be one of"):
        DetectionConfig(route="onnx")


def test_default_preset_follows_the_dataset() -> None:
    assert load_preset(None, dataset="shapes-det").name == "shapes-det-cpu"
    assert load_preset(None, dataset="digits-det").name == "digits-det-cpu"
    assert load_preset(None, dataset="coco").name == "digits-det-cpu"  # no CPU preset of its own
    assert load_preset("shapes-det-cpu").route == "auto"


def test_adapter_needs_an_fpn_preset() -> None:
    with pytest.raises(ValueError, match="FPN preset"):
        _cfg(BackboneWeights("adapter", "resnet50", ""), preset="voc0712-r50-c4-24k")


def test_registration_is_explicit_and_idempotent() -> None:
    register_backbones()
    register_backbones()  # detectron2's registry raises on a repeated name; ours must not call it twice
    assert "build_byol_bench_fpn_backbone" in BACKBONE_REGISTRY
    assert "build_byol_bench_resnet_backbone" in BACKBONE_REGISTRY


# ---- the adapter --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "channels"), [("resnet18-w32", (32, 64, 128, 256)), ("resnet18", (64, 128, 256, 512))]
)
def test_adapter_output_shapes_and_strides(arch: str, channels: tuple[int, ...]) -> None:
    model = build_model(_cfg(BackboneWeights("adapter", arch, "")))
    bottom_up = model.backbone.bottom_up
    assert isinstance(bottom_up, ByolBenchResNet)
    shapes = bottom_up.output_shape()
    assert {k: s.stride for k, s in shapes.items()} == FPN_STRIDES
    assert tuple(s.channels for s in shapes.values()) == channels
    model.eval()
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        feats = bottom_up(x)
        pyramid = model.backbone(x)
    for (name, f), c in zip(feats.items(), channels, strict=True):
        assert f.shape == (1, c, 128 // FPN_STRIDES[name], 96 // FPN_STRIDES[name])
    assert [tuple(p.shape[-2:]) for p in pyramid.values()] == [(32, 24), (16, 12), (8, 6), (4, 3), (2, 2)]
    # the .pkl route's settings: BN in training mode, nothing frozen (FREEZE_AT=0)
    assert all(not isinstance(m, FrozenBatchNorm2d) for m in bottom_up.modules())
    assert all(p.requires_grad for p in bottom_up.parameters())


def test_adapter_and_pkl_route_give_the_same_features(tmp_path: Path) -> None:
    """Standard resnet18, eval mode: detectron2's ResNet from the .pkl and the adapter compute the same res2-res5."""
    art = load_artifact(_artifact(tmp_path, "resnet18"))
    pkl_model = build_model(_cfg(backbone_weights("pkl", art, tmp_path)))
    load_backbone_strict(pkl_model, tmp_path / "backbone_d2.pkl")
    adapter_model = build_model(_cfg(backbone_weights("adapter", art, tmp_path)))
    n_tv = sum(1 for k in art.model.state_dict() if not k.endswith("num_batches_tracked"))
    assert adapter_model.backbone.bottom_up.tensors_loaded == n_tv
    torch.manual_seed(0)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        ref = pkl_model.eval().backbone.bottom_up(x)
        out = adapter_model.eval().backbone.bottom_up(x)
    assert list(out) == list(ref) == ["res2", "res3", "res4", "res5"]
    for k in ref:
        assert ref[k].abs().max() > 0.1  # not a trivially zero map
        torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-4)


def test_adapter_loads_the_artifact_and_checks_its_hash(tmp_path: Path) -> None:
    art = load_artifact(_artifact(tmp_path, "resnet18-w32"))
    model = build_model(_cfg(backbone_weights("adapter", art, tmp_path)))
    bottom_up = model.backbone.bottom_up
    assert torch.equal(bottom_up.layer3[1].bn2.running_var, art.model.layer3[1].bn2.running_var)
    assert torch.equal(bottom_up.conv1.weight, art.model.conv1.weight)
    wrong = BackboneWeights("adapter", "resnet18-w32", str(art.path), "0" * 64)
    with pytest.raises(AdapterError, match="sha256"):
        build_model(_cfg(wrong))
    with pytest.raises(AdapterError, match="architecture 'resnet18-w32'"):
        build_model(_cfg(BackboneWeights("adapter", "resnet18", str(art.path))))


def test_adapter_norms_and_freezing_keep_the_function(tmp_path: Path) -> None:
    """FrozenBN/SyncBN hold the artifact's statistics (same eval output); FREEZE_AT freezes as detectron2's ResNet."""
    art = load_artifact(_artifact(tmp_path, "resnet18-w32"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = ByolBenchResNet(build_backbone("resnet18-w32")).eval()
        ref.load_state_dict(art.model.state_dict(), strict=False)
        ref_out = ref(x)
    frozen = ByolBenchResNet(load_artifact(art.path).model, norm="FrozenBN", freeze_at=2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    with torch.no_grad():
        for k, v in frozen(x).items():  # FrozenBN normalises with the artifact's running statistics
            torch.testing.assert_close(v, ref_out[k], rtol=1e-4, atol=1e-4)
    partial = ByolBenchResNet(load_artifact(art.path).model, norm="BN", freeze_at=2)
    trainable = {k.split(".")[0] for k, p in partial.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}  # stem + res2 frozen, as detectron2's FREEZE_AT=2
    assert isinstance(partial.bn1, FrozenBatchNorm2d) and isinstance(partial.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(partial.layer2[0].bn1, torch.nn.BatchNorm2d)
    sync = ByolBenchResNet(load_artifact(art.path).model, norm="SyncBN")
    assert isinstance(sync.layer4[1].bn2, torch.nn.SyncBatchNorm)
    assert torch.equal(sync.layer4[1].bn2.running_mean, art.model.layer4[1].bn2.running_mean)
    with pytest.raises(AdapterError, match="NORM 'GN'"):
        ByolBenchResNet(build_backbone("resnet18-w32"), norm="GN")


def test_stage_geometry_of_the_small_stem() -> None:
    geometry = stage_geometry(build_backbone("resnet18-small"))
    assert [s.stride for s in geometry.values()] == [1, 2, 4, 8]


def test_adapter_route_needs_the_artifact_directory(tmp_path: Path) -> None:
    from zoo.artifact import Artifact

    art = load_artifact(_artifact(tmp_path, "resnet18-w32"))
    detached = Artifact(path=tmp_path / "nowhere", meta=art.meta, model=art.model)
    with pytest.raises(DetectionWeightsError, match="no meta.json"):
        backbone_weights("adapter", detached, tmp_path)
    assert backbone_weights("pkl", detached, tmp_path).path.endswith(".pkl")  # the .pkl route converts in memory


# ---- end to end ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_shapes_det_with_resnet18_w32_end_to_end(tmp_path: Path) -> None:
    """A few iterations of Faster R-CNN on a tiny shapes-det through the eval API: the adapter route, a finite AP."""
    from downstream.api import evaluate
    from zoo.baselines import random_init_artifact
    from zoo.datasets import DatasetOptions

    art = random_init_artifact(tmp_path / "art", arch="resnet18-w32")
    opts = DatasetOptions(det_canvas=64, det_train_images=4, det_val_images=2, cache_dir=str(tmp_path / "data"))
    rec = evaluate(
        art,
        "detection",
        "shapes-det",
        dataset_options=opts,
        overrides=["max_iter=2", "trials=1"],
        device="cpu",
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
    )
    m = rec["metrics"]
    assert m["trials"] == 1.0 and 0.0 <= m["AP"] <= 100.0 and 0.0 <= m["AP50"] <= 100.0
    assert rec["selection"]["preset"] == "shapes-det-cpu" and rec["selection"]["backbone_route"] == "adapter"
    (trial,) = json.loads((tmp_path / "work" / "detection" / "trials.json").read_text())
    n_w32 = sum(1 for k in build_backbone("resnet18-w32").state_dict() if not k.endswith("num_batches_tracked"))
    assert trial["backbone_route"] == "adapter" and trial["backbone_tensors_loaded"] == n_w32
    cfg_yaml = (tmp_path / "work" / "detection" / "trial0" / "config.yaml").read_text()
    assert "build_byol_bench_fpn_backbone" in cfg_yaml and "RES2_OUT_CHANNELS: 32" in cfg_yaml

import json

import pytest
import torch
import torchvision

from zoo.artifact import ArtifactError, ArtifactMeta, load_artifact, load_heads, read_meta, save_artifact
from zoo.backbones import BACKBONES, BackboneError, build_backbone, get_spec, stage_features
from zoo.baselines import SupervisedConfig, random_init_artifact, supervised_artifact
from zoo.heads import MLPSpec, build_mlp


def _meta(arch="resnet18", **kw):
    return ArtifactMeta(architecture=arch, feature_dim=get_spec(arch).feature_dim, input_size=32, method="test", **kw)


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_backbones_report_feature_dim(arch):
    model = build_backbone(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, model.feature_dim) == (2, get_spec(arch).feature_dim)
    feats = stage_features(model, torch.randn(2, 3, 32, 32))
    assert feats["layer4"].shape[1] == model.feature_dim


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(BackboneError, match="unknown architecture 'vit'.*resnet18"):
        build_backbone("vit")


def test_round_trip_same_outputs_and_torchvision_strict(tmp_path):
    torch.manual_seed(0)
    model = build_backbone("resnet18").eval()
    path = save_artifact(tmp_path / "art", model, _meta(seed=3, dataset="digits-m"))
    art = load_artifact(path)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), art.model(x))
    assert not art.model.training
    meta = json.loads((path / "meta.json").read_text())
    for key in ("architecture", "feature_dim", "input_size", "mean", "std", "method", "config", "dataset", "epochs"):
        assert key in meta
    assert meta["seed"] == 3 and meta["code_version"]["package"] and meta["created"]
    assert len(meta["weights_sha256"]) == 64
    # torchvision-compatible: strict load after dropping fc
    from safetensors.torch import load_file

    tv = torchvision.models.resnet18()
    tv.fc = torch.nn.Identity()
    tv.load_state_dict(load_file(str(path / "weights.safetensors")), strict=True)
    with torch.no_grad():
        assert torch.equal(tv.eval()(x), model(x))


def test_heads_round_trip(tmp_path):
    spec = MLPSpec(512, 32, 8)
    head = build_mlp(spec).eval()
    path = save_artifact(tmp_path / "a", build_backbone("resnet18"), _meta(), heads={"projector": (spec, head)})
    heads = load_heads(load_artifact(path))
    x = torch.randn(3, 512)
    with torch.no_grad():
        assert torch.equal(heads["projector"](x), head(x))


def test_hash_mismatch_is_detected(tmp_path):
    path = save_artifact(tmp_path / "a", build_backbone("resnet18"), _meta())
    data = bytearray((path / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match meta.json"):
        load_artifact(path)


def test_missing_files_and_bad_meta(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="meta.json is missing"):
        load_artifact(tmp_path / "empty")
    path = save_artifact(tmp_path / "a", build_backbone("resnet18"), _meta())
    (path / "weights.safetensors").unlink()
    with pytest.raises(ArtifactError, match="weights.safetensors is missing"):
        load_artifact(path)
    path = save_artifact(tmp_path / "b", build_backbone("resnet18"), _meta())
    meta = json.loads((path / "meta.json").read_text())
    meta["architecture"] = "vgg11"
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="unknown architecture 'vgg11'"):
        load_artifact(path)
    meta["architecture"] = "resnet18"
    meta["colour"] = "blue"
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="unknown key 'colour'"):
        read_meta(path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    # weights of the small-stem variant under a meta that claims the standard stem
    small = build_backbone("resnet18-small")
    path = save_artifact(tmp_path / "a", small, _meta("resnet18-small"))
    meta = json.loads((path / "meta.json").read_text())
    meta["architecture"] = "resnet18"
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"'conv1.weight' has shape \(64, 3, 3, 3\)"):
        load_artifact(path)


def test_save_replaces_atomically_and_leaves_no_temp(tmp_path):
    a = save_artifact(tmp_path / "a", build_backbone("resnet18"), _meta(seed=1))
    first = read_meta(a).weights_sha256
    torch.manual_seed(5)
    save_artifact(tmp_path / "a", build_backbone("resnet18"), _meta(seed=2))
    assert read_meta(a).seed == 2 and read_meta(a).weights_sha256 != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_random_init_is_seeded(tmp_path):
    a = load_artifact(random_init_artifact(tmp_path / "a", seed=0))
    b = load_artifact(random_init_artifact(tmp_path / "b", seed=0))
    c = load_artifact(random_init_artifact(tmp_path / "c", seed=1))
    assert a.sha256 == b.sha256 != c.sha256
    assert a.meta.method == "random-init"


def test_supervised_baseline_learns(tmp_path):
    cfg = SupervisedConfig(dataset="digits", image_size=16, epochs=3, batch_size=64, lr=0.05, warmup_epochs=1)
    logs = []
    art = load_artifact(supervised_artifact(tmp_path / "sup", cfg, log=logs.append))
    assert art.meta.method == "supervised" and art.meta.config["epochs"] == 3
    last_acc = float(logs[-1].split("train-acc ")[1])
    assert last_acc > 0.5  # chance is 0.1: the labels were used

"""``byol-bench import``: checkpoints built in each library's layout from one known torchvision ResNet must
import to bit-identical eval-mode features; unknown/missing keys, unsafe pickles and look-alike networks
are refused with messages that name them."""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from benchmarks.cli import main as cli_main
from zoo.artifact import load_artifact, read_meta
from zoo.backbones import build_backbone
from zoo.detectron2_format import (
    detectron2_to_torchvision_key,
    save_detectron2_pkl,
    torchvision_to_detectron2_key,
)
from zoo.importers import (
    LAYOUTS,
    CheckpointImportError,
    KeyMismatchError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    detect_layout,
    map_checkpoint,
    read_checkpoint,
)
from zoo.importers import import_checkpoint as _import_checkpoint
from zoo.io import sha256_file

# Most tests are about keys; the size evaluators feed is required (nothing here records it) and is
# tested on its own below.
import_checkpoint = functools.partial(_import_checkpoint, input_size=64)


def _source(arch: str = "resnet18", seed: int = 0) -> nn.Module:
    """A torchvision ResNet with random weights *and* random BN statistics (eval mode)."""
    torch.manual_seed(seed)
    model = build_backbone(arch) if arch == "resnet18-small" else getattr(torchvision.models, arch)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_()
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def _features_of(source: nn.Module) -> nn.Module:
    ref = copy.deepcopy(source)
    ref.fc = nn.Identity()
    return ref.eval()


def _mlp(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, o))


def _trunk(source: nn.Module) -> nn.Module:
    t = copy.deepcopy(source)
    t.fc = nn.Identity()
    return t


def _sgd_state(module: nn.Module) -> dict:
    opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return opt.state_dict()


# ---- one builder per layout: (source model) -> checkpoint object saved with torch.save ----------------


def _torchvision(src):
    return src.state_dict()  # fc included: the classifier is dropped by the layout's rule


def _solo_learn(src):
    m = nn.Module()
    m.backbone = _trunk(src)  # solo/methods/base.py: backbone.fc = Identity
    m.classifier = nn.Linear(512, 10)
    m.projector = _mlp(512, 8)
    m.predictor = _mlp(8, 8)
    m.momentum_backbone = copy.deepcopy(m.backbone)
    m.momentum_projector = copy.deepcopy(m.projector)
    return {
        "epoch": 3,
        "global_step": 30,
        "pytorch-lightning_version": "2.2.1",
        "state_dict": m.state_dict(),
        "optimizer_states": [_sgd_state(m)],
        "lr_schedulers": [],
        "callbacks": {},
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
    }


def _lightly(src):
    m = nn.Module()  # benchmarks/imagenet/resnet50/byol.py
    m.backbone = _trunk(src)
    m.projection_head = _mlp(512, 8)
    m.prediction_head = _mlp(8, 8)
    m.teacher_backbone = copy.deepcopy(m.backbone)
    m.teacher_projection_head = copy.deepcopy(m.projection_head)
    m.online_classifier = nn.Module()
    m.online_classifier.classification_head = nn.Linear(512, 10)
    return {"state_dict": m.state_dict(), "hyper_parameters": {"batch_size_per_device": 128, "num_classes": 10}}


def _lightly_sequential(src):
    m = nn.Module()  # examples/pytorch/byol.py: a plain nn.Module, its state_dict saved as is
    m.backbone = nn.Sequential(*list(copy.deepcopy(src).children())[:-1])
    m.projection_head = _mlp(512, 8)
    m.prediction_head = _mlp(8, 8)
    m.backbone_momentum = copy.deepcopy(m.backbone)
    m.projection_head_momentum = copy.deepcopy(m.projection_head)
    return m.state_dict()


def _ddp(module: nn.Module) -> nn.Module:
    wrapper = nn.Module()
    wrapper.module = module  # DistributedDataParallel's 'module.' prefix
    return wrapper


def _moco_v2(src):
    m = nn.Module()  # moco/builder.py with --mlp
    m.encoder_q = copy.deepcopy(src)
    m.encoder_q.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 8))
    m.encoder_k = copy.deepcopy(m.encoder_q)
    m.register_buffer("queue", torch.randn(8, 32))
    m.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    wrapped = _ddp(m)
    return {"epoch": 200, "arch": "resnet18", "state_dict": wrapped.state_dict(), "optimizer": _sgd_state(wrapped)}


def _moco_v3(src):
    m = nn.Module()  # moco-v3 builder.py: fc replaced by the projector, plus momentum encoder and predictor
    m.base_encoder = copy.deepcopy(src)
    m.base_encoder.fc = _mlp(512, 8)
    m.momentum_encoder = copy.deepcopy(m.base_encoder)
    m.predictor = _mlp(8, 8)
    return {
        "epoch": 100,
        "arch": "resnet18",
        "state_dict": _ddp(m).state_dict(),
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
    }


def _mmselfsup(src):
    m = nn.Module()  # mmselfsup 1.x BYOL: backbone/neck/head + target_net = CosineEMA(Sequential(backbone, neck))
    m.backbone = _trunk(src)  # mmcls ResNet: conv1/bn1/layerN/downsample.0|1, no fc
    m.neck = _mlp(512, 8)
    m.head = nn.Module()
    m.head.predictor = _mlp(8, 8)
    m.target_net = nn.Module()
    m.target_net.module = nn.Sequential(copy.deepcopy(m.backbone), copy.deepcopy(m.neck))
    m.target_net.register_buffer("steps", torch.tensor(1000))
    return {
        "meta": {"epoch": 200, "iter": 1000, "mmengine_version": "0.7.0"},
        "state_dict": m.state_dict(),
        "message_hub": {"runtime_info": {"epoch": 200}},
    }


def _vissl(src):
    s = copy.deepcopy(src)  # vissl/models/trunks/resnext.py: the torchvision modules in a ModuleDict
    trunk = nn.Module()
    trunk._feature_blocks = nn.ModuleDict(
        [("conv1", s.conv1), ("bn1", s.bn1), ("conv1_relu", s.relu), ("maxpool", s.maxpool)]
        + [(f"layer{i}", getattr(s, f"layer{i}")) for i in range(1, 5)]
        + [("avgpool", s.avgpool), ("flatten", nn.Flatten(1))]
    )
    heads = nn.ModuleList([_mlp(512, 8)])
    model = {"trunk": trunk.state_dict(), "heads": heads.state_dict()}
    return {
        "phase_idx": 10,
        "iteration": 100,
        "type": "checkpoint",
        "classy_state_dict": {"base_model": {"model": model, "meta": {"model_state_dict_type": "default"}}},
    }


BUILDERS = {
    "torchvision": _torchvision,
    "solo-learn": _solo_learn,
    "lightly": _lightly,
    "lightly-sequential": _lightly_sequential,
    "moco-v2": _moco_v2,
    "moco-v3": _moco_v3,
    "mmselfsup": _mmselfsup,
    "vissl": _vissl,
}


def _write(tmp_path, name, src):
    if name == "detectron2":
        return save_detectron2_pkl(tmp_path / "model_final.pkl", src.state_dict())
    path = tmp_path / f"{name}.ckpt"
    torch.save(BUILDERS[name](src), path)
    return path


def _assert_same_features(art_dir, src, size=64):
    art = load_artifact(art_dir)
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = art.model(x), _features_of(src)(x)
    assert ours.shape == theirs.shape
    assert torch.equal(ours, theirs)  # bit-identical
    return art


@pytest.mark.parametrize("name", [*BUILDERS, "detectron2"])
def test_every_layout_imports_to_identical_features(tmp_path, name):
    src = _source()
    path = _write(tmp_path, name, src)
    out = import_checkpoint(path, "resnet18", tmp_path / "art")  # --layout auto
    art = _assert_same_features(out, src)
    source = art.meta.extra["source"]
    assert source["layout"] == name.replace("-sequential", "")
    assert art.meta.method == "imported"
    assert source["sha256"] == sha256_file(path) and source["path"] == str(path.resolve())
    # the explicit layout maps to the same tensors as detection did
    explicit = map_checkpoint(read_checkpoint(path)[0], LAYOUTS[source["layout"]], "resnet18").state
    assert all(torch.equal(v, explicit[k]) for k, v in art.model.state_dict().items())


def test_dropped_heads_are_recorded_not_silent(tmp_path):
    path = _write(tmp_path, "moco-v2", _source())
    source = read_meta(import_checkpoint(path, "resnet18", tmp_path / "a")).extra["source"]
    assert source["container"] == "state_dict" and source["prefix"] == "module.encoder_q."
    assert source["dropped"]["module.encoder_q.fc"] == 4  # two Linear layers: weight + bias each
    assert source["dropped"]["module.queue"] == 1 and source["dropped"]["module.queue_ptr"] == 1
    assert source["dropped"]["module.encoder_k"] == len(_source().state_dict()) + 2  # incl. its MLP head
    assert source["filled"] == []
    names = source["dropped_keys"]  # every dropped key by name, not only counts
    assert names["module.queue"] == ["module.queue"] and names["module.queue_ptr"] == ["module.queue_ptr"]
    assert names["module.encoder_q.fc"] == [f"module.encoder_q.fc.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]
    assert len(names["module.encoder_k"]) == source["dropped"]["module.encoder_k"]
    assert "module.encoder_k.layer4.1.bn2.running_var" in names["module.encoder_k"]


@pytest.mark.slow  # three ResNet-50s and two 100 MB files; ~30 s on a loaded 2-core machine
def test_detectron2_round_trip_resnet50_fills_only_bn_counters(tmp_path):
    src = _source("resnet50")
    path = save_detectron2_pkl(tmp_path / "r50.pkl", src.state_dict())
    art = _assert_same_features(import_checkpoint(path, "resnet50", tmp_path / "art"), src)
    source = art.meta.extra["source"]
    assert source["format"] == "pickle" and source["layout"] == "detectron2"
    assert len(source["filled"]) == sum(isinstance(m, nn.BatchNorm2d) for m in src.modules())
    assert all(k.endswith("num_batches_tracked") for k in source["filled"])


def _d2_tool_key(key: str) -> str:
    """The renaming detectron2's tools/convert-torchvision-to-d2.py and MoCo's
    detection/convert-pretrain-to-detectron2.py apply (detectron2@02b5c4e2 lines 40-47, moco@3402035 lines
    26-33), written out here: every key without "layer" gains "stem." (so fc.* becomes stem.fc.*),
    layerN -> res{N+1}, bnK -> convK.norm, downsample.0/1 -> shortcut / shortcut.norm."""
    key = key if "layer" in key else "stem." + key
    key = re.sub(r"layer([1-4])", lambda m: f"res{int(m.group(1)) + 1}", key)
    key = re.sub(r"bn([1-3])", r"conv\1.norm", key)
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def _d2_tool_pkl(path: Path, state: dict, author: str) -> Path:
    """The file those scripts write: pickle.dump({"model": numpy arrays (num_batches_tracked kept),
    "__author__": author, "matching_heuristics": True}) (detectron2 lines 49-54, moco lines 35-40)."""
    model = {_d2_tool_key(k): v.numpy() for k, v in state.items()}
    path.write_bytes(pickle.dumps({"model": model, "__author__": author, "matching_heuristics": True}))
    return path


def test_detectron2_tool_pkls_import_and_drop_stem_fc(tmp_path):
    src = _source()
    tv = _d2_tool_pkl(tmp_path / "r18.pkl", src.state_dict(), "torchvision")  # fc: 1000-way classifier
    moco = _moco_v2(src)["state_dict"]
    q = {k.removeprefix("module.encoder_q."): v for k, v in moco.items() if k.startswith("module.encoder_q.")}
    mo = _d2_tool_pkl(tmp_path / "moco.pkl", q, "MOCO")  # fc: MoCo v2's MLP head (fc.0, fc.2)
    for path, dropped in (
        (tv, ["stem.fc.weight", "stem.fc.bias"]),
        (mo, [f"stem.fc.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]),
    ):
        art = _assert_same_features(import_checkpoint(path, "resnet18", tmp_path / path.stem), src)
        source = art.meta.extra["source"]
        assert source["layout"] == "detectron2" and source["dropped_keys"] == {"stem.fc": dropped}
        assert source["filled"] == []  # these scripts keep num_batches_tracked


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_detectron2_key_inverse_round_trips(arch):
    for key in build_backbone(arch).state_dict():
        assert detectron2_to_torchvision_key(torchvision_to_detectron2_key(key)) == key


def test_small_stem_and_safetensors_and_legacy_torch_files(tmp_path):
    from safetensors.torch import save_file

    src = _source("resnet18-small")
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    art = _assert_same_features(
        import_checkpoint(tmp_path / "w.safetensors", "resnet18-small", tmp_path / "a", input_size=32, stem_padding=1),
        src,
        32,
    )
    assert art.meta.input_size == 32 and art.meta.extra["source"]["format"] == "safetensors"
    assert art.meta.extra["source"]["stem"] == "3x3, padding 1 (--stem-padding 1)"
    torch.save(src.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    _assert_same_features(
        import_checkpoint(tmp_path / "legacy.pth", "resnet18-small", tmp_path / "b", stem_padding=1), src, 32
    )


def test_auto_finds_the_state_dict_in_common_containers():
    trunk = {k: v for k, v in _source().state_dict().items() if not k.startswith("fc.")}
    for ckpt in ({"model": _source().state_dict(), "epoch": 3}, {"state_dict": trunk}):  # DeiT-style; untagged
        mapped = detect_layout(ckpt, "resnet18")
        assert mapped.layout.name == "torchvision" and set(mapped.state) == set(trunk)


def _extract_backbone_weights(ckpt: dict) -> dict:
    """What mmselfsup's tools/model_converters/extract_backbone_weights.py writes (db861f30, lines 20-28):
    the 'backbone.' keys with that prefix cut off, under 'state_dict', tagged author='MMSelfSup'."""
    cut = {k[len("backbone.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("backbone.")}
    return {"state_dict": cut, "author": "MMSelfSup"}


def test_mmselfsup_extracted_backbone_is_its_own_layout(tmp_path):
    src = _source()
    torch.save(_extract_backbone_weights(_mmselfsup(src)), tmp_path / "backbone.pth")
    for layout in ("auto", "mmselfsup-backbone"):  # the author tag decides between it and a torchvision dict
        art = _assert_same_features(
            import_checkpoint(tmp_path / "backbone.pth", "resnet18", tmp_path / layout, layout), src
        )
        assert art.meta.extra["source"]["layout"] == "mmselfsup-backbone"
        assert art.meta.extra["source"]["container"] == "state_dict"


def test_prefix_cannot_bypass_the_solo_learn_cifar_stem(tmp_path):
    """The audit's case: solo-learn CIFAR + --prefix backbone. + --arch resnet18-small exited 0 with wrong features."""
    torch.save(_solo_learn(_source("resnet18-small")), tmp_path / "cifar.ckpt")
    for kwargs in ({"prefix": "backbone."}, {"prefix": "backbone.", "stem_padding": 1}, {"stem_padding": 1}):
        with pytest.raises(UnsupportedCheckpointError, match="padding=2"):
            import_checkpoint(tmp_path / "cifar.ckpt", "resnet18-small", tmp_path / "a", **kwargs)
    argv = ["import", str(tmp_path / "cifar.ckpt"), "--arch", "resnet18-small", "--out", str(tmp_path / "a")]
    assert cli_main(argv + ["--prefix", "backbone.", "--input-size", "32", "--stem-padding", "1"]) == 1
    assert not (tmp_path / "a").exists()


def test_prefix_cannot_take_over_a_known_layout(tmp_path):
    path = _write(tmp_path, "moco-v2", _source())
    with pytest.raises(CheckpointImportError, match="claimed by known layout.*moco-v2.*use --layout moco-v2"):
        import_checkpoint(path, "resnet18", tmp_path / "a", prefix="module.encoder_q.")
    ckpt = _lightly(_source())
    ckpt["state_dict"]["new_head.weight"] = torch.zeros(2)  # lightly's marks, one key its rules do not know
    torch.save(ckpt, tmp_path / "l.ckpt")
    with pytest.raises(CheckpointImportError, match="lightly \\(carries its keys"):
        import_checkpoint(tmp_path / "l.ckpt", "resnet18", tmp_path / "a", prefix="backbone.")


def _stripped_small(tmp_path) -> tuple[nn.Module, Path, Path]:
    src = _source("resnet18-small")
    trunk = _trunk(src).state_dict()
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in trunk.items()}}, tmp_path / "bb.ckpt")
    torch.save({"model": {f"encoder.{k}": v for k, v in trunk.items()}}, tmp_path / "other.pth")
    return src, tmp_path / "bb.ckpt", tmp_path / "other.pth"


@pytest.mark.parametrize(
    "which, kwargs",
    [("bb", {"layout": "lightly"}), ("bb", {"layout": "mmselfsup"}), ("other", {"prefix": "encoder"})],
)
def test_every_path_runs_the_stem_check(tmp_path, which, kwargs):
    """A 3x3 stem's padding is invisible in the tensors: unless the layout fixes it, --stem-padding must."""
    src, bb, other = _stripped_small(tmp_path)
    path = bb if which == "bb" else other
    with pytest.raises(UnsupportedCheckpointError, match="--stem-padding 1"):
        import_checkpoint(path, "resnet18-small", tmp_path / "a", **kwargs)
    with pytest.raises(UnsupportedCheckpointError, match="--stem-padding 2: no registered backbone"):
        import_checkpoint(path, "resnet18-small", tmp_path / "a", stem_padding=2, **kwargs)
    art = _assert_same_features(
        import_checkpoint(path, "resnet18-small", tmp_path / "a", stem_padding=1, **kwargs), src
    )
    assert art.meta.extra["source"]["stem"] == "3x3, padding 1 (--stem-padding 1)"


def test_auto_names_the_solo_learn_stem_among_the_candidates(tmp_path):
    _, bb, _ = _stripped_small(tmp_path)
    with pytest.raises(CheckpointImportError, match="(?s)several layouts.*solo-learn \\(refused\\).*padding=2"):
        import_checkpoint(bb, "resnet18-small", tmp_path / "a", stem_padding=1)


def test_prefix_covers_an_unknown_layout(tmp_path):
    src = _source()
    m = nn.Module()
    m.encoder = copy.deepcopy(src)
    m.proj = nn.Linear(512, 8)
    torch.save({"model": m.state_dict(), "epoch": 5}, tmp_path / "x.pth")
    with pytest.raises(KeyMismatchError, match="no layout fits"):
        import_checkpoint(tmp_path / "x.pth", "resnet18", tmp_path / "a")
    art = _assert_same_features(
        import_checkpoint(tmp_path / "x.pth", "resnet18", tmp_path / "a", prefix="encoder"), src
    )
    assert art.meta.extra["source"]["dropped"] == {"encoder.fc": 2, "proj": 2}
    assert art.meta.extra["source"]["dropped_keys"] == {
        "encoder.fc": ["encoder.fc.weight", "encoder.fc.bias"],
        "proj": ["proj.weight", "proj.bias"],
    }


# ---- errors ----------------------------------------------------------------------------------------------


def test_unknown_and_missing_keys_are_listed(tmp_path):
    state = _source().state_dict()
    del state["layer4.1.bn2.running_var"]
    state["extra_head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "x.pth")
    with pytest.raises(KeyMismatchError) as err:
        import_checkpoint(tmp_path / "x.pth", "resnet18", tmp_path / "a", layout="torchvision")
    assert err.value.unknown == ["extra_head.weight"] and err.value.missing == ["layer4.1.bn2.running_var"]
    assert "extra_head.weight" in str(err.value) and "layer4.1.bn2.running_var" in str(err.value)
    assert not (tmp_path / "a").exists()


def test_a_key_no_head_rule_names_is_an_error_not_ignored(tmp_path):
    ckpt = _solo_learn(_source())
    ckpt["state_dict"]["mystery_module.weight"] = torch.zeros(2)
    torch.save(ckpt, tmp_path / "x.ckpt")
    with pytest.raises(KeyMismatchError, match="1 unknown key.*mystery_module.weight"):
        import_checkpoint(tmp_path / "x.ckpt", "resnet18", tmp_path / "a", layout="solo-learn")


def test_wrong_arch_lists_shape_mismatches(tmp_path):
    torch.save(_source().state_dict(), tmp_path / "x.pth")
    with pytest.raises(KeyMismatchError, match=r"conv1.weight \(64, 3, 7, 7\) \(expected \(64, 3, 3, 3\)\)"):
        import_checkpoint(tmp_path / "x.pth", "resnet18-small", tmp_path / "a", layout="torchvision")
    with pytest.raises(KeyMismatchError, match="missing backbone key.*conv3"):
        import_checkpoint(tmp_path / "x.pth", "resnet50", tmp_path / "a", layout="torchvision")


def test_auto_refuses_to_guess_between_layouts(tmp_path):
    state = {f"backbone.{k}": v for k, v in _trunk(_source()).state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "x.ckpt")  # heads stripped: solo-learn, lightly or mmselfsup
    with pytest.raises(CheckpointImportError, match="several layouts.*solo-learn.*lightly.*mmselfsup"):
        import_checkpoint(tmp_path / "x.ckpt", "resnet18", tmp_path / "a")
    import_checkpoint(tmp_path / "x.ckpt", "resnet18", tmp_path / "a", layout="lightly")


def test_detectron2_caffe2_names_are_unknown(tmp_path):
    obj = {"model": {"res2_0_branch2a_w": np.zeros((64, 64, 1, 1), np.float32)}, "__author__": "Caffe2"}
    (tmp_path / "c2.pkl").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(KeyMismatchError, match="unknown key.*res2_0_branch2a_w"):
        import_checkpoint(tmp_path / "c2.pkl", "resnet50", tmp_path / "a", layout="detectron2")


def test_solo_learn_cifar_stem_is_refused(tmp_path):
    src = _source("resnet18-small")  # same tensor shapes as solo-learn's padding-2 CIFAR stem
    torch.save(_solo_learn(src), tmp_path / "cifar.ckpt")
    with pytest.raises(UnsupportedCheckpointError, match="padding=2"):
        import_checkpoint(tmp_path / "cifar.ckpt", "resnet18-small", tmp_path / "a")


def test_lightly_resnet_generator_is_refused(tmp_path):
    state = {
        "backbone.0.weight": torch.zeros(64, 3, 3, 3),
        "backbone.2.0.conv1.weight": torch.zeros(64, 64, 3, 3),
        "backbone.3.0.shortcut.0.weight": torch.zeros(128, 64, 1, 1),
    }
    torch.save({"state_dict": state}, tmp_path / "gen.ckpt")
    with pytest.raises(UnsupportedCheckpointError, match="ResNetGenerator"):
        import_checkpoint(tmp_path / "gen.ckpt", "resnet18-small", tmp_path / "a")


def test_lightning_hyper_parameters_objects_are_left_unread(tmp_path):
    src = _source()
    ckpt = _solo_learn(src)
    ckpt["hyper_parameters"] = argparse.Namespace(lr=0.1)  # what Lightning hparams objects look like to pickle
    torch.save(ckpt, tmp_path / "x.ckpt")
    art = _assert_same_features(import_checkpoint(tmp_path / "x.ckpt", "resnet18", tmp_path / "a"), src)
    assert art.meta.extra["source"]["objects_left_unread"] == ["argparse.Namespace"]


def _fake_modules(monkeypatch, dotted: str) -> types.ModuleType:
    """Register ``dotted`` (and its parents) in sys.modules so a test class can be pickled under that name."""
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    return sys.modules[dotted]


def _history_buffer(module: types.ModuleType) -> type:
    """A class that pickles like mmengine.logging.history_buffer.HistoryBuffer (numpy arrays in __dict__)."""

    def init(self) -> None:
        self.max_length = 1000000
        self._log_history = np.array([0.5, 0.25])
        self._count_history = np.array([1, 1])

    module.HistoryBuffer = type("HistoryBuffer", (), {"__init__": init, "__module__": module.__name__})
    return module.HistoryBuffer


_MMENGINE_CFG = """model = dict(type='BYOL', backbone=dict(type='ResNet', depth=18))
view_pipeline1 = [
    dict(
        type='RandomResizedCrop',
        size=96,
        interpolation='bicubic',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
]
view_pipeline2 = [dict(type='RandomResizedCrop', size=96, interpolation='bicubic', backend='pillow')]
"""


def test_mmengine_checkpoint_reads_only_the_state_dict(tmp_path, monkeypatch):
    """mmengine runner.save_checkpoint (open-mmlab/mmengine@25434293 runner/runner.py lines 2214-2236): meta with the
    config text, state_dict, and message_hub whose log_scalars are HistoryBuffer objects. Nothing but the
    state dict is rebuilt: a payload beside it (os.mkdir) must not run."""
    history_buffer = _history_buffer(_fake_modules(monkeypatch, "mmengine.logging.history_buffer"))
    marker = tmp_path / "ran"
    src = _source()
    ckpt = _mmselfsup(src)
    ckpt["meta"].update(cfg=_MMENGINE_CFG, seed=0, experiment_name="byol", dataset_meta={"classes": ["a"]})
    ckpt["message_hub"] = {
        "log_scalars": {"train/loss": history_buffer(), "train/lr": history_buffer()},
        "runtime_info": {"epoch": 200, "iter": 1000, "hook": _ExecPayload(str(marker))},
        "resumed_keys": {"train/loss": True, "epoch": True},
    }
    torch.save(ckpt, tmp_path / "epoch_200.pth")
    monkeypatch.delitem(sys.modules, "mmengine")  # mmengine is not installed where we import
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "epoch_200.pth", weights_only=True)  # control: plain weights_only refuses it
    art = _assert_same_features(_import_checkpoint(tmp_path / "epoch_200.pth", "resnet18", tmp_path / "a"), src)
    source = art.meta.extra["source"]
    assert source["layout"] == "mmselfsup" and not marker.exists()
    assert source["objects_left_unread"] == ["builtins.exec", "mmengine.logging.history_buffer.HistoryBuffer"]
    assert art.meta.input_size == 96 and source["input_size_from"].startswith("checkpoint meta.cfg")
    with pytest.raises(CheckpointImportError, match="--input-size 64 contradicts.*96"):
        _import_checkpoint(tmp_path / "epoch_200.pth", "resnet18", tmp_path / "b", input_size=64)


def _legacy_with_objects(name: str, src: nn.Module, path: Path) -> Path:
    """``name``'s checkpoint in the pre-1.6 torch format with a pickled object beside the weights."""
    ckpt = BUILDERS[name](src)
    if "state_dict" not in ckpt and "classy_state_dict" not in ckpt:  # a bare state dict (torchvision, lightly)
        ckpt = {"state_dict": ckpt}
    ckpt["hyper_parameters"] = argparse.Namespace(lr=0.1)
    torch.save(ckpt, path, _use_new_zipfile_serialization=False)
    return path


def _run_suggested_fix(message: str) -> Path:
    """Execute the command the refusal suggests, as printed (its last ``python -c '...'``); return its output."""
    command = re.search(r"(python -c '.*')\s*$", message).group(1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", command], check=True, env=env, timeout=300)
    out = Path(re.search(r'"([^"]+\.resaved\.pt)"', command).group(1))
    assert out.is_file()
    return out


def test_a_torch_file_naming_os_is_refused_without_a_fix(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"state_dict": _source().state_dict(), "x": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError, match="posix.*is blocked.*do not load it") as err:
        import_checkpoint(tmp_path / "evil.pth", "resnet18", tmp_path / "a")
    assert "python -c" not in str(err.value) and not marker.exists()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_refusals_fix_writes_a_file_the_layout_reads(tmp_path, name):
    src = _source()
    layout = name.replace("-sequential", "")
    path = _legacy_with_objects(name, src, tmp_path / "old.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace") as err:
        import_checkpoint(path, "resnet18", tmp_path / "a", layout=layout)
    fixed = _run_suggested_fix(str(err.value))
    art = _assert_same_features(import_checkpoint(fixed, "resnet18", tmp_path / "a", layout=layout), src)
    assert art.meta.extra["source"]["layout"] == layout


def test_a_pickled_module_is_refused_with_a_fix_that_works(tmp_path):
    src = _source()
    torch.save(src, tmp_path / "model.pth")  # the whole nn.Module, as some repositories save
    with pytest.raises(UnsafeCheckpointError, match="torchvision.models.resnet.ResNet.*state_dict") as err:
        import_checkpoint(tmp_path / "model.pth", "resnet18", tmp_path / "a")
    fixed = _run_suggested_fix(str(err.value))
    _assert_same_features(import_checkpoint(fixed, "resnet18", tmp_path / "a", layout="torchvision"), src)


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


class _ExecPayload(_Payload):
    def __reduce__(self):  # builtins.exec: a module torch does not blocklist, unlike os/posix
        return (exec, (f"import os; os.mkdir({self.path!r})",))


def test_pickle_with_code_is_refused_before_running_it(tmp_path):
    marker = tmp_path / "ran"
    blob = pickle.dumps({"model": {"stem.conv1.weight": np.zeros(3, np.float32), "x": _Payload(str(marker))}})
    pickle.loads(blob)  # control: a plain unpickler runs the payload
    assert marker.is_dir()
    marker.rmdir()
    (tmp_path / "evil.pkl").write_bytes(blob)
    with pytest.raises(UnsafeCheckpointError, match=r"global 'posix.mkdir'"):
        read_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_weights(tmp_path, protocol):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.float64(2.5), "c": np.ones(2, np.int64)}
    (tmp_path / "w.pkl").write_bytes(pickle.dumps({"model": arrays, "__author__": "x"}, protocol=protocol))
    obj, fmt = read_checkpoint(tmp_path / "w.pkl")
    assert fmt == "pickle" and obj["__author__"] == "x"
    for k, v in arrays.items():
        assert np.array_equal(obj["model"][k], v) and obj["model"][k].dtype == v.dtype


def test_object_arrays_are_not_weights(tmp_path):
    src = _source()
    path = save_detectron2_pkl(tmp_path / "m.pkl", src.state_dict())
    obj = pickle.loads(path.read_bytes())
    obj["model"]["stem.conv1.weight"] = np.array([1, "a"], dtype=object)
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(CheckpointImportError, match=r"refusing .*m\.pkl: an array of dtype 'O8'"):
        import_checkpoint(path, "resnet18", tmp_path / "a", layout="detectron2")  # refused as it is read


# ---- hand-written pickle opcodes: a crafted file made without constructing any numpy object -----------


def _p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _p_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _p_bytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data  # BINBYTES (protocol 3)


def _p_int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)  # BININT


def _p_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _p_call(func: bytes, *args: bytes) -> bytes:
    return func + _p_tuple(*args) + b"R"  # REDUCE


def _p_build(obj: bytes, state: bytes) -> bytes:
    return obj + state + b"b"  # BUILD: obj.__setstate__(state)


def _p_dict(**items: bytes) -> bytes:
    return b"}(" + b"".join(_p_str(k) + v for k, v in items.items()) + b"u"  # EMPTY_DICT, MARK, SETITEMS


def _p_file(obj: bytes) -> bytes:
    return b"\x80\x03" + obj + b"."


_NP = "numpy._core.multiarray"
_N, _T, _F = b"N", b"\x88", b"\x89"


def _p_dtype(kind: str, state: bytes | None = None) -> bytes:
    """numpy.dtype(kind, False, True), BUILD with ``state`` (numpy: (3, "<", None, None, None, -1, -1, 0))."""
    made = _p_call(_p_global("numpy", "dtype"), _p_str(kind), _F, _T)
    return _p_build(made, state) if state is not None else made


def _p_plain_state(order: str = "<") -> bytes:
    return _p_tuple(_p_int(3), _p_str(order), _N, _N, _N, _p_int(-1), _p_int(-1), _p_int(0))


def _p_array(dtype: bytes, shape: tuple[int, ...], data: bytes) -> bytes:
    """numpy's protocol-2..4 array: _reconstruct(ndarray, (0,), b'b') + BUILD (1, shape, dtype, False, data)."""
    made = _p_call(_p_global(_NP, "_reconstruct"), _p_global("numpy", "ndarray"), _p_tuple(_p_int(0)), _p_bytes(b"b"))
    return _p_build(made, _p_tuple(_p_int(1), _p_tuple(*map(_p_int, shape)), dtype, _F, data))


# An 8-byte void dtype whose state declares an object field 'a' at offset 0 but not the object flag
# (flags 16 instead of 63): numpy's dtype.__setstate__ takes it, dtype.hasobject is False, and copying the
# array reads 0x4141414141414141 as a PyObject pointer (the reviewer's np3.py, rc 139 before the fix).
_OBJECT_FIELD_STATE = _p_tuple(
    _p_int(3),
    _p_str("|"),
    _N,
    _p_tuple(_p_str("a")),
    _p_dict(a=_p_tuple(_p_dtype("O", _p_plain_state("|")), _p_int(0))),
    _p_int(8),
    _p_int(1),
    _p_int(16),
)
_CRAFTED_PKLS = {
    "void_with_object_field": _p_call(  # protocol-5 style: _frombuffer(data, dtype, shape, order)
        _p_global("numpy._core.numeric", "_frombuffer"),
        _p_bytes(b"\x41" * 8),
        _p_dtype("V8", _OBJECT_FIELD_STATE),
        _p_tuple(_p_int(1)),
        _p_str("C"),
    ),
    "float_with_object_field": _p_array(_p_dtype("f8", _OBJECT_FIELD_STATE), (1,), _p_bytes(b"\x41" * 8)),
    "short_payload": _p_array(_p_dtype("f4", _p_plain_state()), (64, 3, 7, 7), _p_bytes(b"\0" * 16)),
    "string_array": _p_array(_p_dtype("U1", _p_plain_state()), (1,), _p_bytes(b"a\0\0\0")),
    "object_scalar": _p_call(_p_global(_NP, "scalar"), _p_dtype("O", _p_plain_state("|")), _p_bytes(b"\x41" * 8)),
}


def test_crafted_numpy_pickles_are_refused_not_run(tmp_path):
    """Each file puts a hostile array at conv1.weight; the CLI must exit 1 naming it (in a subprocess, so a
    segfault fails this test instead of killing pytest)."""
    paths = []
    for name, array in _CRAFTED_PKLS.items():
        paths.append(tmp_path / f"{name}.pkl")
        paths[-1].write_bytes(_p_file(_p_dict(**{"conv1.weight": array})))
    code = (
        "import sys\nfrom benchmarks.cli import main\nfor p in sys.argv[1:]:\n"
        "    print(main(['import', p, '--arch', 'resnet18', '--out', p + '.art', '--input-size', '224']), flush=True)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"rc {done.returncode} (a crash): {done.stderr[-2000:]}"
    assert done.stdout.split() == ["1"] * len(paths), done.stderr
    errors = done.stderr.splitlines()
    for path, error in zip(paths, errors, strict=True):
        assert error.startswith(f"byol-bench import: refusing {path}: "), error
        assert not Path(f"{path}.art").exists()
    assert "dtype 'V8'" in errors[0] and "'U1'" in errors[3] and "'O'" in errors[4]
    assert "not a plain number type" in errors[1] and "needs 37632 bytes; the file gives 16" in errors[2]


def test_handmade_and_big_endian_arrays_read_bit_identically(tmp_path):
    """The rebuild reads what numpy would: big-endian data as native-order arrays of the same values,
    Fortran order, a Python-2 pickle's str payload; and a detectron2 tool .pkl of big-endian arrays
    imports to the same features."""
    data = np.arange(6, dtype=">i2").reshape(2, 3)
    py2 = _p_build(  # Python 2's numpy: STRING payloads (read as latin1 str), no version in the array state
        _p_call(
            _p_global("numpy.core.multiarray", "_reconstruct"),
            _p_global("numpy", "ndarray"),
            _p_tuple(_p_int(0)),
            b"U\x01b",
        ),
        _p_tuple(_p_tuple(_p_int(2), _p_int(3)), _p_dtype("i2", _p_plain_state(">")), _F, b"U\x0c" + data.tobytes()),
    )
    (tmp_path / "py2.pkl").write_bytes(b"\x80\x02" + _p_dict(a=py2) + b".")
    obj, _ = read_checkpoint(tmp_path / "py2.pkl")
    assert obj["a"].dtype == np.dtype("=i2") and np.array_equal(obj["a"], data)  # native, as numpy reads it
    fortran = np.asfortranarray(np.arange(12, dtype=np.float16).reshape(3, 4))
    arrays = {"f": fortran, "b": np.array([True, False]), "e": np.zeros((0, 3), np.int8), "u": np.arange(3, dtype="u1")}
    for protocol in (2, 3, 4, 5):
        (tmp_path / "w.pkl").write_bytes(pickle.dumps(arrays, protocol=protocol))
        obj, _ = read_checkpoint(tmp_path / "w.pkl")
        for k, v in arrays.items():
            assert obj[k].dtype == v.dtype and obj[k].shape == v.shape and np.array_equal(obj[k], v), (protocol, k)
    src = _source()
    big = {_d2_tool_key(k): v.numpy().astype(v.numpy().dtype.newbyteorder(">")) for k, v in src.state_dict().items()}
    path = tmp_path / "big.pkl"
    # protocol 5 (_frombuffer) keeps the byte order in numpy: torch.from_numpy refused it (a TypeError, no path)
    path.write_bytes(pickle.dumps({"model": big, "__author__": "torchvision", "matching_heuristics": True}, protocol=5))
    _assert_same_features(import_checkpoint(path, "resnet18", tmp_path / "art"), src)


@pytest.mark.parametrize("version", ["2.1.2", "2.5.1+cu121", "2.9.1"])
def test_torch_pickles_are_refused_on_torch_with_weights_only_holes(tmp_path, monkeypatch, version):
    """torch.load(weights_only=True) had public holes before 2.6 (CVE-2025-32434) and 2.10 (CVE-2026-24747):
    zip and legacy torch files are refused there; .safetensors and .pkl files still import."""
    from safetensors.torch import save_file

    src = _source()
    torch.save(src.state_dict(), tmp_path / "zip.pth")
    torch.save(src.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    pkl = _d2_tool_pkl(tmp_path / "w.pkl", src.state_dict(), "torchvision")
    monkeypatch.setattr(torch, "__version__", version)
    for name in ("zip.pth", "legacy.pth"):
        with pytest.raises(
            UnsafeCheckpointError, match=rf"refusing .*{name}.*torch {re.escape(version)}.*CVE-2025-32434"
        ):
            import_checkpoint(tmp_path / name, "resnet18", tmp_path / "a")
        assert not (tmp_path / "a").exists()
    with pytest.raises(UnsafeCheckpointError, match="CVE-2026-24747.*torch >= 2.10"):
        read_checkpoint(tmp_path / "zip.pth")
    _assert_same_features(import_checkpoint(tmp_path / "w.safetensors", "resnet18", tmp_path / "s"), src)
    _assert_same_features(import_checkpoint(pkl, "resnet18", tmp_path / "p"), src)
    for ok in ("2.10.0", "2.11.0a0+git1234", "2.14.1"):
        monkeypatch.setattr(torch, "__version__", ok)
        assert read_checkpoint(tmp_path / "zip.pth")[1] == "torch"


@pytest.mark.parametrize(
    "cfg",
    [
        "x = " + "not " * 100000 + "1",  # ast.parse: MemoryError (parser stack)
        "x = " + "(" * 300 + ")" * 300,  # SyntaxError: too many nested parentheses
        "x = 1\n" * 200000,  # over the length cap
    ],
    ids=["deep-not", "deep-parens", "too-long"],
)
def test_a_hostile_mmengine_cfg_is_an_error_naming_the_file(tmp_path, cfg):
    ckpt = _mmselfsup(_source())
    ckpt["meta"]["cfg"] = cfg
    torch.save(ckpt, tmp_path / "epoch_1.pth")
    with pytest.raises(CheckpointImportError, match=r"refusing .*epoch_1\.pth: its meta\.cfg .* cannot be read"):
        _import_checkpoint(tmp_path / "epoch_1.pth", "resnet18", tmp_path / "a", input_size=224)
    assert not (tmp_path / "a").exists()


def test_readme_documents_the_import_flags_and_torch_floor():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `byol-bench import "))
    assert "--input-size" in row and "--stem-padding" in row
    section = readme.split("<!-- section:import -->")[1].split("<!-- /section:import -->")[0]
    assert "CVE-2025-32434" in section and "CVE-2026-24747" in section and "torch ≥ 2.10" in section
    assert "exit 1" in section


def test_truncated_files_say_truncated(tmp_path):
    from safetensors.torch import save_file

    state = _source().state_dict()
    torch.save(state, tmp_path / "zip.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_detectron2_pkl(tmp_path / "d2.pkl", state)
    save_file({k: v for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for name, what in [
        ("zip.pth", "truncated torch file"),
        ("legacy.pth", "truncated torch file"),
        ("d2.pkl", "truncated pickle file"),
        ("w.safetensors", "truncated safetensors file"),
    ]:
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointImportError, match=f"cut-{re.escape(name)}: {what}"):
            read_checkpoint(tmp_path / f"cut-{name}")


def test_input_size_is_read_or_required(tmp_path, capsys):
    torch.save(_source().state_dict(), tmp_path / "x.pth")
    with pytest.raises(CheckpointImportError, match="does not record the image size.*pass --input-size"):
        _import_checkpoint(tmp_path / "x.pth", "resnet18", tmp_path / "a")
    assert not (tmp_path / "a").exists()
    argv = ["import", str(tmp_path / "x.pth"), "--arch", "resnet18", "--out", str(tmp_path / "a")]
    assert cli_main(argv) == 1 and "--input-size" in capsys.readouterr().err
    assert cli_main(argv + ["--input-size", "112"]) == 0
    meta = read_meta(tmp_path / "a")
    assert meta.input_size == 112 and meta.extra["source"]["input_size_from"] == "--input-size"


def test_force_replaces_only_an_artifact(tmp_path):
    torch.save(_source().state_dict(), tmp_path / "x.pth")
    out = import_checkpoint(tmp_path / "x.pth", "resnet18", tmp_path / "art")
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(CheckpointImportError, match="not the artifact's own.*notes.txt"):
        import_checkpoint(tmp_path / "x.pth", "resnet18", out, overwrite=True)
    assert (out / "notes.txt").read_text() == "my notes"
    (out / "notes.txt").unlink()
    import_checkpoint(tmp_path / "x.pth", "resnet18", out, overwrite=True, input_size=32)
    assert read_meta(out).input_size == 32
    (tmp_path / "empty").mkdir()
    import_checkpoint(tmp_path / "x.pth", "resnet18", tmp_path / "empty")  # a folder made beforehand


def test_out_is_never_clobbered_without_force(tmp_path):
    torch.save(_source().state_dict(), tmp_path / "x.pth")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x")
    with pytest.raises(CheckpointImportError, match="exists and is not an artifact"):
        import_checkpoint(tmp_path / "x.pth", "resnet18", tmp_path / "data")
    out = import_checkpoint(tmp_path / "x.pth", "resnet18", tmp_path / "art")
    with pytest.raises(CheckpointImportError, match="--force"):
        import_checkpoint(tmp_path / "x.pth", "resnet18", out)
    import_checkpoint(tmp_path / "x.pth", "resnet18", out, overwrite=True)


def test_cli_import(tmp_path, capsys):
    path = _write(tmp_path, "lightly", _source())
    out = tmp_path / "art"
    argv = ["import", str(path), "--arch", "resnet18", "--out", str(out), "--input-size", "96"]
    assert cli_main(argv + ["--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert "layout lightly" in printed and "teacher_backbone" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "imported" and meta["input_size"] == 96 and meta["mean"] == [0.5, 0.5, 0.5]
    assert meta["extra"]["source"]["sha256"] == sha256_file(path)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    assert cli_main(["import", str(bad), "--arch", "resnet18", "--out", str(tmp_path / "b")]) == 1
    assert "no layout fits" in capsys.readouterr().err


def test_every_layout_has_a_test():
    assert set(LAYOUTS) <= {n.replace("-sequential", "") for n in BUILDERS} | {"detectron2", "mmselfsup-backbone"}

"""Tiny end-to-end BYOL runs on CPU: run layout, stop/resume equivalence, divergence guard, export."""

import json
import pickle

import pytest
import torch
import yaml
from pretrain_tiny import tiny_config

from pretrain.cli import export_main
from pretrain.cli import main as cli_main
from pretrain.export import export_run
from pretrain.train import TrainingDiverged, read_metrics, train
from zoo.artifact import load_artifact, load_heads, read_meta
from zoo.backbones import build_backbone
from zoo.config import ConfigError

pytestmark = pytest.mark.slow


def _weights(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return ckpt


def test_run_layout_metrics_and_artifact(tmp_path):
    cfg = tiny_config("run.knn_every=1")
    run = train(cfg, tmp_path / "run")
    assert (run / "config.yaml").is_file() and (run / "derived.json").is_file()
    derived = json.loads((run / "derived.json").read_text())
    assert derived["lr"] == pytest.approx(cfg.optim.base_lr * 16 / 256) and derived["total_steps"] == 2 * (48 // 16)
    saved = yaml.safe_load((run / "config.yaml").read_text())  # derived values never enter the config
    assert saved["optim"]["base_lr"] == cfg.optim.base_lr
    assert not {"lr", "total_steps", "steps_per_epoch"} & (set(saved["optim"]) | set(saved["run"]))
    records = read_metrics(run)
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 7))
    for r in steps:
        assert {"step", "epoch", "loss", "tau", "lr", "images_per_s", "proj_std"} <= set(r)
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and all("knn_val_top1" in r for r in epochs)
    # training seconds without kNN / checkpoints, cumulative per epoch (the time-to-learn benchmark's clock)
    assert 0 < epochs[1]["train_s"] < epochs[2]["train_s"] and epochs[2]["checkpoint_s"] > 0
    ckpt = _weights(run)
    assert ckpt["step"] == 6 and {"online", "target", "optimizer", "rng", "scaler"} <= set(ckpt)
    # artifact: online network, heads, diagnostics, detectron2 pkl
    meta = read_meta(run / "artifact")
    assert meta.method == "byol" and meta.extra["network"] == "online"
    assert {"proj_std_final", "collapsed", "knn_val_top1_final"} <= set(meta.extra["collapse"])
    art = load_artifact(run / "artifact")
    torch.testing.assert_close(art.model.state_dict()["conv1.weight"], ckpt["online"]["backbone"]["conv1.weight"])
    heads = load_heads(art)
    assert set(heads) == {"projector", "predictor"}
    # a finished run is not retrained
    mtime = (run / "artifact" / "meta.json").stat().st_mtime
    train(tiny_config("run.knn_every=1"), run)
    assert (run / "artifact" / "meta.json").stat().st_mtime == mtime


def test_detectron2_pkl_covers_every_backbone_tensor(tmp_path):
    # the .pkl is written for standard-width ResNets (the default resnet18-w16 reaches detectron2 by the adapter)
    run = train(tiny_config("run.knn_every=0", "run.epochs=1", "backbone.arch=resnet18"), tmp_path / "run")
    with open(run / "artifact" / "detectron2.pkl", "rb") as fh:
        obj = pickle.load(fh)
    assert obj["matching_heuristics"] is True
    ckpt = _weights(run)["online"]["backbone"]
    tensors = {k: v for k, v in ckpt.items() if not k.endswith("num_batches_tracked")}
    assert len(obj["model"]) == len(tensors) == len(build_backbone("resnet18").state_dict()) - 20
    assert obj["model"]["stem.conv1.weight"].shape == (64, 3, 7, 7)
    assert "res2.0.conv1.norm.running_var" in obj["model"] and "res3.0.shortcut.norm.weight" in obj["model"]
    assert not any(k.startswith(("layer", "conv1", "bn1")) or ".bn" in k or "downsample" in k for k in obj["model"])
    for name, value in tensors.items():  # every tensor lands somewhere, unchanged
        assert any(v.shape == tuple(value.shape) and (v == value.numpy()).all() for v in obj["model"].values()), name
    # the target network can be exported on request, and differs from the online one
    out = export_run(run, tmp_path / "target-art", network="target")
    assert read_meta(out).extra["network"] == "target"
    t = load_artifact(out).model.state_dict()["conv1.weight"]
    assert not torch.equal(t, load_artifact(run / "artifact").model.state_dict()["conv1.weight"])
    assert export_main([str(run), "--out", str(tmp_path / "cli-art"), "--network", "online"]) == 0
    assert (tmp_path / "cli-art" / "detectron2.pkl").is_file()


def test_stop_and_resume_equals_one_go(tmp_path):
    """2 epochs, stop, resume for 2 more == 4 epochs in one go (weights, optimiser state, metrics)."""
    full = train(tiny_config("run.epochs=4", "run.knn_every=0"), tmp_path / "full")
    part = tmp_path / "part"
    train(tiny_config("run.epochs=4", "run.knn_every=0", "run.stop_after_epochs=2"), part)
    assert not (part / "artifact").exists() and _weights(part)["step"] == 6
    torch.manual_seed(123)  # resuming restores every RNG; disturb the global one to prove it
    train(tiny_config("run.epochs=4", "run.knn_every=0"), part)
    a, b = _weights(full), _weights(part)
    assert a["step"] == b["step"] == 12
    for net in ("online", "target"):
        for mod, state in a[net].items():
            for k, v in state.items():
                assert torch.equal(v, b[net][mod][k]), f"{net}.{mod}.{k}"
    for ka, kb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(ka["momentum_buffer"], kb["momentum_buffer"])
    la = [(r["step"], r["loss"]) for r in read_metrics(full) if r["kind"] == "step"]
    lb = [(r["step"], r["loss"]) for r in read_metrics(part) if r["kind"] == "step"]
    assert la == lb
    # the training clock goes on across the resume (it restarted at 0, so curves against seconds folded back)
    clock = [r["train_s"] for r in read_metrics(part) if r["kind"] == "epoch" and r["epoch"] > 0]
    assert len(clock) == 4 and all(a < b for a, b in zip(clock, clock[1:])), clock
    # resuming with a different (non run-control) config is refused, naming the key
    with pytest.raises(ConfigError, match="optim.base_lr"):
        train(tiny_config("run.epochs=4", "run.stop_after_epochs=3", "optim.base_lr=0.3"), part)


def test_bf16_on_cpu_is_applied_and_resumes_exactly(tmp_path):
    """run.amp=bf16 on a CPU (the Fashion-MNIST recipe L) changes the arithmetic, and stop/resume stays exact."""
    # 32 px: at the tiny configs' 16 px (1 x 1 maps from layer3 on) bf16 + channels_last on this CPU gave non-finite
    # weights after 1-4 steps (the trainer stops, naming the step); contiguous tensors or 32 px did not
    args = ("run.epochs=2", "run.knn_every=0", "run.amp=bf16", "data.image_size=32")
    full = train(tiny_config(*args), tmp_path / "bf16")
    fp32 = train(tiny_config(*args[:2], "run.amp=off", args[3]), tmp_path / "fp32")
    loss = {run: [r["loss"] for r in read_metrics(run) if r["kind"] == "step"] for run in (full, fp32)}
    assert loss[full] != loss[fp32]  # autocast ran: the same seed in float32 gives other losses
    part = tmp_path / "part"
    train(tiny_config(*args, "run.stop_after_epochs=1"), part)
    train(tiny_config(*args), part)
    a, b = _weights(full), _weights(part)
    for mod, state in a["online"].items():
        for k, v in state.items():
            assert torch.equal(v, b["online"][mod][k]), f"online.{mod}.{k}"
    assert [r["loss"] for r in read_metrics(part) if r["kind"] == "step"] == loss[full]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import pretrain.train as T

    run = tmp_path / "run"
    train(tiny_config("run.epochs=3", "run.knn_every=0", "run.stop_after_epochs=1"), run)
    good = _weights(run)
    cfg = tiny_config("run.epochs=3", "run.knn_every=0")
    # 1. a NaN loss (NaN pixels) stops before the optimiser step
    real_aug = T.augment_view
    monkeypatch.setattr(T, "augment_view", lambda *a, **k: real_aug(*a, **k) * float("nan"))
    with pytest.raises(TrainingDiverged, match="loss is nan"):
        train(cfg, run)
    monkeypatch.setattr(T, "augment_view", real_aug)
    # 2. weights blown up by an infinite LR are never written over the good checkpoint
    monkeypatch.setattr(T, "lr_at", lambda *a, **k: float("inf"))
    with pytest.raises(TrainingDiverged, match="(loss is nan|non-finite)"):
        train(cfg, run)
    after = _weights(run)
    assert after["step"] == good["step"] == 3
    assert torch.equal(after["online"]["backbone"]["conv1.weight"], good["online"]["backbone"]["conv1.weight"])
    log = (run / "train.log").read_text()
    assert "loss is nan" in log and "stopping" in log


def test_cli_pretrain_and_errors(tmp_path, capsys):
    from pretrain_tiny import CONFIGS, TINY

    out = tmp_path / "cli"
    rc = cli_main([str(CONFIGS / "no-predictor.yaml"), *TINY, "run.epochs=1", "run.knn_every=0", "--out", str(out)])
    assert rc == 0 and (out / "artifact" / "meta.json").is_file()
    meta = read_meta(out / "artifact")
    assert "predictor" not in meta.extra["heads"] and meta.config["byol"]["predictor"] is False
    assert cli_main([str(CONFIGS / "byol.yaml"), "optim.nme=sgd", "--out", str(tmp_path / "x")]) == 2
    assert "optim.nme" in capsys.readouterr().err

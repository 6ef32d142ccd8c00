"""Export a BYOL run's backbone as a zoo artifact (+ detectron2 ``.pkl`` for standard-stem ResNets).

Which network: the **online** encoder by default, because it is the one the paper keeps ("at the end of
training, we only keep the encoder f_θ", Grill et al. 2020, Sec. 3.1) and evaluates in every table; the
target is an exponential average of it (and with ``tau = 1`` it is the random initialisation). The target
can be exported for comparison with ``network="target"``.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Literal

import torch

from pretrain.checkpoint import (
    CHECKPOINT,
    disk_guard,
    load_checkpoint,
    load_checkpoint_into,
    load_run_config,
    read_metrics,
)
from pretrain.model import build_model
from zoo.artifact import ArtifactMeta, save_artifact
from zoo.backbones import get_spec
from zoo.config import to_dict
from zoo.datasets import ClassificationSplit, DatasetOptions, load_dataset
from zoo.detectron2_format import save_detectron2_pkl
from zoo.io import atomic_replace_dir, make_temp_dir, read_json

__all__ = ["export_run", "collapse_diagnostics", "DETECTRON2_PKL"]

DETECTRON2_PKL = "detectron2.pkl"


def collapse_diagnostics(records: list[dict[str, Any]], proj_dim: int, threshold: float) -> dict[str, Any]:
    """Summary of a run's collapse signals from its ``metrics.jsonl`` records (last epoch, initial kNN)."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    steps = [r for r in records if r.get("kind") == "step"]
    ref = 1.0 / math.sqrt(proj_dim)
    last = next((r for r in reversed(epochs) if "proj_std" in r), None)
    knn = [r for r in epochs if "knn_val_top1" in r]
    out: dict[str, Any] = {
        "proj_std_final": last["proj_std"] if last else None,
        "proj_std_reference": ref,
        "collapse_threshold": threshold * ref,
        "collapsed": bool(last["collapsed"]) if last else None,
        "collapsed_epochs": [r["epoch"] for r in epochs if r.get("collapsed")],
        "loss_final": steps[-1]["loss"] if steps else None,
        "knn_val_top1_init": next((r["knn_val_top1"] for r in knn if r["epoch"] == 0), None),
        "knn_val_top1_final": knn[-1]["knn_val_top1"] if knn and knn[-1]["epoch"] != 0 else None,
    }
    return out


def export_run(
    run_dir: str | Path, out_dir: str | Path | None = None, network: Literal["online", "target"] = "online"
) -> Path:
    """Write the artifact of ``run_dir``'s last checkpoint to ``out_dir`` (default ``run_dir/artifact``).

    The artifact holds the chosen backbone, heads ``projector`` (of the same network) and ``predictor``
    (online; absent without a predictor), and ``meta.extra`` with the collapse diagnostics, the network
    exported and the checkpoint step. Standard-stem ResNets also get ``detectron2.pkl``. The directory
    appears atomically, complete with the ``.pkl``.
    """
    if network not in ("online", "target"):
        raise ValueError(f"network must be 'online' or 'target', got {network!r}")
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "artifact"
    ckpt_path = run_dir / CHECKPOINT
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint ({CHECKPOINT}); is it a pretrain run directory?")
    cfg = load_run_config(run_dir)
    model = build_model(cfg)
    loaded = load_checkpoint(run_dir, map_location="cpu", fallback=False)  # sha256-checked; errors name the path
    if loaded is None:
        raise FileNotFoundError(f"{ckpt_path} vanished while exporting")
    ckpt = loaded.state
    load_checkpoint_into(model, ckpt)
    backbone = model.backbone if network == "online" else model.target_backbone
    projector = model.projector if network == "online" else model.target_projector
    heads = {"projector": (model.projector_spec, projector)}
    if model.predictor_spec is not None:
        heads["predictor"] = (model.predictor_spec, model.predictor)

    split = load_dataset(
        cfg.data.dataset, cfg.data.split, DatasetOptions(root=cfg.data.root, image_size=cfg.data.image_size)
    )
    mean = tuple(split.mean) if isinstance(split, ClassificationSplit) else None
    std = tuple(split.std) if isinstance(split, ClassificationSplit) else None
    derived_path = run_dir / "derived.json"
    derived = read_json(derived_path) if derived_path.exists() else {}
    spe = derived.get("steps_per_epoch")
    step = int(ckpt["step"])
    diag = collapse_diagnostics(read_metrics(run_dir), cfg.heads.projector_out, cfg.run.collapse_std)
    meta = ArtifactMeta(
        architecture=cfg.backbone.arch,
        feature_dim=get_spec(cfg.backbone.arch).feature_dim,
        input_size=cfg.data.image_size,
        method="byol",
        dataset=cfg.data.dataset,
        epochs=step // spe if spe else None,
        seed=cfg.seed,
        config=to_dict(cfg),
        extra={
            "network": network,
            "network_reason": "online encoder f_theta, the one BYOL keeps (Grill et al. 2020, Sec. 3.1)"
            if network == "online"
            else "target (EMA) encoder, exported on request",
            "step": step,
            "total_steps": derived.get("total_steps"),
            "finished": derived.get("total_steps") == step,
            "collapse": diag,
            "derived": {k: derived.get(k) for k in ("lr", "total_steps", "steps_per_epoch", "world_size", "device")},
            "run_dir": str(run_dir.resolve()),
        },
        **({"mean": mean, "std": std} if mean and std else {}),
    )
    # the weights twice (artifact + detectron2 .pkl) and the heads: what a full disk is told is needed
    needed = 2 * sum(t.numel() * t.element_size() for m in (backbone, projector, model.predictor) for t in _tensors(m))
    with disk_guard(out, needed):
        _write_artifact(out, backbone, meta, heads, cfg.backbone.arch, network)
    return out


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return list(module.state_dict().values())


def _write_artifact(
    out: Path, backbone: torch.nn.Module, meta: ArtifactMeta, heads: dict[str, Any], arch: str, network: str
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = make_temp_dir(f".{out.name}.", out.parent)
    try:
        tmp = save_artifact(tmp_root / "a", backbone, meta, heads=heads)
        if get_spec(arch).detectron2_compatible:
            save_detectron2_pkl(tmp / DETECTRON2_PKL, backbone.state_dict(), extra={"network": network})
        atomic_replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

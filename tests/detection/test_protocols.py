"""Issue 23's detection protocols: a frozen backbone stays frozen, AP is recorded against iterations, and
shapes-det has an optional held-out test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.detectron2
pytest.importorskip("detectron2")

from downstream.detection.config import DetectionConfig, load_preset  # noqa: E402
from downstream.detection.evaluation import register_split  # noqa: E402
from downstream.detection.modeling import build_d2_config  # noqa: E402
from downstream.detection.train import Trainer, _load_backbone  # noqa: E402
from downstream.detection.weights import backbone_weights  # noqa: E402
from zoo.artifact import load_artifact  # noqa: E402
from zoo.baselines import random_init_artifact  # noqa: E402
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD, DatasetError, DatasetOptions, load_dataset  # noqa: E402


def _tiny_opts(tmp_path: Path, **kw: int) -> DatasetOptions:
    return DatasetOptions(det_canvas=64, det_train_images=4, det_val_images=2, cache_dir=str(tmp_path / "data"), **kw)


def _trainer(tmp_path: Path, preset: str, max_iter: int, arch: str = "resnet18-w16", route: str = "adapter") -> Trainer:
    opts = _tiny_opts(tmp_path)
    train, val = (load_dataset("shapes-det", s, opts) for s in ("train", "val"))
    art = random_init_artifact(tmp_path / "art", arch=arch)
    cfg = build_d2_config(
        load_preset(preset),
        DetectionConfig(preset=preset, max_iter=max_iter),
        backbone=backbone_weights(route, load_artifact(art), tmp_path / "work"),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=train.num_classes,
        train_name=register_split(train.json_path, train.image_dir),
        test_name=register_split(val.json_path, val.image_dir),
        output_dir=str(tmp_path / "out"), seed=0, device="cpu", num_gpus=0,
    )  # fmt: skip
    (tmp_path / "out").mkdir()
    trainer = Trainer(cfg)
    assert _load_backbone(trainer.model, cfg) > 0
    return trainer


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "frozen", "arch", "route"),
    [
        ("shapes-det-frozen", True, "resnet18-w16", "adapter"),
        ("shapes-det-ft", False, "resnet18-w16", "adapter"),
        ("shapes-det-frozen", True, "resnet18", "pkl"),  # detectron2's own ResNet, FREEZE_AT 5
    ],
)
def test_frozen_preset_trains_the_heads_and_leaves_the_backbone_bit_identical(
    tmp_path: Path, preset: str, frozen: bool, arch: str, route: str
) -> None:
    """Frozen: every backbone weight and BN statistic is unchanged after training while the FPN moved, on both
    routes; fine-tuned: the backbone moves too (so the check can fail)."""
    trainer = _trainer(tmp_path, preset, max_iter=3, arch=arch, route=route)
    bottom_up, fpn_convs = trainer.model.backbone.bottom_up, trainer.model.backbone.fpn_lateral2
    before, fpn_before = _state(bottom_up), _state(fpn_convs)
    assert load_preset(preset).d2.get("MODEL.BACKBONE.FREEZE_AT", 0) == (5 if frozen else 0)
    trainer.train()
    after = _state(bottom_up)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(not torch.equal(fpn_before[k], v) for k, v in _state(fpn_convs).items())
    if frozen:
        assert changed == [] and not any(p.requires_grad for p in bottom_up.parameters())
    else:
        assert changed, "fine-tuning left every backbone tensor unchanged"


@pytest.mark.slow
def test_record_keeps_ap_against_iterations(tmp_path: Path) -> None:
    """eval_period=2 over 4 iterations: points at 2 and 4, seconds increasing, the last point is the record's AP."""
    from downstream.api import evaluate

    art = random_init_artifact(tmp_path / "art", arch="resnet18-w16")
    rec = evaluate(
        art,
        "detection",
        "shapes-det",
        dataset_options=_tiny_opts(tmp_path),
        overrides=["preset=shapes-det-frozen", "max_iter=4", "eval_period=2"],
        device="cpu",
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
    )
    (curve,) = rec["selection"]["curves"]
    assert [p["iter"] for p in curve] == [2, 4]
    assert 0 < curve[0]["train_seconds"] < curve[1]["train_seconds"]
    assert 0 < curve[0]["train_cpu_seconds"] < curve[1]["train_cpu_seconds"]
    assert curve[-1]["AP"] == pytest.approx(rec["metrics"]["AP"], nan_ok=True)
    assert rec["selection"]["train_cpu_seconds"] == [curve[-1]["train_cpu_seconds"]]


def test_eval_period_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="eval_period"):
        DetectionConfig(eval_period=-1)


def test_shapes_det_test_split_is_held_out_and_optional(tmp_path: Path) -> None:
    """No test split unless det_test_images is set (an error naming the option); with it, new canvases whose
    train and val are the same as without it."""
    plain = _tiny_opts(tmp_path)
    with pytest.raises(DatasetError, match="det_test_images"):
        load_dataset("shapes-det", "test", plain)
    with_test = _tiny_opts(tmp_path, det_test_images=3)
    test = load_dataset("shapes-det", "test", with_test)
    coco = json.loads(test.json_path.read_text())
    assert len(coco["images"]) == 3 and coco["annotations"]
    assert "test_images" not in load_dataset("shapes-det", "val", plain).recipe  # published caches keep their hash
    for split in ("train", "val"):  # the same canvases whether or not a test split is drawn
        a, b = load_dataset("shapes-det", split, plain), load_dataset("shapes-det", split, with_test)
        assert a.json_path != b.json_path
        assert json.loads(a.json_path.read_text())["annotations"] == json.loads(b.json_path.read_text())["annotations"]
        first = sorted(a.image_dir.iterdir())[0].name
        assert (a.image_dir / first).read_bytes() == (b.image_dir / first).read_bytes()
    val = load_dataset("shapes-det", "val", with_test)
    assert (test.image_dir / "000001.png").read_bytes() != (val.image_dir / "000001.png").read_bytes()
    with pytest.raises(DatasetError, match="det_test_images"):
        load_dataset("digits-det", "train", DatasetOptions(cache_dir=str(tmp_path / "d"), det_test_images=2))


def test_curves_are_averaged_over_seeds_per_iteration() -> None:
    """benchmarks/detection_curves.summarise: mean and sample std per iteration; an iteration not reached by
    every seed is left out rather than averaged over fewer seeds."""
    from benchmarks.detection_curves import summarise

    curves = {
        0: [
            {"iter": 300, "AP": 10.0, "AP50": 20.0, "train_cpu_seconds": 60.0},
            {"iter": 600, "AP": 20.0, "AP50": 40.0},
        ],
        1: [{"iter": 300, "AP": 14.0, "AP50": 30.0, "train_cpu_seconds": 80.0}],
    }
    (row,) = summarise(curves)
    assert row["iter"] == 300 and row["n"] == 2
    assert row["AP"] == pytest.approx(12.0) and row["AP_std"] == pytest.approx(2.8284271, rel=1e-6)
    assert row["train_cpu_seconds"] == pytest.approx(70.0)


def test_curves_are_collected_from_sealed_records_by_group_split_and_row(tmp_path: Path) -> None:
    """detection_curves.collect reads checksummed records, keeps detection records with a curve, groups them by
    evaluation and split, maps per-seed variant names to their row, and refuses a tampered record."""
    from benchmarks.detection_curves import collect
    from zoo.records import write_record

    def rec(variant: str, seed: int, ap: float, evaluator: str = "detection") -> dict:
        curve = [{"iter": 300, "AP": ap / 2}, {"iter": 600, "AP": ap}]
        return {"evaluator": evaluator, "benchmark": {"group": "det", "variant": variant, "seed": seed},
                "selection": {"split": "test", "curves": [curve]}, "metrics": {"AP": ap}}  # fmt: skip

    (tmp_path / "records").mkdir()
    write_record(tmp_path / "records" / "a.json", rec("byol-s0", 0, 10.0))
    write_record(tmp_path / "records" / "b.json", rec("byol-s1", 1, 12.0))
    write_record(tmp_path / "records" / "c.json", rec("byol", 0, 99.0, evaluator="knn"))
    out = collect(tmp_path, variant_of=r"(.*)-s\d+$")
    assert list(out) == ["det (test)"] and list(out["det (test)"]) == ["byol"]
    assert sorted(out["det (test)"]["byol"]) == [0, 100]
    assert out["det (test)"]["byol"][100][-1]["AP"] == 12.0
    bad = json.loads((tmp_path / "records" / "a.json").read_text())
    bad["metrics"]["AP"] = 50.0
    (tmp_path / "records" / "a.json").write_text(json.dumps(bad))
    with pytest.raises(SystemExit, match="a.json"):
        collect(tmp_path)

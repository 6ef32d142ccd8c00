"""Detection evaluator pieces that need detectron2: strict loading, errors, COCO AP path, presets."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.detectron2
pytest.importorskip("detectron2")

from detectron2.modeling import build_model  # noqa: E402

from downstream.detection.config import DetectionConfig, list_presets, load_preset  # noqa: E402
from downstream.detection.evaluation import evaluate_predictions, register_split  # noqa: E402
from downstream.detection.evaluator import aggregate_trials, detection  # noqa: E402
from downstream.detection.modeling import build_d2_config  # noqa: E402
from downstream.detection.weights import (  # noqa: E402
    BackboneWeights,
    DetectionWeightsError,
    check_architecture,
    export_pkl,
    load_backbone_strict,
)
from zoo.backbones import build_backbone  # noqa: E402
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD, DatasetError  # noqa: E402


def _d2_model(preset: str, arch: str) -> torch.nn.Module:
    cfg = build_d2_config(
        load_preset(preset),
        DetectionConfig(preset=preset),
        backbone=BackboneWeights("pkl", arch, ""),
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
    return build_model(cfg)


def _backbone(arch: str) -> torch.nn.Module:
    torch.manual_seed(1)
    model = build_backbone(arch)
    for m in model.modules():  # non-trivial BN statistics, so a missed buffer shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


@pytest.fixture(scope="module")
def r18_fpn() -> torch.nn.Module:
    return _d2_model("digits-det-cpu", "resnet18")


def test_strict_load_every_tensor_equal(tmp_path: Path, r18_fpn: torch.nn.Module) -> None:
    tv = _backbone("resnet18")
    pkl = export_pkl(tv, tmp_path / "b.pkl")
    n = load_backbone_strict(r18_fpn, pkl)
    n_tv = sum(1 for k in tv.state_dict() if not k.endswith("num_batches_tracked"))
    assert n == n_tv
    bu = r18_fpn.backbone.bottom_up
    assert torch.equal(bu.stem.conv1.weight, tv.conv1.weight)
    assert torch.equal(bu.stem.conv1.norm.running_var, tv.bn1.running_var)
    assert torch.equal(bu.res5[0].shortcut.norm.running_mean, tv.layer4[0].downsample[1].running_mean)
    assert torch.equal(bu.res3[1].conv2.weight, tv.layer2[1].conv2.weight)


def _edit_pkl(src: Path, dst: Path, fn) -> Path:
    obj = pickle.loads(src.read_bytes())
    fn(obj["model"])
    dst.write_bytes(pickle.dumps(obj))
    return dst


def test_missing_unexpected_and_mismatched_tensors_fail(tmp_path: Path, r18_fpn: torch.nn.Module) -> None:
    pkl = export_pkl(_backbone("resnet18"), tmp_path / "b.pkl")
    missing = _edit_pkl(pkl, tmp_path / "m.pkl", lambda s: s.pop("res4.1.conv2.weight"))
    with pytest.raises(DetectionWeightsError, match="missing.*res4.1.conv2.weight"):
        load_backbone_strict(r18_fpn, missing)
    extra = _edit_pkl(pkl, tmp_path / "x.pkl", lambda s: s.update({"res6.0.conv1.weight": np.zeros(3, np.float32)}))
    with pytest.raises(DetectionWeightsError, match="res6.0.conv1.weight"):
        load_backbone_strict(r18_fpn, extra)
    wrong = export_pkl(_backbone("resnet50"), tmp_path / "r50.pkl")  # wrong architecture for an R18 model
    with pytest.raises(DetectionWeightsError, match="shape mismatch"):
        load_backbone_strict(r18_fpn, wrong)


def test_unsupported_architecture_names_the_supported_ones() -> None:
    with pytest.raises(DetectionWeightsError, match=r"resnet18-small.*the \.pkl route supports: resnet18, resnet50;"):
        check_architecture("resnet18-small")


def test_corrupted_artifact_gives_clear_error(tmp_path: Path) -> None:
    from zoo.artifact import ArtifactError, load_artifact
    from zoo.baselines import random_init_artifact

    art = random_init_artifact(tmp_path / "a")
    weights = next(p for p in Path(art).iterdir() if p.suffix in {".pt", ".pth", ".safetensors"})
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ArtifactError):
        load_artifact(art)


def test_c4_presets_build_with_norm_after_res5() -> None:
    assert {"digits-det-cpu", "coco-r50-fpn-1x", "voc0712-r50-c4-24k", "coco-faster-r50-c4-2x"} <= set(list_presets())
    model = _d2_model("voc0712-r50-c4-24k", "resnet50")
    assert type(model.roi_heads).__name__ == "Res5ROIHeadsExtraNorm"
    assert isinstance(model.roi_heads.res5[-1], torch.nn.BatchNorm2d)
    assert model.backbone.stem.conv1.norm.__class__.__name__ == "BatchNorm2d"  # BN, trained (FREEZE_AT=0)
    with pytest.raises(ValueError, match="bottleneck"):
        _d2_model("coco-faster-r50-c4-2x", "resnet18")


def test_preset_unknown_key_and_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml\ntrails: 3\n")
    with pytest.raises(ValueError, match="trails"):
        load_preset(str(bad))
    with pytest.raises(ValueError, match="digits-det-cpu"):
        load_preset("no-such-preset")


# ---- COCO data and AP ---------------------------------------------------------------------------------


def _tiny_coco(root: Path) -> tuple[Path, Path, list[dict]]:
    from PIL import Image

    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i in range(1, 4):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(img_dir / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 80, "height": 64})
        for j, (x, y, w, h) in enumerate([(4, 5, 20, 16), (40, 30, 30, 30)]):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": j,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]
    js = root / "instances.json"
    js.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return js, img_dir, anns


def test_perfect_predictions_ap_100_and_empty_ap_0(tmp_path: Path) -> None:
    js, img_dir, anns = _tiny_coco(tmp_path)
    name = register_split(js, img_dir)

    def preds(perfect: bool):
        for i in range(1, 4):
            mine = [a for a in anns if a["image_id"] == i] if perfect else []
            boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in mine)]).reshape(-1, 4)
            yield i, boxes, torch.ones(len(mine)), torch.tensor([a["category_id"] for a in mine], dtype=torch.long)

    perfect = evaluate_predictions(name, preds(True))
    assert perfect["AP"] == pytest.approx(100.0)
    assert perfect["AP50"] == pytest.approx(100.0) and perfect["AP-a"] == pytest.approx(100.0)
    empty = evaluate_predictions(name, preds(False))
    assert empty["AP"] == 0.0 and empty["AP-b"] == 0.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["annotations"][0].pop("bbox"), "has no 'bbox'"),
        (lambda d: d["annotations"][1].update(bbox=[70, 50, 30, 30]), "outside image"),
        (lambda d: d["annotations"][2].update(category_id=7), "unknown category_id 7"),
        (lambda d: d.pop("categories"), "missing top-level list 'categories'"),
    ],
)
def test_malformed_coco_json_named(tmp_path: Path, edit, message: str) -> None:
    js, img_dir, _ = _tiny_coco(tmp_path)
    data = json.loads(js.read_text())
    edit(data)
    js.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message):
        register_split(js, img_dir)


def test_aggregate_trials_mean_and_sample_std() -> None:
    out = aggregate_trials([{"AP": 10.0, "APl": 3.0}, {"AP": 20.0}, {"AP": 30.0}])
    assert out["AP"] == 20.0 and out["AP_std"] == pytest.approx(10.0)
    assert out["APl"] == 3.0 and out["APl_std"] == 0.0 and out["trials"] == 3.0


# ---- end to end -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_detection_evaluator_end_to_end(tmp_path: Path) -> None:
    """A few iterations on a small digits-det through the registered evaluator and the eval API."""
    from downstream.api import evaluate
    from zoo.baselines import random_init_artifact
    from zoo.datasets import DatasetOptions, load_dataset

    art = random_init_artifact(tmp_path / "art")
    opts = DatasetOptions(det_train_images=6, det_val_images=3, cache_dir=str(tmp_path / "data"))
    rec = evaluate(
        art,
        "detection",
        "digits-det",
        dataset_options=opts,
        overrides=["max_iter=2", "trials=2"],
        device="cpu",
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
        out=tmp_path / "rec.json",
    )
    m = rec["metrics"]
    assert m["trials"] == 2.0
    val = json.loads(load_dataset("digits-det", "val", opts).json_path.read_text())
    present = sorted({a["category_id"] for a in val["annotations"]})  # absent classes have no AP (NaN, dropped)
    for k in ("AP", "AP_std", "AP50", "AP75", *(f"AP-{c}" for c in present)):
        assert k in m and 0.0 <= m[k] <= 100.0
    trials = json.loads((tmp_path / "work" / "detection" / "trials.json").read_text())
    assert [t["seed"] for t in trials] == [0, 1]
    n_tv = sum(1 for k in build_backbone("resnet18").state_dict() if not k.endswith("num_batches_tracked"))
    assert all(t["backbone_tensors_loaded"] == n_tv for t in trials)
    assert rec["config"]["max_iter"] == 2 and rec["evaluator"] == detection.__name__
    # issue 13: the predictions and ground truth are kept beside the record, and re-score to its AP
    from downstream.detection.rescore import compare_metrics, rescore_record

    assert sorted(rec["evidence"]) == [
        "ground_truth.json",
        "trial0/coco_instances_results.json",
        "trial1/coco_instances_results.json",
    ]
    assert (tmp_path / "rec.evidence" / "trial1" / "coco_instances_results.json").is_file()
    assert rec["evidence"]["trial1/coco_instances_results.json"]["origin"]["seed"] == 1
    per_trial, agg = rescore_record(tmp_path / "rec.json")
    assert [t["metrics"] for t in trials] == per_trial
    assert compare_metrics(m, agg) == []


@pytest.mark.parametrize(("num_workers", "expected"), [(None, 4), (0, 0), (2, 2)])
def test_loader_workers_are_the_presets_unless_set(num_workers, expected) -> None:
    """coco-r50-fpn-1x states DATALOADER.NUM_WORKERS: 4; only an explicit num_workers replaces it."""
    assert load_preset("coco-r50-fpn-1x").d2["DATALOADER.NUM_WORKERS"] == 4
    cfg = build_d2_config(
        load_preset("coco-r50-fpn-1x"),
        DetectionConfig(preset="coco-r50-fpn-1x", num_workers=num_workers),
        backbone=BackboneWeights("pkl", "resnet50", ""),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=3, train_name="unused_train", test_name="unused_test",
        output_dir="/nonexistent", seed=0, device="cpu", num_gpus=0,
    )  # fmt: skip
    assert cfg.DATALOADER.NUM_WORKERS == expected

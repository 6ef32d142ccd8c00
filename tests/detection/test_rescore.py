"""Re-scoring detection predictions with pycocotools alone gives exactly detectron2's numbers (issue 13, point 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from downstream.detection.rescore import aggregate_trials, coco_box_metrics, compare_metrics, rescore_record


def _coco(root: Path, n_images: int = 6) -> tuple[Path, Path, list[dict]]:
    """Images with 1–3 boxes of 3 classes (one class absent), sizes spanning COCO's small and medium ranges."""
    from PIL import Image

    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(1, n_images + 1):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(img_dir / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 128, "height": 96})
        for _ in range(int(rng.integers(1, 4))):
            w, h = (int(v) for v in rng.integers(8, 60, 2))
            x, y = int(rng.integers(0, 128 - w)), int(rng.integers(0, 96 - h))
            c = int(rng.integers(0, 2))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h})
            anns[-1]["iscrowd"] = 0
    cats = [{"id": 0, "name": "zero"}, {"id": 1, "name": "one"}, {"id": 2, "name": "absent"}]
    js = root / "instances_val.json"
    js.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return js, img_dir, anns


def _noisy_predictions(anns: list[dict], n_images: int, seed: int):
    """Jittered true boxes with random scores and some wrong classes, plus false positives."""
    rng = np.random.default_rng(seed)
    for i in range(1, n_images + 1):
        boxes, scores, classes = [], [], []
        for a in (a for a in anns if a["image_id"] == i):
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 3, 4)
            boxes.append([x + j[0], y + j[1], x + w + j[2], y + h + j[3]])
            scores.append(rng.uniform(0.05, 1))
            classes.append(a["category_id"] if rng.uniform() < 0.8 else 1 - a["category_id"])
        for _ in range(2):
            x, y = rng.uniform(0, 90), rng.uniform(0, 60)
            boxes.append([x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30)])
            scores.append(rng.uniform(0.05, 0.6))
            classes.append(int(rng.integers(0, 3)))
        yield i, torch.tensor(boxes), torch.tensor(scores), torch.tensor(classes)


@pytest.mark.detectron2
def test_pycocotools_alone_reproduces_detectron2_ap(tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    from downstream.detection.evaluation import evaluate_predictions, register_split

    js, img_dir, anns = _coco(tmp_path)
    name = register_split(js, img_dir)
    for seed in (0, 1):
        out = tmp_path / f"inference{seed}"
        d2 = evaluate_predictions(name, _noisy_predictions(anns, 6, seed), output_dir=out)
        assert 0 < d2["AP"] < 100 and "AP-absent" not in d2  # a real, non-trivial score
        ours = coco_box_metrics(js, out / "coco_instances_results.json")
        assert compare_metrics(d2, ours, rel_tol=1e-12) == []  # bit-for-bit the same numbers
    # no detections at all: 0, as the evaluator reports it
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert coco_box_metrics(js, empty) == {
        "AP": 0.0,
        "AP50": 0.0,
        "AP75": 0.0,
        "AP-zero": 0.0,
        "AP-one": 0.0,
        "AP-absent": 0.0,
    }


def test_rescore_record_from_its_evidence(tmp_path: Path) -> None:
    """A record with kept predictions (no detectron2 needed to re-score it), and what breaks it."""
    from benchmarks.cli import main as cli
    from zoo.io import sha256_file

    js, _, anns = _coco(tmp_path / "data")
    ev = tmp_path / "rec.evidence"
    (ev / "trial0").mkdir(parents=True)
    (ev / "trial1").mkdir()
    (ev / "ground_truth.json").write_bytes(js.read_bytes())
    per_trial = []
    for t in (0, 1):
        dets = []
        for i, boxes, scores, classes in _noisy_predictions(anns, 6, seed=t):
            for bx, s, c in zip(boxes.tolist(), scores.tolist(), classes.tolist()):
                dets.append({"image_id": i, "category_id": c, "bbox": [bx[0], bx[1], bx[2] - bx[0], bx[3] - bx[1]]})
                dets[-1]["score"] = s
        (ev / f"trial{t}" / "coco_instances_results.json").write_text(json.dumps(dets))
        per_trial.append(coco_box_metrics(js, ev / f"trial{t}" / "coco_instances_results.json"))
    names = ["ground_truth.json", "trial0/coco_instances_results.json", "trial1/coco_instances_results.json"]
    evidence = {n: {"file": f"rec.evidence/{n}", "sha256": sha256_file(ev / n), "origin": {}} for n in names}
    record = {"evaluator": "detection", "metrics": aggregate_trials(per_trial), "evidence": evidence}
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(record))

    trials, agg = rescore_record(path)
    assert [t["AP"] for t in trials] == [m["AP"] for m in per_trial]
    assert compare_metrics(record["metrics"], agg) == []
    assert cli(["rescore", str(path)]) == 0
    # a record whose numbers do not follow from its predictions fails
    path.write_text(json.dumps({**record, "metrics": {**record["metrics"], "AP": record["metrics"]["AP"] + 1}}))
    assert cli(["rescore", str(path)]) == 1
    # altered predictions are refused
    path.write_text(json.dumps(record))
    (ev / "trial1" / "coco_instances_results.json").write_text("[]")
    with pytest.raises(ValueError, match="does not match the recorded sha256"):
        rescore_record(path)
    # a record without kept predictions cannot be re-scored, and says so
    path.write_text(json.dumps({"evaluator": "detection", "metrics": {"AP": 1.0}}))
    with pytest.raises(ValueError, match="no 'evidence' block"):
        rescore_record(path)

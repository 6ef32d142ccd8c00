"""COCO-format datasets in detectron2's catalog, and COCO AP through ``COCOEvaluator``.

Without the C++ extension, ``COCOEvaluator(..., use_fast_impl=False)`` evaluates with plain pycocotools.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances

from zoo.datasets import validate_coco_json

__all__ = ["register_split", "make_evaluator", "flatten_bbox", "evaluate_predictions"]


def register_split(json_path: str | Path, image_dir: str | Path, prefix: str = "byol") -> str:
    """Validate a COCO json against its images and register it once; return the catalog name.

    The name is derived from the paths, so re-registering the same split (another trial, another
    process) is a no-op and two different folders never collide.
    """
    json_path, image_dir = Path(json_path).resolve(), Path(image_dir).resolve()
    validate_coco_json(json_path, image_dir)  # DatasetError naming the problem
    digest = hashlib.sha256(f"{json_path}\0{image_dir}".encode()).hexdigest()[:12]
    name = f"{prefix}_{json_path.stem}_{digest}"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, str(json_path), str(image_dir))
    return name


class _BoxAP(COCOEvaluator):
    """``COCOEvaluator`` that scores a prediction set with no detections at all as AP 0.

    pycocotools cannot load an empty result list, and detectron2 then reports NaN; but no detections
    means no true positives, so AP, AP50, AP75 and every per-class AP are 0 (size ranges stay absent).
    """

    def evaluate(self, img_ids: Any = None) -> dict[str, Any]:
        results = super().evaluate(img_ids)
        if not results:  # non-main process
            return results
        bbox = results.get("bbox", {})
        if bbox and all(isinstance(v, float) and math.isnan(v) for v in bbox.values()):
            classes = MetadataCatalog.get(self._metadata.name).thing_classes
            results["bbox"] = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, **{f"AP-{c}": 0.0 for c in classes}}
        return results


def make_evaluator(dataset_name: str, output_dir: str | Path | None = None) -> COCOEvaluator:
    """Box AP with pycocotools (``use_fast_impl=False``: no C++ extension needed)."""
    return _BoxAP(
        dataset_name,
        tasks=("bbox",),
        distributed=True,
        output_dir=str(output_dir) if output_dir else None,
        use_fast_impl=False,
    )


def flatten_bbox(results: dict[str, Any]) -> dict[str, float]:
    """``{"bbox": {"AP": …, "AP-<class>": …}}`` → flat finite floats (COCO gives NaN for empty area ranges)."""
    bbox = results.get("bbox", {})
    return {k: float(v) for k, v in bbox.items() if isinstance(v, int | float) and math.isfinite(float(v))}


def evaluate_predictions(
    dataset_name: str,
    predictions: Iterable[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]],
    output_dir: str | Path | None = None,
) -> dict[str, float]:
    """AP of given detections: ``(image_id, boxes_xyxy N×4, scores N, contiguous classes N)`` per image.

    The same evaluator path training uses (``make_evaluator`` → ``flatten_bbox``).
    """
    meta = {d["image_id"]: d for d in DatasetCatalog.get(dataset_name)}
    ev = make_evaluator(dataset_name, output_dir)
    ev.reset()
    for image_id, boxes, scores, classes in predictions:
        d = meta[image_id]
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(boxes.float().reshape(-1, 4))
        inst.scores = scores.float()
        inst.pred_classes = classes.long()
        ev.process([{"image_id": image_id}], [{"instances": inst}])
    return flatten_bbox(ev.evaluate() or {})


def class_names(dataset_name: str) -> list[str]:
    return list(MetadataCatalog.get(dataset_name).thing_classes)

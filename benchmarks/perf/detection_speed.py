"""Seconds per training iteration and peak memory of the detection preset (default: ``digits-det-cpu``).

    .venv/bin/python benchmarks/perf/detection_speed.py [--preset digits-det-cpu] [--arch resnet18]
        [--iters 20] [--warmup 3] [--threads N] [--device cpu|cuda]

Builds the preset's Faster R-CNN exactly as the ``detection`` evaluator does (converted random-init
backbone loaded strictly, digits-det train split, detectron2's train loader and optimizer), runs
``warmup`` untimed then ``iters`` timed iterations of ``SimpleTrainer.run_step`` and prints the median
and mean s/iter and the peak resident memory (CPU) or peak allocated GPU memory. Reference before
issue #5 (idle 2-core CPU): R18-FPN at 128 px, batch 2, 128 ROIs/image ≈ 0.8 s/iter, 1.3 GiB.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from detectron2.data import build_detection_train_loader
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer

from downstream.detection.config import DetectionConfig, load_preset
from downstream.detection.evaluation import register_split
from downstream.detection.modeling import build_d2_config
from downstream.detection.weights import check_architecture, export_pkl, load_backbone_strict
from zoo.backbones import build_backbone
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD, load_dataset


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="digits-det-cpu")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    # ---- model and data, as the evaluator builds them
    train = load_dataset("digits-det", "train")
    name = register_split(train.json_path, train.image_dir)
    work = Path(tempfile.mkdtemp(prefix="detection-speed-"))
    torch.manual_seed(0)
    pkl = export_pkl(build_backbone(args.arch), work / "backbone.pkl")
    cfg = build_d2_config(
        load_preset(args.preset),
        DetectionConfig(preset=args.preset),
        resnet=check_architecture(args.arch),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        num_classes=train.num_classes,
        train_name=name,
        test_name=name,
        weights=str(pkl),
        output_dir=str(work),
        seed=0,
        device=args.device,
        num_gpus=1 if args.device.startswith("cuda") else 0,
    )
    model = build_model(cfg)
    load_backbone_strict(model, pkl)
    model.train()
    trainer = SimpleTrainer(model, build_detection_train_loader(cfg), build_optimizer(cfg, model))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    # ---- timed iterations
    from detectron2.utils.events import EventStorage

    times = []
    with EventStorage(0) as storage:
        for i in range(args.warmup + args.iters):
            storage.iter = i
            sync()
            t0 = time.perf_counter()
            trainer.run_step()
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)

    mem = (
        f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        if args.device.startswith("cuda")
        else f"peak RSS {rss_peak_mib() / 1024:.2f} GiB"
    )
    print(
        f"{args.preset} {args.arch} batch {cfg.SOLVER.IMS_PER_BATCH} at {cfg.INPUT.MIN_SIZE_TRAIN[0]} px, "
        f"{cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE} ROIs/image, {torch.get_num_threads()} threads: "
        f"median {statistics.median(times):.2f} s/iter, mean {statistics.fmean(times):.2f} s/iter "
        f"over {len(times)} iterations; {mem}"
    )


if __name__ == "__main__":
    main()

"""Seconds per training iteration and peak memory of a detection preset (default: the dataset's).

    .venv/bin/python benchmarks/perf/detection_speed.py [--dataset digits-det|shapes-det] [--preset NAME]
        [--arch resnet18] [--route auto|pkl|adapter] [--iters 20] [--warmup 3] [--threads N] [--device cpu|cuda]

Builds the preset's Faster R-CNN exactly as the ``detection`` evaluator does (a random-init artifact of
``--arch`` through the route the evaluator would take — converted ``.pkl`` loaded strictly, or the backbone
adapter — the dataset's train split, detectron2's train loader and optimizer), runs
``warmup`` untimed then ``iters`` timed iterations of ``SimpleTrainer.run_step`` and prints the median
and mean s/iter and the peak resident memory (CPU) or peak allocated GPU memory. Reference before
issue #5 (idle 2-core CPU): R18-FPN at 128 px, batch 2, 128 ROIs/image ≈ 0.8 s/iter, 1.3 GiB.
The figures go to ``results/perf/<--name>.json`` (``benchmarks.perf_record``; ``--no-record`` skips it); there
is no reference side, so the record has no ratio.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # runs from the repo root without an install

from detectron2.data import build_detection_train_loader  # noqa: E402
from detectron2.engine import SimpleTrainer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.solver import build_optimizer  # noqa: E402

from benchmarks.perf_record import load_average, perf_record, side, write_perf_record  # noqa: E402
from downstream.detection.config import ROUTES, DetectionConfig, load_preset  # noqa: E402
from downstream.detection.evaluation import register_split  # noqa: E402
from downstream.detection.modeling import build_d2_config  # noqa: E402
from downstream.detection.weights import backbone_weights, choose_route, load_backbone_strict  # noqa: E402
from zoo.artifact import load_artifact  # noqa: E402
from zoo.baselines import random_init_artifact  # noqa: E402
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD, load_dataset  # noqa: E402


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits-det")
    p.add_argument("--preset", default=None, help="default: the dataset's (<dataset>-cpu, else digits-det-cpu)")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--route", default="auto", choices=ROUTES)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--name", default="detection_speed", help="results/perf/<name>.json")
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    load_before = load_average()
    if args.threads:
        torch.set_num_threads(args.threads)

    # ---- model and data, as the evaluator builds them
    train = load_dataset(args.dataset, "train")
    name = register_split(train.json_path, train.image_dir)
    work = Path(tempfile.mkdtemp(prefix="detection-speed-"))
    preset = load_preset(args.preset, dataset=args.dataset)
    route = choose_route(args.arch, args.route)
    weights = backbone_weights(route, load_artifact(random_init_artifact(work / "artifact", args.arch)), work)
    cfg = build_d2_config(
        preset,
        DetectionConfig(preset=preset.name),
        backbone=weights,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        num_classes=train.num_classes,
        train_name=name,
        test_name=name,
        output_dir=str(work),
        seed=0,
        device=args.device,
        num_gpus=1 if args.device.startswith("cuda") else 0,
    )
    model = build_model(cfg)
    if route == "pkl":
        load_backbone_strict(model, weights.path)
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
        f"{args.dataset} {preset.name} {args.arch} ({route}) batch {cfg.SOLVER.IMS_PER_BATCH} "
        f"at {cfg.INPUT.MIN_SIZE_TRAIN[0]} px, "
        f"{cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE} ROIs/image, {torch.get_num_threads()} threads: "
        f"median {statistics.median(times):.2f} s/iter, mean {statistics.fmean(times):.2f} s/iter "
        f"over {len(times)} iterations; {mem}"
    )
    if args.no_record:
        return
    on_gpu = args.device.startswith("cuda")
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else rss_peak_mib() / 1024
    record = perf_record(
        args.name,
        what=f"Faster R-CNN training iteration, {args.dataset} {preset.name}, {args.arch} ({route})",
        metric="seconds_per_iter",
        unit="s/iter",
        higher_is_better=False,
        sides={"ours": side("detection evaluator's model", times, peak_memory_gib=peak_gib)},
        ratio=None,
        ratio_definition=None,
        threads=torch.get_num_threads(),
        device=args.device,
        load_before=load_before,
        details={"warmup": args.warmup, "batch": cfg.SOLVER.IMS_PER_BATCH, "mean_s": statistics.fmean(times)},
    )
    print(f"record: {write_perf_record(record, args.results_dir)}")


if __name__ == "__main__":
    main()

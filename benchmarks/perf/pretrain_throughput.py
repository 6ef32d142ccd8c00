"""BYOL training throughput: our trainer vs a reference loop built from ``lightly``'s BYOL modules.

Both sides use the same backbone, batch size, resolution, projector/predictor widths, LARS settings and
the two views of ``pretrain/configs/byol.yaml`` (random resized crop, flip, colour jitter, grayscale, blur with
σ scaled by size/224, solarize), on the train split of its dataset (``--dataset`` to change it), and LARS
(``optim.name=lars`` whatever the config says: the reference is lightly's LARS).

- ours: ``pretrain.train.train`` itself for one short epoch (batched tensor augmentations, our EMA and
  loss); images/s is read from its ``metrics.jsonl`` (the median over steps after the warm-up steps).
- reference: ``lightly`` ``BYOLProjectionHead``/``BYOLPredictionHead``, ``update_momentum``,
  ``cosine_schedule``, ``NegativeCosineSimilarity``, ``BYOLTransform`` (PIL, per image), its ``LARS``, and a
  plain ``torch.utils.data.DataLoader``, in the loop of lightly's BYOL example.

Memory format: ours runs as shipped (``run.channels_last: true``, ~14 % faster per step on this CPU for
``resnet18-w16``), the reference as lightly's example (contiguous). ``--reference-channels-last on`` gives
the reference channels_last too (the like-for-like control), ``--channels-last off`` takes it from ours.

Allocator: ours runs with ``run.malloc_tuning: true`` as shipped (glibc ``mallopt``, ``pretrain/allocator.py``),
the reference with glibc's defaults as lightly's loop runs; ``--reference-malloc-tuning on`` applies the same
settings in the reference's process (the control), ``--malloc-tuning off`` takes them from ours.

Each side runs in its own subprocess so that peak memory (max RSS on CPU, ``max_memory_allocated`` on GPU)
is its own. Usage::

    python benchmarks/perf/pretrain_throughput.py --batch 128 --steps 16 --warmup 4 --threads 2 --repeats 5

The machine's load drifts (a shared 2-core VM: single runs of the same command gave ratios from 1.1× to
1.6×), so each side runs ``--repeats`` times, alternating, and the medians are compared.

The figures go to ``results/perf/<name>.json`` (``benchmarks.perf_record``; default name
``pretrain_throughput-<device>-<threads>t``, ``--name`` to change it, ``--no-record`` to skip), from which
``benchmarks/perf/report.py`` builds the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _common_overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"backbone.arch={args.arch}",
        f"data.image_size={args.image_size}",
        f"optim.batch_size={args.batch}",
        f"heads.projector_hidden={args.hidden}",
        f"heads.predictor_hidden={args.hidden}",
        "heads.projector_out=256",
        "run.progress=false",
        "run.knn_every=0",
        "run.log_every=1",
        f"run.channels_last={'true' if _channels_last(args, 'ours') else 'false'}",
        f"run.malloc_tuning={'true' if args.malloc_tuning == 'on' else 'false'}",
        f"run.device={args.device}",
        f"data.limit={args.batch * (args.steps + args.warmup)}",
        "run.epochs=1",
        f"run.checkpoint_every={10**6}",
        # byol.yaml pins run.threads=1 for the shared CPU; the trainer would override --threads with it
        f"run.threads={args.threads or 'null'}",
        # the setting is LARS on both sides (the reference uses lightly's LARS), whatever byol.yaml says
        "optim.name=lars",
        *([f"data.dataset={args.dataset}"] if args.dataset else []),
    ]


def _channels_last(args: argparse.Namespace, which: str) -> bool:
    """Ours: byol.yaml's setting (channels_last, on CPU too since 2026-12-01) unless ``--channels-last off``;
    the reference: lightly's example (contiguous) unless ``--reference-channels-last on``."""
    flag = args.channels_last if which == "ours" else args.reference_channels_last
    return flag == "on"


def run_ours(args: argparse.Namespace) -> dict:
    from pretrain.config import load_pretrain_config
    from pretrain.train import read_metrics, train

    cfg = load_pretrain_config(REPO / "pretrain" / "configs" / "byol.yaml", _common_overrides(args))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(cfg, Path(tmp) / "run", resume=False)
        wall = time.perf_counter() - start
        steps = [r for r in read_metrics(Path(tmp) / "run") if r.get("kind") == "step"]
    rates = [r["images_per_s"] for r in steps[args.warmup :]]
    return {"images_per_s": statistics.median(rates), "steps": len(rates), "wall_s": wall}


def run_lightly(args: argparse.Namespace) -> dict:
    from lightly.loss import NegativeCosineSimilarity
    from lightly.utils.scheduler import cosine_schedule

    from benchmarks.lightly_reference import LightlyBYOL, lightly_lars, lightly_loader, lightly_step, lightly_views
    from pretrain.config import load_pretrain_config
    from zoo.datasets import DatasetOptions, load_dataset

    cfg = load_pretrain_config(REPO / "pretrain" / "configs" / "byol.yaml", _common_overrides(args))
    split = load_dataset(cfg.data.dataset, "train", DatasetOptions(image_size=args.image_size))  # ours' data too
    transform = lightly_views(cfg.augment, args.image_size, split.mean, split.std)
    limit = args.batch * (args.steps + args.warmup)
    loader = lightly_loader(split, transform, args.batch, limit, args.workers)
    device = torch.device(args.device)
    fmt = torch.channels_last if _channels_last(args, "lightly") else torch.contiguous_format
    model = LightlyBYOL(args.arch, args.hidden, 256).to(device, memory_format=fmt)
    criterion = NegativeCosineSimilarity()
    opt = lightly_lars(model, cfg.optim, cfg.optim.base_lr * args.batch / 256)
    total = len(loader)
    times = []
    t0 = time.perf_counter()
    start = time.perf_counter()
    for step, (x0, x1) in enumerate(loader):
        m = cosine_schedule(step, total, cfg.byol.tau_base, 1.0)
        x0, x1 = (x.to(device).contiguous(memory_format=fmt) for x in (x0, x1))
        float(lightly_step(model, criterion, opt, x0, x1, m))
        now = time.perf_counter()
        times.append(now - t0)
        t0 = now
    wall = time.perf_counter() - start
    rates = [args.batch / t for t in times[args.warmup :]]
    return {"images_per_s": statistics.median(rates), "steps": len(rates), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--which", choices=("both", "ours", "lightly"), default="both")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--dataset", default=None, help="training images, both sides (default: byol.yaml's)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=1024, help="projector/predictor hidden width")
    parser.add_argument("--steps", type=int, default=16, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference loop")
    parser.add_argument("--repeats", type=int, default=5, help="runs per side, alternating; medians reported")
    parser.add_argument(
        "--channels-last", choices=("on", "off"), default="on", help="ours' memory format (byol.yaml: on)"
    )
    parser.add_argument(
        "--reference-channels-last",
        choices=("on", "off"),
        default="off",
        help="the reference's memory format (lightly's example: off; on = the like-for-like control)",
    )
    parser.add_argument(
        "--malloc-tuning", choices=("on", "off"), default="on", help="ours' run.malloc_tuning (byol.yaml: on)"
    )
    parser.add_argument(
        "--reference-malloc-tuning",
        choices=("on", "off"),
        default="off",
        help="the same glibc malloc settings in the reference's process (lightly's loop: off; on = the control)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default=None, help="record name (default pretrain_throughput-<device>-<threads>t)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the record goes (results/perf)")
    parser.add_argument("--no-record", action="store_true", help="print only, write no results/perf record")
    args = parser.parse_args()

    if args.which != "both":
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.which == "lightly" and args.reference_malloc_tuning == "on" and args.device == "cpu":
            from pretrain.allocator import tune_glibc_malloc

            tune_glibc_malloc()
        device = torch.device(args.device)
        res = run_ours(args) if args.which == "ours" else run_lightly(args)
        res.update(peak_memory_mb=_peak_memory_mb(device), threads=torch.get_num_threads(), which=args.which)
        print("RESULT " + json.dumps(res))
        return

    from benchmarks.perf_record import load_average, perf_record, side, write_perf_record
    from zoo.io import machine_info

    load_before = load_average()
    runs: dict[str, list[dict]] = {"ours": [], "lightly": []}
    for _ in range(args.repeats):  # alternate the sides so that a drift in machine load hits both
        for which in ("ours", "lightly"):
            cmd = [sys.executable, __file__, "--which", which]
            cmd += _child_args(sys.argv[1:])
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{which} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            runs[which].append(json.loads(line[len("RESULT ") :]))
    results = {
        which: {
            "images_per_s": statistics.median(r["images_per_s"] for r in rs),
            "images_per_s_each": [round(r["images_per_s"], 1) for r in rs],
            "peak_memory_mb": max(r["peak_memory_mb"] for r in rs),
            "steps": rs[0]["steps"],
        }
        for which, rs in runs.items()
    }
    pair_ratios = [o["images_per_s"] / ref["images_per_s"] for o, ref in zip(runs["ours"], runs["lightly"])]
    info = machine_info()
    print(f"device: {args.device} ({info.get('gpu') or info['cpu']}, {info['cpu_count']} cores), "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{args.arch} {args.image_size}px batch {args.batch} hidden {args.hidden}, threads {args.threads}, "
          f"reference DataLoader workers {args.workers}, {args.repeats} alternating repeats, channels_last "
          f"ours {args.channels_last} / reference {args.reference_channels_last}, malloc tuning ours "
          f"{args.malloc_tuning} / reference {args.reference_malloc_tuning}")  # fmt: skip
    print(f"{'loop':<10}{'images/s':>10}{'peak MB':>10}{'steps':>7}  each repeat")
    for which, r in results.items():
        print(f"{which:<10}{r['images_per_s']:>10.1f}{r['peak_memory_mb']:>10.0f}{r['steps']:>7}  "
              f"{r['images_per_s_each']}")  # fmt: skip
    ratio = results["ours"]["images_per_s"] / results["lightly"]["images_per_s"]
    print(f"ratio ours / lightly (medians): {ratio:.2f}x; per repeat: {', '.join(f'{x:.2f}' for x in pair_ratios)}")
    print("JSON " + json.dumps({"results": results, "ratio": ratio, "pair_ratios": pair_ratios, "args": vars(args)}))
    if args.no_record:
        return
    threads = args.threads or runs["ours"][0]["threads"]
    controls = [  # settings that differ from each loop as shipped
        *(["ours contiguous"] if args.channels_last == "off" else []),
        *(["ours without malloc tuning"] if args.malloc_tuning == "off" else []),
        *(["reference channels_last"] if args.reference_channels_last == "on" else []),
        *(["reference with malloc tuning"] if args.reference_malloc_tuning == "on" else []),
    ]
    peak_mb = {which: results[which]["peak_memory_mb"] for which in runs}
    record = perf_record(
        args.name or f"pretrain_throughput-{args.device}-{threads}t",
        what=f"BYOL training, {args.arch} {args.image_size} px, batch {args.batch}, heads {args.hidden}"
        + (f" ({', '.join(controls)})" if controls else ""),
        metric="images_per_s",
        unit="images/s",
        higher_is_better=True,
        sides={
            "ours": side("pretrain.train", [r["images_per_s"] for r in runs["ours"]], peak_memory_mb=peak_mb["ours"]),
            "lightly": side(
                "lightly reference loop",
                [r["images_per_s"] for r in runs["lightly"]],
                peak_memory_mb=peak_mb["lightly"],
            ),
        },
        ratio=ratio,
        ratio_definition="ours / lightly, medians",
        goal=None if controls else "≥ 1.3× (stretch 1.4×)",  # the goal is for both loops as shipped
        threads=threads,
        device=args.device,
        load_before=load_before,
        details={
            "pair_ratios": pair_ratios,
            "steps": results["ours"]["steps"],
            "args": {k: str(v) for k, v in vars(args).items()},
        },
    )
    print(f"record: {write_perf_record(record, args.results_dir)}")


def _child_args(argv: list[str]) -> list[str]:
    """The parent's arguments without the ones only the parent uses (``--which``, record options)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        key = a.split("=", 1)[0]
        if key in ("--which", "--name", "--results-dir"):
            skip = "=" not in a
            continue
        if key == "--no-record":
            continue
        out.append(a)
    return out


if __name__ == "__main__":
    main()

"""Time to a useful backbone: training seconds until kNN first beats random-init by 5 points, ours vs lightly.

Both sides train the same backbone with the same recipe — the pretraining config (``--config``, default
``pretrain/configs/byol.yaml``, ``--dataset`` overriding ``data.dataset``, any ``key=value`` after it) — with
the same augmentation strengths and the same torch threads:

- ours: ``pretrain.train.train`` itself, its in-run kNN every ``run.knn_every`` epochs (``--eval-every``);
  the clock is the trainer's ``train_s`` (the epoch records' training seconds, without the kNN and without
  checkpoint writes, which the reference loop does not do; their total is in the JSON);
- reference: the loop of ``benchmarks/lightly_reference.py`` (lightly's heads, ``update_momentum``, loss,
  PIL ``BYOLTransform`` views in a ``DataLoader``) with the config's batch, heads, LR schedule, τ
  schedule and memory format (``run.channels_last``); lightly's ``LARS`` when the config says ``lars``,
  else torch's SGD / AdamW over the same parameter groups as ours (no decay on biases and BN); its loss
  scaled by 4, which makes its gradients ours (``2 − 2cos`` summed over both view orders); its clock stops
  while it evaluates.

Both evaluate the same weighted kNN (``pretrain.knn``: train-split bank, ``data.knn_split`` queries,
``run.knn_k``, ``run.knn_temperature``) at the same epochs, starting with the initialisation (epoch 0,
"random-init"; both sides build the backbone from the same seed). The figure of merit is the training time
at the first evaluation whose kNN exceeds that side's random-init kNN by ``--margin`` (default 0.05 = 5
points); the ratio is lightly's time / ours (goal ≥ 1.5×). Each side runs in its own subprocess, once per seed
of ``--seeds`` (default: the config's ``seed``) and ``--repeats`` times per seed, and the medians over all runs
are compared (a run that never crosses counts as infinitely slow). Seeds, not repeats, are what varies: a run
is deterministic, and BYOL's training is chaotic (a 1e-11 change in the weights grows to 1e-4 within ten
steps, and single-seed curves of the same recipe differ by several kNN points), so one seed per side decides
nothing. Usage::

    python benchmarks/perf/time_to_learn.py --dataset shapes --threads 2            # the measurement
    python benchmarks/perf/time_to_learn.py --config pretrain/configs/byol.yaml run.epochs=30 --repeats 3
    python benchmarks/perf/time_to_learn.py --threads 1 --side-by-side               # 2 cores: one per side
    python benchmarks/perf/time_to_learn.py --threads 1 --side-by-side --seeds 0 1 2 # the published figure
    python benchmarks/perf/time_to_learn.py --smoke                                  # tiny digits run, ~1 min

Writes ``results/perf/<name>.json`` (``benchmarks.perf_record``, with both kNN-vs-seconds curves; default
name ``time_to_learn-<dataset>``) and ``<name>.png``, the curves. ``--smoke`` writes to ``outputs/perf-smoke/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

DEFAULT_CONFIG = REPO / "pretrain" / "configs" / "byol.yaml"
SMOKE = [  # digits, 16 px, narrow heads, 64 images: seconds per epoch on one thread
    "data.dataset=digits",
    "data.image_size=16",
    "data.limit=64",
    "data.knn_limit=32",
    "heads.projector_hidden=32",
    "heads.projector_out=16",
    "heads.predictor_hidden=32",
    "optim.batch_size=16",
    "optim.warmup_epochs=1",
    "run.epochs=2",
]


# --------------------------------------------------------------------------------------------------
# One side, in its own process: a curve of (epoch, training seconds, kNN)
# --------------------------------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> Any:
    from pretrain.config import load_pretrain_config

    overrides = [*(SMOKE if args.smoke else []), *args.overrides]
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    overrides += [f"run.knn_every={args.eval_every}", "run.progress=false", f"run.checkpoint_every={10**9}"]
    if args.threads:
        overrides.append(f"run.threads={args.threads}")
    return load_pretrain_config(args.config, overrides)


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    from pretrain.train import read_metrics, train

    cfg = _config(args)
    with tempfile.TemporaryDirectory(prefix="time-to-learn-") as tmp:
        train(cfg, Path(tmp) / "run", resume=False)
        epochs = [r for r in read_metrics(Path(tmp) / "run") if r.get("kind") == "epoch"]
    curve = [
        {"epoch": r["epoch"], "train_s": r.get("train_s", 0.0), "knn": r["knn_val_top1"]}
        for r in epochs
        if "knn_val_top1" in r
    ]
    return {"curve": curve, "checkpoint_s": epochs[-1].get("checkpoint_s", 0.0)}


def _check_reference_can_run(cfg: Any) -> None:
    """The lightly loop has lightly's 2-layer BN heads, no gradient clipping and no background swap."""
    problems = []
    if cfg.optim.name == "lars" and cfg.byol.predictor_lr_mult != 1.0:
        problems.append("optim.name=lars with byol.predictor_lr_mult != 1 (lightly's LARS has one LR)")
    if not cfg.byol.predictor:
        problems.append("byol.predictor must be true (lightly's BYOL has a prediction head)")
    h = cfg.heads
    if h.projector_layers != 2 or h.predictor_layers != 2 or not h.batch_norm:
        problems.append("heads must be 2-layer with batch_norm (lightly's BYOL heads)")
    if cfg.optim.grad_clip:
        problems.append("optim.grad_clip must be off (the reference loop does not clip)")
    if max(cfg.augment.view1.background_swap_p, cfg.augment.view2.background_swap_p) > 0:
        problems.append("augment.*.background_swap_p must be 0 (lightly's views have no background swap)")
    if problems:
        raise SystemExit("the lightly reference cannot run this recipe: " + "; ".join(problems))


def _reference_optimizer(cfg: Any, model: Any, lr: float, predictor_lr: float) -> Any:
    """lightly's LARS for ``lars``; otherwise torch's SGD / AdamW over our parameter groups, as our trainer."""
    from benchmarks.lightly_reference import lightly_lars
    from pretrain.optim import build_optimizer, param_groups

    if cfg.optim.name == "lars":
        return lightly_lars(model, cfg.optim, lr)
    lrs = {"backbone": lr, "projector": lr, "predictor": predictor_lr}
    modules = {"backbone": model.backbone, "projector": model.projection_head, "predictor": model.prediction_head}
    groups = param_groups(modules, lrs, cfg.optim.weight_decay, cfg.optim.exclude_bias_bn)
    o = cfg.optim
    return build_optimizer(o.name, groups, max(lrs.values()), o.momentum, o.weight_decay, o.lars_eta, o.betas)


def run_lightly(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from lightly.loss import NegativeCosineSimilarity
    from lightly.utils.scheduler import cosine_schedule

    from benchmarks.lightly_reference import LightlyBYOL, lightly_loader, lightly_step, lightly_views
    from pretrain.config import derive
    from pretrain.knn import knn_accuracy
    from pretrain.optim import lr_at
    from zoo.datasets import DatasetOptions, load_dataset

    cfg = _config(args)
    _check_reference_can_run(cfg)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    np.random.seed(cfg.seed)  # lightly's blur and solarize draw from NumPy's and Python's generators
    random.seed(cfg.seed)
    opts = DatasetOptions(root=cfg.data.root, image_size=cfg.data.image_size)
    train = load_dataset(cfg.data.dataset, cfg.data.split, opts)
    if cfg.data.limit is not None:
        train = train.subset(np.arange(min(cfg.data.limit, len(train))))
    query = load_dataset(cfg.data.dataset, cfg.data.knn_split, opts)
    if cfg.data.knn_limit is not None:
        query = query.subset(np.arange(min(cfg.data.knn_limit, len(query))))

    def clean(split: Any) -> tuple[torch.Tensor, torch.Tensor]:  # normalised, un-augmented: the trainer's bank
        x, y = split.arrays()
        x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255
        mean, std = torch.tensor(split.mean).view(1, 3, 1, 1), torch.tensor(split.std).view(1, 3, 1, 1)
        return (x - mean) / std, torch.from_numpy(np.asarray(y)).long()

    bank, queries = clean(train), clean(query)
    h = cfg.heads
    torch.manual_seed(cfg.seed)  # the backbone is built first, as in our trainer: the same initial weights
    model = LightlyBYOL(cfg.backbone.arch, h.projector_hidden, h.projector_out, h.predictor_hidden)
    derived = derive(cfg, len(train))
    views = lightly_views(cfg.augment, cfg.data.image_size, train.mean, train.std)
    loader = lightly_loader(train, views, cfg.optim.batch_size)
    opt = _reference_optimizer(cfg, model, derived.lr, derived.predictor_lr)
    peak = max(derived.lr, derived.predictor_lr)
    criterion = NegativeCosineSimilarity()
    spe, total = len(loader), len(loader) * cfg.run.epochs

    def knn() -> float:
        k, t = cfg.run.knn_k, cfg.run.knn_temperature
        return knn_accuracy(model.backbone, *bank, *queries, train.num_classes, k=k, t=t)

    curve = [{"epoch": 0, "train_s": 0.0, "knn": knn()}]
    train_s, step = 0.0, 0
    fmt = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)  # the recipe's memory format, as our trainer
    model.train()
    for epoch in range(1, cfg.run.epochs + 1):
        t0 = time.perf_counter()
        for x0, x1 in loader:
            x0, x1 = x0.contiguous(memory_format=fmt), x1.contiguous(memory_format=fmt)
            lr_now = lr_at(step, total, derived.warmup_steps, peak, cfg.optim.min_lr_frac)
            for g in opt.param_groups:
                g["lr"] = lr_now * g.get("lr_scale", 1.0)
            tau = (
                cosine_schedule(step, total, cfg.byol.tau_base, 1.0)
                if cfg.byol.tau_schedule == "cosine"
                else cfg.byol.tau_base
            )
            loss = lightly_step(model, criterion, opt, x0, x1, tau, loss_scale=4.0)  # our loss's gradient
            step += 1
        float(loss)  # the step's work is done before the clock stops
        train_s += time.perf_counter() - t0
        if epoch % cfg.run.knn_every == 0 or epoch == cfg.run.epochs:
            curve.append({"epoch": epoch, "train_s": train_s, "knn": knn()})
    assert step == spe * cfg.run.epochs
    return {"curve": curve}


# --------------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------------


def time_to_reach(curve: list[dict[str, float]], margin: float) -> float | None:
    """Training seconds at the first evaluation after the initialisation whose kNN > epoch-0 kNN + margin."""
    base = curve[0]["knn"]
    for point in curve[1:]:
        if point["knn"] > base + margin:
            return point["train_s"]
    return None


def _median_or_none(values: list[float | None]) -> float | None:
    """Median over the runs, a run that never reached the threshold counting as infinitely slow; ``None`` when
    that median is infinite (half the runs or more did not reach it) or there are no runs."""
    if not values:
        return None
    med = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(med) else med


def _lightly_over_ours(med: dict[str, float | None]) -> float | None:
    """The figure of merit from each side's median time: lightly's / ours, None where either is undefined."""
    return med["lightly"] / med["ours"] if med["ours"] and med["lightly"] else None


def seed_ratios(runs: dict[str, list[dict[str, Any]]], margin: float) -> dict[str, float | None]:
    """Per seed: lightly's median time / ours (None where a side's median is undefined for that seed)."""
    out: dict[str, float | None] = {}
    for seed in sorted({r["seed"] for rs in runs.values() for r in rs}):
        med = {
            w: _median_or_none([time_to_reach(r["curve"], margin) for r in rs if r["seed"] == seed])
            for w, rs in runs.items()
        }
        out[str(seed)] = _lightly_over_ours(med)
    return out


def plot_curves(runs: dict[str, list[dict[str, Any]]], margin: float, title: str, path: Path) -> None:
    """kNN gain over the run's own random-init (points) against training seconds, every run of each side.

    Seeds start from different networks, so each curve is drawn relative to its epoch-0 kNN; the dashed line
    is the threshold (+margin), a dotted line marks where a run crossed it, and the thick lines are the
    per-epoch medians over the runs of each side (time and gain)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.io import atomic_write_with

    colours = {"ours": "tab:blue", "lightly": "tab:orange"}
    styles = ["-", "--", "-.", ":"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for which, reps in runs.items():
        for i, rep in enumerate(reps):
            xs = [p["train_s"] for p in rep["curve"]]
            ys = [100 * (p["knn"] - rep["curve"][0]["knn"]) for p in rep["curve"]]
            ax.plot(xs, ys, marker="o", ms=2.5, lw=1, color=colours[which], alpha=0.45, ls=styles[i % len(styles)],
                    label=f"{which}, seed {rep.get('seed', '?')}")  # fmt: skip
            t = time_to_reach(rep["curve"], margin)
            if t is not None:
                ax.axvline(t, color=colours[which], ls=":", lw=0.8, alpha=0.5)
        n = min(len(r["curve"]) for r in reps)
        med_x = [statistics.median(r["curve"][k]["train_s"] for r in reps) for k in range(n)]
        med_y = [statistics.median(100 * (r["curve"][k]["knn"] - r["curve"][0]["knn"]) for r in reps) for k in range(n)]
        ax.plot(med_x, med_y, lw=2.5, color=colours[which], label=f"{which}, median over runs")
    ax.axhline(100 * margin, color="black", ls="--", lw=0.8, alpha=0.7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("training seconds (evaluation excluded)")
    ax.set_ylabel("kNN top-1 gain over random-init (points)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config, e.g. run.epochs=30")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--dataset", default=None, help="overrides data.dataset (e.g. shapes)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads, both sides (default: run.threads)")
    parser.add_argument("--eval-every", type=int, default=1, help="epochs between kNN evaluations (both sides)")
    parser.add_argument("--margin", type=float, default=0.05, help="kNN gain over random-init that counts (0.05)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side and seed; medians compared")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="seeds, each run on both sides (default: the config's)"
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="run the two sides at the same time (with --threads 1 on a 2-core machine: one core each)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny digits run that checks the script end to end")
    parser.add_argument("--name", default=None, help="record name (default time_to_learn-<dataset>)")
    parser.add_argument("--results-dir", type=Path, default=None, help="default results/perf (smoke: outputs/)")
    parser.add_argument("--which", choices=("both", "ours", "lightly"), default="both", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.which != "both":  # a child: one side, its curve to --child-out
        result = run_ours(args) if args.which == "ours" else run_lightly(args)
        args.child_out.write_text(json.dumps(result))
        return

    from benchmarks.perf_record import load_average, perf_record, side, write_perf_record

    cfg = _config(args)  # validates the config and overrides before anything runs
    load_before = load_average()
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "lightly": []}
    wall = {"ours": 0.0, "lightly": 0.0}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    seeds = args.seeds if args.seeds is not None else [cfg.seed]
    n_runs = len(seeds) * args.repeats

    def start(which: str, out: Path, seed: int) -> subprocess.Popen:
        cmd = [sys.executable, __file__, *_child_argv(args), f"seed={seed}", "--which", which, "--child-out", str(out)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def finish(which: str, proc: subprocess.Popen, out: Path, seed: int) -> None:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0 or not out.exists():
            sys.exit(f"{which} failed (exit {proc.returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}")
        runs[which].append({"seed": seed, **json.loads(out.read_text())})
        print(f"{which} seed {seed}, run {len(runs[which])}/{n_runs}: " + ", ".join(
            f"ep {p['epoch']} {p['train_s']:.0f}s {100 * p['knn']:.1f}%" for p in runs[which][-1]["curve"]
        ), flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="time-to-learn-") as tmp:
        for seed in seeds:
            for rep in range(args.repeats):
                outs = {w: Path(tmp) / f"{w}-{seed}-{rep}.json" for w in ("ours", "lightly")}
                if args.side_by_side:  # both at once, one core each: load hits both sides alike
                    t0 = time.perf_counter()
                    procs = {w: start(w, outs[w], seed) for w in outs}
                    for which, proc in procs.items():
                        finish(which, proc, outs[which], seed)
                        wall[which] += time.perf_counter() - t0
                    continue
                for which in ("ours", "lightly"):  # alternate the sides so that a drift in machine load hits both
                    t0 = time.perf_counter()
                    finish(which, start(which, outs[which], seed), outs[which], seed)
                    wall[which] += time.perf_counter() - t0

    reach = {w: [time_to_reach(r["curve"], args.margin) for r in rs] for w, rs in runs.items()}
    med = {w: _median_or_none(v) for w, v in reach.items()}
    ratio = _lightly_over_ours(med)
    per_seed = seed_ratios(runs, args.margin)
    base = {w: [r["curve"][0]["knn"] for r in rs] for w, rs in runs.items()}
    for w in runs:
        got = ", ".join("not reached" if t is None else f"{t:.1f} s" for t in reach[w])
        inits = ", ".join(f"{100 * b:.1f}%" for b in base[w])
        print(f"{w:<8} random-init kNN {inits}; time to +{100 * args.margin:.0f} points: {got}")
    print("ratio lightly / ours: " + (f"{ratio:.2f}x" if ratio else "undefined (a side did not reach the threshold)"))
    print("per seed: " + ", ".join(f"seed {k} " + (f"{v:.2f}x" if v else "undefined") for k, v in per_seed.items()))

    name = args.name or f"time_to_learn-{cfg.data.dataset}" + ("-smoke" if args.smoke else "")
    results_dir = args.results_dir or (REPO / "outputs" / "perf-smoke" if args.smoke else None)
    threads = cfg.run.threads

    def side_of(which: str, label: str) -> dict[str, Any]:
        each = reach[which]
        if med[which] is None or any(t is None for t in each):  # the median counts a run not reaching as ∞
            return {"label": label, "median": med[which], "each": each}
        return side(label, [t for t in each if t is not None])

    title = (
        f"{cfg.backbone.arch} on {cfg.data.dataset} ({cfg.data.image_size} px), batch {cfg.optim.batch_size}, "
        f"{threads or 'default'} thread{'' if threads == 1 else 's'}, seeds {', '.join(map(str, seeds))}; "
        f"dashed: random-init + {100 * args.margin:.0f} points"
    )
    record = perf_record(
        name,
        what=f"training seconds to kNN > random-init + {100 * args.margin:.0f} points, {cfg.backbone.arch} on "
        f"{cfg.data.dataset}",
        metric="seconds_to_threshold",
        unit="s",
        higher_is_better=False,
        sides={"ours": side_of("ours", "pretrain.train"), "lightly": side_of("lightly", "lightly reference loop")},
        ratio=ratio,
        ratio_definition="lightly time / ours time, higher is better",
        goal="≥ 1.5×",
        threads=threads,
        device="cpu" if cfg.run.device == "auto" else cfg.run.device,
        load_before=load_before,
        details={
            "curves": runs,
            "random_init_knn": base,
            "margin": args.margin,
            "config": str(args.config),
            "overrides": [*(SMOKE if args.smoke else []), *args.overrides],
            "dataset": cfg.data.dataset,
            "epochs": cfg.run.epochs,
            "eval_every_epochs": args.eval_every,
            "clock": "training seconds; kNN evaluations excluded on both sides, our checkpoint writes too",
            "side_by_side": args.side_by_side,
            "seeds": seeds,
            "repeats_per_seed": args.repeats,
            "seed_ratios": per_seed,
            "process_wall_s": wall,
        },
    )
    path = write_perf_record(record, results_dir)
    plot_curves(runs, args.margin, title, path.with_suffix(".png"))
    print(f"record: {path}\nplot: {path.with_suffix('.png')}")


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--config", str(args.config), "--eval-every", str(args.eval_every)]
    if args.dataset:
        argv += ["--dataset", args.dataset]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.smoke:
        argv.append("--smoke")
    return [*argv, *args.overrides]


if __name__ == "__main__":
    main()

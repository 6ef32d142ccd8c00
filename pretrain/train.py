"""The BYOL training loop: ``train(cfg, run_dir)`` → a run directory with an exported backbone artifact.

Run directory::

    config.yaml           the resolved config as run (derived values are not in it)
    derived.json          scaled LR, step counts, device, AMP dtype, machine, code version
    metrics.jsonl         one JSON object per logged step (loss, tau, lr, images_per_s, proj_std …)
                          and per epoch (knn_val_top1, proj_std of the epoch, collapsed)
    train.log             the human-readable log
    checkpoints/last.pt   online + target + optimiser + scaler + step + RNG states + the running epoch's
                          proj_std values, with last.pt.sha256 beside it; prev.pt (+ .sha256) the one
                          before (pretrain.checkpoint: the format, its rotation and integrity check)
    artifact/             zoo artifact of the online backbone (+ heads, + detectron2.pkl for ResNets)

Reproducibility and resume. Every random draw of a step comes from generators seeded by
``(seed, epoch)`` (data order, shared by all ranks) and ``(seed, rank, step)`` (augmentations), so a run
resumed from a checkpoint at step k replays steps k, k+1, … exactly as an uninterrupted run would.

Pre-emption. SIGTERM and SIGUSR1 (what a scheduler sends: Slurm's ``--signal``), and inside a submitit job its
pre-emption signal (``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default), do not kill the run: the step in progress
finishes, a checkpoint is written, and ``train`` raises ``Preempted``; ``byol-bench pretrain`` then exits with
``PREEMPTED_EXIT`` = 75 (``EX_TEMPFAIL``: try again). Running the same command again resumes from that step.
A Python handler that was installed for the signal before ``train`` (submitit's: it requeues the job) is
called after the checkpoint is written.

Multi-process. Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised here (NCCL on GPU,
gloo on CPU); each rank takes a disjoint slice of every global batch; gradients are averaged by DDP; rank 0
alone writes files. BatchNorm layers become ``SyncBatchNorm`` on GPU (torch has no CPU SyncBatchNorm, so
on CPU each rank normalises with its own batch statistics, which the log says).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

from pretrain.allocator import tune_glibc_malloc
from pretrain.augment import augment_view, single_thread, swap_background
from pretrain.byol import projection_std, tau_schedule
from pretrain.checkpoint import (
    ARTIFACT,
    CHECKPOINT,
    CheckpointError,
    DiskFull,
    MetricsLog,
    checkpoint_state,
    clean_stale_temp,
    disk_guard,
    has_checkpoint,
    load_checkpoint,
    load_checkpoint_into,
    load_run_config,
    read_metrics,
    save_checkpoint,
    set_rng_state,
    settle_checkpoints,
)
from pretrain.config import RUN_CONTROL_KEYS, Derived, PretrainConfig, derive
from pretrain.knn import knn_accuracy
from pretrain.model import build_model, head_specs
from pretrain.optim import build_optimizer, lr_at, param_groups
from zoo.config import ConfigError, to_dict
from zoo.datasets import ClassificationSplit, DatasetOptions, load_dataset
from zoo.io import atomic_write_json, atomic_write_text, code_version, machine_info
from zoo.logs import StderrHandler

# build_model, head_specs, load_run_config, read_metrics, load_checkpoint_into: their rooms are
# pretrain.model and pretrain.checkpoint; importable from here as before
__all__ = [
    "train",
    "TrainingDiverged",
    "Preempted",
    "PREEMPTED_EXIT",
    "CheckpointError",
    "DiskFull",
    "build_model",
    "head_specs",
    "load_run_config",
    "load_checkpoint_into",
    "read_metrics",
    "CHECKPOINT",
    "ARTIFACT",
]

log = logging.getLogger("pretrain")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is kept in the run directory."""


PREEMPTED_EXIT = 75  # sysexits.h EX_TEMPFAIL: "temporary failure; the user is invited to retry"


class Preempted(RuntimeError):
    """A stop signal arrived; the step in progress finished and a checkpoint of it was written."""

    def __init__(self, message: str, signum: int, step: int) -> None:
        super().__init__(message)
        self.signum, self.step = signum, step


def _stop_signals() -> list[int]:
    """SIGTERM and SIGUSR1, plus submitit's pre-emption signal inside a submitit job."""
    sigs = [signal.SIGTERM, signal.SIGUSR1]
    if os.environ.get("SUBMITIT_EXECUTOR"):
        name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper()
        sig = getattr(signal, name if name.startswith("SIG") else f"SIG{name}", None)
        if sig is not None and sig not in sigs:
            sigs.append(sig)
    return sigs


class _StopRequest:
    """Stop signals turned into a flag the loop reads after each step (installed from the main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}  # the handlers ours replaced
        self.installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is None:  # only a flag: the loop finishes its step and checkpoints
            self.signum = signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; signals then act as before
        for sig in _stop_signals():
            self.previous[sig] = signal.signal(sig, self._handler)
        self.installed = True

    def restore(self) -> None:
        if self.installed:
            for sig, handler in self.previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            self.installed = False

    def pass_on(self, signum: int) -> None:
        """Call the handler that was installed for ``signum`` before ours (submitit's requeue), if any."""
        handler = self.previous.get(signum)
        if callable(handler):
            handler(signum, None)

    def requested(self, d: _Dist, device: torch.device) -> bool:
        """Whether any rank received a stop signal (all ranks agree, so they stop at the same step)."""
        flag = self.signum is not None
        if d.active:
            t = torch.tensor([1.0 if flag else 0.0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item() > 0)
        return flag


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def _config_diff(a: PretrainConfig, b: PretrainConfig) -> list[str]:
    fa, fb = _flat(to_dict(a)), _flat(to_dict(b))
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k) and k not in RUN_CONTROL_KEYS)


class _Data:
    """uint8 images in memory (``N × 3 × H × W``) plus normalisation constants; with ``stream`` only the file
    paths (``pretrain.stream`` reads them every step) and ``images`` is None."""

    def __init__(self, split: ClassificationSplit, limit: int | None, stream: bool = False) -> None:
        self.paths: list[str] | None = None
        self.images: torch.Tensor | None = None
        if stream:
            if split.paths is None:
                raise ConfigError(
                    f"data.stream=true reads image files, but '{split.name}' is held in memory (no files): "
                    "use an image-folder dataset (imagenet, imagenet100, imagefolder) or data.stream=false"
                )
            self.paths = split.paths[:limit] if limit is not None else list(split.paths)
            labels = split.targets[: len(self.paths)]
        else:
            images, labels = split.arrays()
            if limit is not None:
                images, labels = images[:limit], labels[:limit]
            self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
        self.num_images = len(labels)
        self.labels = torch.from_numpy(np.asarray(labels)).long()
        self.mean, self.std = tuple(split.mean), tuple(split.std)
        self.num_classes = split.num_classes
        self.describe = split.describe()
        self.glyphs: torch.Tensor | None = None  # digits-m background swap: grey digits, N x H x W
        self.backgrounds: torch.Tensor | None = None  # and a bank of photo crops, M x 3 x H x W

    def add_layers(self, split: str, image_size: int, limit: int | None) -> None:
        from zoo.datasets import digit_m_layers

        glyphs, bank = digit_m_layers(split, image_size)
        if limit is not None:
            glyphs = glyphs[:limit]
        self.glyphs = torch.from_numpy(glyphs)
        self.backgrounds = torch.from_numpy(bank).permute(0, 3, 1, 2).contiguous()

    def normalized(self) -> torch.Tensor:
        assert self.images is not None, "the in-run kNN needs its split in memory"
        x = self.images.float().div_(255.0)
        m = torch.tensor(self.mean).view(1, 3, 1, 1)
        s = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - m) / s


def _load_data(cfg: PretrainConfig) -> tuple[_Data, _Data | None]:
    opts = DatasetOptions(root=cfg.data.root, image_size=cfg.data.image_size)
    split = load_dataset(cfg.data.dataset, cfg.data.split, opts)
    if not isinstance(split, ClassificationSplit):
        raise ConfigError(f"data.dataset '{cfg.data.dataset}' is not an image-classification dataset")
    train_data = _Data(split, cfg.data.limit, stream=cfg.data.stream)
    if max(cfg.augment.view1.background_swap_p, cfg.augment.view2.background_swap_p) > 0:
        train_data.add_layers(cfg.data.split, cfg.data.image_size, cfg.data.limit)
    knn_data = None
    if cfg.run.knn_every > 0 and split.has_labels:
        q = load_dataset(cfg.data.dataset, cfg.data.knn_split, opts)
        if isinstance(q, ClassificationSplit) and q.has_labels:
            knn_data = _Data(q, cfg.data.knn_limit)
    return train_data, knn_data


def _streamed_batches(
    cfg: PretrainConfig, data: _Data, derived: Derived, rank: int, start: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """Steps ``start``.. of this rank as uint8 ``per × 2 × 3 × S × S`` crops read from the files (pretrain.stream)."""
    from torch.utils.data import DataLoader

    from pretrain.stream import StepBatches, StreamedViews

    assert data.paths is not None
    views = StreamedViews(data.paths, (cfg.augment.view1, cfg.augment.view2), cfg.data.image_size, cfg.seed, rank)
    sampler = StepBatches(
        lambda epoch: torch.randperm(data.num_images, generator=_seed_gen(cfg.seed, epoch)),
        cfg.optim.batch_size, derived.per_rank_batch, rank, derived.steps_per_epoch, start, derived.total_steps,
    )  # fmt: skip
    workers = cfg.data.workers
    loader = DataLoader(
        views, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if workers else None,
    )  # fmt: skip
    return iter(loader)


def _augment_streamed(
    pair: torch.Tensor, cfg: PretrainConfig, data: _Data, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour / blur / solarisation part of both views, on crops the loader already cut and flipped."""
    with single_thread(pair.device.type == "cpu"):
        x1, x2 = (
            augment_view(pair[:, v], view, cfg.data.image_size, data.mean, data.std, gen, crop=False)
            for v, view in enumerate((cfg.augment.view1, cfg.augment.view2))
        )
    return x1, x2


def _seed_gen(*parts: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of ints (stable across runs, processes and resumes)."""
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p) + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class _Dist:
    """Rank / world size, and whether this module initialised the process group."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owns_group = False

    def setup(self, device: torch.device) -> None:
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.owns_group = True
        if dist.is_initialized():
            self.world, self.rank = dist.get_world_size(), dist.get_rank()

    @property
    def active(self) -> bool:
        return self.world > 1 and dist.is_initialized()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.active:
            x = x.clone()
            dist.all_reduce(x)
            x /= self.world
        return x

    def teardown(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _device(cfg: PretrainConfig, d: _Dist) -> torch.device:
    if cfg.run.device != "auto":
        return torch.device(cfg.run.device)
    if torch.cuda.is_available():
        return torch.device("cuda", d.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _amp_dtype(cfg: PretrainConfig, device: torch.device) -> torch.dtype | None:
    amp = cfg.run.amp
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


class _RunLogHandler(logging.FileHandler):
    """``train.log``; a write that fails (a full disk) is reported in one line, once, not as a traceback per
    log call: the error that stops the run is the one raised by the checkpoint or metrics write."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        if not self.failed:
            self.failed = True
            print(f"[pretrain] cannot write {self.baseFilename}: {exc}; the log continues on stderr", file=sys.stderr)


def _setup_logging(run_dir: Path, main: bool) -> logging.Handler | None:
    log.setLevel(logging.INFO if main else logging.WARNING)
    if not main:
        return None
    handler = _RunLogHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in log.handlers):
        # bound to sys.stderr as it is when a record is emitted: a handler holding the stream of its creation
        # writes to a closed file once that stream is swapped (a test's capture), a "Logging error" traceback
        stream = StderrHandler()
        stream.setFormatter(logging.Formatter("[pretrain] %(message)s"))
        log.addHandler(stream)
    return handler


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def train(cfg: PretrainConfig, run_dir: str | Path, resume: bool = True) -> Path:
    """Pretrain BYOL as ``cfg`` says into ``run_dir`` (resuming from its checkpoint if any); return run_dir.

    Raises ``TrainingDiverged`` on a NaN/Inf loss (the last good checkpoint stays) and ``ConfigError`` when
    resuming with a config that differs from the checkpointed run in anything but run-control keys.
    """
    run_dir = Path(run_dir)
    d = _Dist()
    device = _device(cfg, d)
    d.setup(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    d.barrier()
    handler = _setup_logging(run_dir, d.main)
    stop = _StopRequest()
    stop.install()
    try:
        return _train(cfg, run_dir, resume, d, device, stop)
    except Preempted as exc:
        stop.restore()
        stop.pass_on(exc.signum)  # submitit's handler checkpoints the job's call and requeues it (and exits)
        raise
    finally:
        stop.restore()
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        d.teardown()


def _train(
    cfg: PretrainConfig, run_dir: Path, resume: bool, d: _Dist, device: torch.device, stop: _StopRequest
) -> Path:
    if d.main:
        clean_stale_temp(run_dir)  # a killed run's temporary checkpoint / artifact files
    d.barrier()
    if resume and has_checkpoint(run_dir) and (run_dir / "config.yaml").exists():
        diff = _config_diff(load_run_config(run_dir), cfg)
        if diff:
            raise ConfigError(
                f"{run_dir} holds a run of a different config (keys: {', '.join(diff)}); "
                "use --no-resume or another --out"
            )
    if resume and (run_dir / ARTIFACT / "meta.json").exists():
        log.info("%s is a finished run (artifact/meta.json exists); nothing to do", run_dir)
        return run_dir
    if not resume and d.main and (run_dir / ARTIFACT).exists():
        shutil.rmtree(run_dir / ARTIFACT)  # a restarted run is unfinished until it exports again
    if cfg.run.threads and device.type == "cpu":
        torch.set_num_threads(cfg.run.threads)
    malloc = tune_glibc_malloc() if cfg.run.malloc_tuning and device.type == "cpu" else None

    # ---- data -------------------------------------------------------------------------------------
    data, knn_data = _load_data(cfg)
    derived = derive(cfg, data.num_images, d.world)
    spe, total = derived.steps_per_epoch, derived.total_steps

    # ---- model, optimiser, precision -----------------------------------------------------------------
    model = build_model(cfg)
    if d.active and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        for mod in (model.target_backbone, model.target_projector):
            for m in mod.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.0
    model.to(device)
    memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
    lrs = {"backbone": derived.lr, "projector": derived.lr, "predictor": derived.predictor_lr}
    groups = param_groups(
        {"backbone": model.backbone, "projector": model.projector, "predictor": model.predictor},
        lrs,
        cfg.optim.weight_decay,
        cfg.optim.exclude_bias_bn,
    )
    peak = max(lrs.values())
    opt = build_optimizer(
        cfg.optim.name, groups, peak, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.lars_eta, cfg.optim.betas,
        lars_clip_lr=cfg.optim.lars_clip_lr,
    )  # fmt: skip
    amp_dtype = _amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    # ---- resume ------------------------------------------------------------------------------------
    start = 0
    train_s0 = 0.0  # training seconds before this process (checkpointed): train_s is cumulative over resumes
    epoch_std: list[float] = []  # proj_std of each step of the epoch in progress (checkpointed)
    metrics = MetricsLog(run_dir / "metrics.jsonl", d.main, run_dir / "tensorboard" if cfg.run.tensorboard else None)
    loaded = load_checkpoint(run_dir, map_location=device) if resume else None
    if loaded is not None:
        ckpt = loaded.state
        try:
            load_checkpoint_into(model, ckpt)
            opt.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt["scaler"]:
                scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{loaded.path} does not fit this run's model: {type(exc).__name__}: {exc}") from exc
        start = int(ckpt["step"])
        epoch_std = [float(v) for v in ckpt.get("epoch_proj_std", [])]  # absent in checkpoints of older versions
        train_s0 = float(ckpt.get("train_s", 0.0))
        d.barrier()
        if d.main:
            settle_checkpoints(run_dir, loaded)  # set a rejected newer file aside; its checksum file matches
            metrics.truncate(start)
        log.info("resumed %s at step %d / %d (epoch %d) from %s", run_dir, start, total, start // spe, loaded.path)
    elif d.main:
        metrics.truncate(-1)

    if d.main:
        config_text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
        with disk_guard(run_dir / "config.yaml", len(config_text) + 4096):  # + derived.json
            atomic_write_text(run_dir / "config.yaml", config_text)
            atomic_write_json(
                run_dir / "derived.json",
                {
                    **asdict(derived),
                    "device": str(device),
                    "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
                    "sync_batchnorm": bool(d.active and device.type == "cuda"),
                    "train_split": data.describe,
                    "machine": machine_info(),
                    "code_version": code_version(),
                    "torch_threads": torch.get_num_threads(),
                    "malloc_tuning": malloc,  # per mallopt setting whether glibc took it; null: not applied
                },
            )
    if d.active and device.type != "cuda":
        log.info("DDP on CPU (gloo): torch has no CPU SyncBatchNorm; each rank uses its own BN batch statistics")

    raw = model
    step_model: nn.Module = model
    if d.active:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.run.compile:
        step_model = torch.compile(step_model)

    knn_bank = knn_query = None
    if knn_data is not None and d.main:
        knn_bank = (data.normalized(), data.labels)
        knn_query = (knn_data.normalized(), knn_data.labels)

    def run_knn() -> float | None:
        if knn_bank is None or knn_query is None:
            return None
        return knn_accuracy(
            raw.backbone, *knn_bank, *knn_query, data.num_classes, k=cfg.run.knn_k, t=cfg.run.knn_temperature
        )

    saved_step = start

    def save(step: int) -> None:
        nonlocal saved_step
        if not all(bool(torch.isfinite(p).all()) for p in raw.parameters()):
            msg = (
                f"weights became non-finite at step {step}; stopping without overwriting the last good "
                f"checkpoint {run_dir / CHECKPOINT} (lower optim.base_lr or check the data)"
            )
            log.error(msg)
            raise TrainingDiverged(msg)
        if d.main:
            state = checkpoint_state(raw, opt, scaler, step, step // spe, epoch_std, train_seconds())
            save_checkpoint(state, run_dir)
        saved_step = step

    ref_std = 1.0 / math.sqrt(cfg.heads.projector_out)
    if start == 0 and d.main:
        acc0 = run_knn()
        if acc0 is not None:
            log.info("epoch 0 (initialisation): knn_val_top1 %.4f", acc0)
            metrics.write({"step": 0, "epoch": 0, "knn_val_top1": acc0, "kind": "epoch"})
    log.info(
        "BYOL %s on %s (%d images, %d steps/epoch, %d steps), batch %d, lr %.4g, device %s, amp %s, ranks %d",
        cfg.backbone.arch, cfg.data.dataset, derived.num_images, spe, total, cfg.optim.batch_size,
        derived.lr, device, amp_dtype, d.world,
    )  # fmt: skip

    # ---- training ----------------------------------------------------------------------------------
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, disable=not (cfg.run.progress and d.main), unit="step", dynamic_ncols=True)
    view_size = cfg.data.image_size
    per = derived.per_rank_batch
    stop_epoch = cfg.run.stop_after_epochs
    autocast = torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    window_t, window_n = time.perf_counter(), 0
    perm_epoch, perm = -1, torch.empty(0, dtype=torch.long)
    streamed = _streamed_batches(cfg, data, derived, d.rank, start, device) if cfg.data.stream else None
    step_model.train()
    step = start
    loop_t0, knn_s, checkpoint_s = time.perf_counter(), 0.0, 0.0  # train_s = loop time without kNN and saves

    def train_seconds() -> float:
        return train_s0 + time.perf_counter() - loop_t0 - knn_s - checkpoint_s

    try:
        while step < total:
            epoch, i = divmod(step, spe)
            gen = _seed_gen(cfg.seed, 7919 + d.rank, step)
            if streamed is not None:  # the loader's workers cut both views' crops from the image files
                x1, x2 = _augment_streamed(next(streamed).to(device, non_blocking=True), cfg, data, gen)
            else:
                if epoch != perm_epoch:
                    perm = torch.randperm(data.num_images, generator=_seed_gen(cfg.seed, epoch))
                    perm_epoch = epoch
                idx = perm[i * cfg.optim.batch_size : (i + 1) * cfg.optim.batch_size][d.rank * per : (d.rank + 1) * per]
                batch = data.images[idx].to(device, non_blocking=True)
                with single_thread(device.type == "cpu"):
                    views = []
                    for view in (cfg.augment.view1, cfg.augment.view2):
                        src = batch
                        if view.background_swap_p > 0 and data.glyphs is not None and data.backgrounds is not None:
                            p_swap = view.background_swap_p
                            src = swap_background(batch, data.glyphs[idx], data.backgrounds, p_swap, gen)
                        views.append(augment_view(src, view, view_size, data.mean, data.std, gen))
                    x1, x2 = views
            x1 = x1.contiguous(memory_format=memory_format)
            x2 = x2.contiguous(memory_format=memory_format)

            lr_now = lr_at(step, total, derived.warmup_steps, peak, cfg.optim.min_lr_frac)
            for g in opt.param_groups:
                g["lr"] = lr_now * g["lr_scale"]
            with autocast:
                out = step_model(x1, x2)
            loss = out["loss"]
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            loss_value = float(d.mean(loss.detach()))
            if not math.isfinite(loss_value):
                msg = (
                    f"loss is {loss_value} at step {step} (epoch {epoch}); stopping. The last good checkpoint "
                    f"{run_dir / CHECKPOINT} is kept (lower optim.base_lr or check the data)"
                )
                log.error(msg)
                raise TrainingDiverged(msg)
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.optim.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            tau = (
                tau_schedule(step, total, cfg.byol.tau_base) if cfg.byol.tau_schedule == "cosine" else cfg.byol.tau_base
            )
            raw.update_target(tau, cfg.byol.ema_bn_buffers)
            step += 1
            bar.update(1)
            window_n += cfg.optim.batch_size
            std = projection_std(out["z_online"])
            epoch_std.append(std)

            end_of_epoch = step % spe == 0
            if step % cfg.run.log_every == 0 or end_of_epoch or step == total:
                now = time.perf_counter()
                rec = {
                    "kind": "step",
                    "step": step,
                    "epoch": round(step / spe, 4),
                    "loss": loss_value,
                    "tau": tau,
                    "lr": lr_now,
                    "images_per_s": window_n / max(now - window_t, 1e-9),
                    "proj_std": std,
                    "target_proj_std": projection_std(out["z_target"]),
                    "proj_std_ref": ref_std,
                }
                metrics.write(rec)
                bar.set_postfix(loss=f"{loss_value:.3f}", std=f"{std:.3f}", tau=f"{tau:.4f}")
                window_t, window_n = time.perf_counter(), 0
            if end_of_epoch:
                ep = step // spe
                mean_std = float(np.mean(epoch_std))
                epoch_std = []
                collapsed = mean_std < cfg.run.collapse_std * ref_std
                train_s = train_seconds()
                knn_t0 = time.perf_counter()
                acc = (
                    run_knn()
                    if d.main and cfg.run.knn_every and (ep % cfg.run.knn_every == 0 or step == total)
                    else None
                )
                knn_s += time.perf_counter() - knn_t0
                rec = {"kind": "epoch", "step": step, "epoch": ep, "proj_std": mean_std, "collapsed": collapsed}
                rec.update(train_s=train_s, checkpoint_s=checkpoint_s)
                if acc is not None:
                    rec["knn_val_top1"] = acc
                metrics.write(rec)
                log.info(
                    "epoch %d/%d step %d loss %.4f proj_std %.4f (1/sqrt(d) = %.4f)%s",
                    ep, cfg.run.epochs, step, loss_value, mean_std, ref_std,
                    f" knn_val_top1 {acc:.4f}" if acc is not None else "",
                )  # fmt: skip
                if collapsed:
                    log.warning(
                        "COLLAPSE: mean per-dim std of l2-normalised projections is %.2e (< %.2g × 1/sqrt(%d)); "
                        "the representation is (near) constant",
                        mean_std, cfg.run.collapse_std, cfg.heads.projector_out,
                    )  # fmt: skip
                window_t, window_n = time.perf_counter(), 0
            if step % cfg.run.checkpoint_every == 0 or end_of_epoch:
                save_t0 = time.perf_counter()
                save(step)
                checkpoint_s += time.perf_counter() - save_t0
            if step < total and stop.requested(d, device):
                if saved_step != step:
                    save(step)
                signum = stop.signum if stop.signum is not None else signal.SIGTERM  # another rank's signal
                name = signal.Signals(signum).name
                msg = (
                    f"{name} received: stopped after step {step} of {total} with its checkpoint "
                    f"{run_dir / CHECKPOINT} written; exit {PREEMPTED_EXIT}, run the same command again to resume"
                )
                log.warning(msg)
                d.barrier()
                raise Preempted(msg, signum, step)
            if end_of_epoch and stop_epoch is not None and step // spe >= stop_epoch and step < total:
                log.info("stopping after epoch %d as run.stop_after_epochs says; resume to continue", step // spe)
                d.barrier()
                return run_dir
    finally:
        bar.close()
        metrics.close()

    # ---- export ------------------------------------------------------------------------------------
    d.barrier()
    if d.main:
        from pretrain.export import export_run

        out = export_run(run_dir)
        log.info("exported the online backbone to %s", out)
    d.barrier()
    return run_dir

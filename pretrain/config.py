"""The BYOL pretraining config: one small frozen dataclass per component.

Built with ``load_pretrain_config(path, overrides)`` (defaults ← YAML file with ``_base_:`` inheritance ←
dotted ``key=value`` overrides). An unknown key or a value of the wrong type is a ``ConfigError`` naming the
key. Paper defaults (Grill et al. 2020, arXiv 2006.07733) are cited where a value comes from the paper; the
shipped ``configs/byol.yaml`` scales them down for 32-px images on a small CPU.

Derived values (scaled learning rate, steps per epoch, total steps) are computed by ``derive`` into a
separate ``Derived`` object and written to ``derived.json``, never back into the config.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from zoo.backbones import get_spec
from zoo.config import ConfigError, load_config

__all__ = [
    "DataConfig",
    "BackboneConfig",
    "HeadsConfig",
    "ByolConfig",
    "ViewAugment",
    "View2Augment",
    "AugmentConfig",
    "OptimConfig",
    "RunConfig",
    "PretrainConfig",
    "Derived",
    "derive",
    "load_pretrain_config",
    "RUN_CONTROL_KEYS",
    "IDENTITY_DEFAULTS",
]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_prob(name: str, value: float) -> None:
    _check(0.0 <= value <= 1.0, f"{name} must be a probability in [0, 1], got {value}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits-m"
    image_size: int = 32
    root: str | None = None  # for user datasets (imagefolder, cifar10, ...)
    split: str = "train"  # the split BYOL pretrains on (labels are never read)
    limit: int | None = None  # use only the first N images of the split (tests, smoke runs)
    knn_split: str = "val"  # the in-run health kNN queries this split; its bank is ``split``
    knn_limit: int | None = None
    # read the images from their files every step (image-folder datasets: imagenet, imagenet100, imagefolder):
    # DataLoader workers cut the random resized crops from the full-resolution file, nothing decoded is kept
    # (pretrain/stream.py); false: the split is decoded once into memory at image_size
    stream: bool = False
    workers: int = 8  # DataLoader worker processes per training process when streaming (0: in the process)

    def __post_init__(self) -> None:
        _check(self.image_size >= 8, f"data.image_size must be >= 8, got {self.image_size}")
        _check(self.workers >= 0, f"data.workers must be >= 0, got {self.workers}")
        _check(self.limit is None or self.limit >= 2, "data.limit must be >= 2 (or null)")
        _check(self.knn_limit is None or self.knn_limit >= 1, "data.knn_limit must be >= 1 (or null)")


@dataclass(frozen=True)
class BackboneConfig:
    arch: str = "resnet18"

    def __post_init__(self) -> None:
        get_spec(self.arch)  # BackboneError (a ValueError) names the known architectures


@dataclass(frozen=True)
class HeadsConfig:
    """Projector and predictor MLPs (paper Sec. 3.3: Linear(4096) → BN → ReLU → Linear(256))."""

    projector_hidden: int = 4096
    projector_out: int = 256
    projector_layers: int = 2
    predictor_hidden: int = 4096
    predictor_layers: int = 2
    batch_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("projector_hidden", "projector_out", "projector_layers", "predictor_hidden", "predictor_layers"):
            _check(getattr(self, name) >= 1, f"heads.{name} must be >= 1")


@dataclass(frozen=True)
class ByolConfig:
    """The target network and predictor knobs the paper ablates (Tables 5a, 21-22)."""

    tau_base: float = 0.996  # paper Sec. 3.3
    tau_schedule: Literal["cosine", "constant"] = "cosine"  # cosine: τ → 1 at the end (paper); constant: τ_base
    predictor: bool = True  # False: q = z (paper Table 5b, "no predictor")
    predictor_lr_mult: float = 1.0  # paper Table 22: 10× predictor LR makes τ=0 work
    ema_bn_buffers: bool = True  # target BN running stats follow the EMA rule (else copied from online)

    def __post_init__(self) -> None:
        _check(0.0 <= self.tau_base <= 1.0, f"byol.tau_base must be in [0, 1], got {self.tau_base}")
        _check(self.predictor_lr_mult > 0, "byol.predictor_lr_mult must be positive")


@dataclass(frozen=True)
class ViewAugment:
    """One view's augmentation (paper Table 6). Defaults are view 1 (τ in the paper's notation).

    Crop scale is relative to the image area. Blur sigmas are given for 224-px images (paper: σ ∈ [0.1, 2.0],
    kernel 23 px ≈ 10 % of the side) and scaled by ``image_size / 224`` unless ``blur_scale_sigma`` is false.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1
    blur_scale_sigma: bool = True
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    # Background augmentation (Ryali et al. 2021, "BG_Swap", arXiv 2103.12719), digits-m only: with this
    # probability the view's photo background is replaced by a random other one before the transforms above.
    background_swap_p: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p", "background_swap_p"):
            _check_prob(name, getattr(self, name))
        lo, hi = self.crop_scale
        _check(0 < lo <= hi <= 1, f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        _check(0 < self.crop_ratio[0] <= self.crop_ratio[1], f"crop_ratio must be increasing: {self.crop_ratio}")
        _check(min(self.brightness, self.contrast, self.saturation) >= 0, "jitter strengths must be >= 0")
        _check(0 <= self.hue <= 0.5, f"hue must be in [0, 0.5], got {self.hue}")
        _check(0 < self.blur_sigma[0] <= self.blur_sigma[1], f"blur_sigma must be increasing: {self.blur_sigma}")
        _check(0 < self.blur_kernel_frac <= 1, "blur_kernel_frac must be in (0, 1]")


@dataclass(frozen=True)
class View2Augment(ViewAugment):
    """View 2 (τ' in the paper): blur p = 0.1, solarize p = 0.2 (paper Table 6)."""

    blur_p: float = 0.1
    solarize_p: float = 0.2


@dataclass(frozen=True)
class AugmentConfig:
    view1: ViewAugment = field(default_factory=ViewAugment)
    view2: View2Augment = field(default_factory=View2Augment)


@dataclass(frozen=True)
class OptimConfig:
    """LARS (paper Sec. 3.3: base LR 0.2 × batch/256, wd 1.5e-6, 10 warm-up epochs, cosine), AdamW or SGD."""

    name: Literal["lars", "adamw", "sgd"] = "lars"
    base_lr: float = 0.2  # LR = base_lr × batch_size / 256 (all ranks together)
    batch_size: int = 256  # global batch (split across DDP ranks)
    weight_decay: float = 1.5e-6
    momentum: float = 0.9
    lars_eta: float = 1e-3  # LARS trust coefficient
    # solo-learn's LARS `clip_lr`: each layer's step size is min(trust ratio, lr) instead of lr x trust ratio
    # (pretrain/optim.py LARS); off by default, as in the BYOL paper and DeepMind's code
    lars_clip_lr: bool = False
    exclude_bias_bn: bool = True  # no LARS adaptation and no weight decay on biases and BN (paper Sec. 3.3)
    warmup_epochs: float = 10.0
    min_lr_frac: float = 0.0  # final LR as a fraction of the peak LR
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        _check(self.base_lr > 0, "optim.base_lr must be positive")
        _check(self.batch_size >= 2, "optim.batch_size must be >= 2 (BatchNorm needs two samples)")
        _check(self.weight_decay >= 0, "optim.weight_decay must be >= 0")
        _check(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        _check(0 <= self.min_lr_frac <= 1, "optim.min_lr_frac must be in [0, 1]")
        _check(
            not self.lars_clip_lr or self.name == "lars",
            f"optim.lars_clip_lr=true needs optim.name=lars, got optim.name={self.name}",
        )


@dataclass(frozen=True)
class RunConfig:
    epochs: int = 300
    checkpoint_every: int = 100  # steps; a checkpoint is also written at every epoch end and at the end
    stop_after_epochs: int | None = None  # stop early (as if pre-empted) keeping the checkpoint; resume later
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 (else fp16) on CUDA, off on CPU
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"  # auto: cuda if available (the local rank's GPU under torchrun), else cpu
    knn_every: int = 1  # epochs; 0 disables the in-run kNN health signal
    knn_k: int = 20
    knn_temperature: float = 0.1
    log_every: int = 10  # steps
    tensorboard: bool = False
    progress: bool = True
    collapse_std: float = 0.1  # proj_std below this × 1/sqrt(dim) is reported as collapse
    threads: int | None = None  # torch.set_num_threads on CPU (None: leave torch's default)
    malloc_tuning: bool = True  # on CPU with glibc: keep freed activation memory mapped (pretrain/allocator.py)

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "run.epochs must be >= 1")
        _check(self.checkpoint_every >= 1, "run.checkpoint_every must be >= 1")
        _check(self.stop_after_epochs is None or self.stop_after_epochs >= 1, "run.stop_after_epochs must be >= 1")
        _check(self.knn_every >= 0 and self.knn_k >= 1 and self.knn_temperature > 0, "bad run.knn_* values")
        _check(self.log_every >= 1, "run.log_every must be >= 1")


@dataclass(frozen=True)
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    byol: ByolConfig = field(default_factory=ByolConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for view in ("view1", "view2"):
            p = getattr(self.augment, view).background_swap_p
            _check(
                p == 0 or self.data.dataset == "digits-m",
                f"augment.{view}.background_swap_p={p} needs data.dataset=digits-m (the only set whose "
                f"foreground masks are known), got data.dataset={self.data.dataset}",
            )


# Keys that control how a run is executed, not what it computes: they may differ on resume.
RUN_CONTROL_KEYS = frozenset(
    {
        "run.stop_after_epochs",
        "run.progress",
        "run.tensorboard",
        "run.checkpoint_every",
        "run.log_every",
        "run.malloc_tuning",
        "data.workers",  # streamed views are seeded per image, not per worker
    }
)


# Keys added after published results were computed, with the value every earlier run had: a job's identity
# (benchmarks/runner/plan.py) leaves such a key out while it has this value, so the published job hashes
# under results/ stay valid; a run that sets another value gets a new identity.
IDENTITY_DEFAULTS: dict[str, Any] = {"optim.lars_clip_lr": False, "data.stream": False}


@dataclass(frozen=True)
class Derived:
    """Values computed from the config and the data (``derived.json``); never written into the config."""

    num_images: int
    world_size: int
    per_rank_batch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    lr: float  # peak LR = base_lr × batch_size / 256
    predictor_lr: float


def derive(cfg: PretrainConfig, num_images: int, world_size: int = 1) -> Derived:
    """Scaled LR (paper Sec. 3.3: base × batch/256) and step counts; incomplete last batches are dropped."""
    bs = cfg.optim.batch_size
    if bs % world_size:
        raise ConfigError(f"optim.batch_size={bs} must be divisible by the number of processes ({world_size})")
    per_rank = bs // world_size
    if per_rank < 2:
        raise ConfigError(f"optim.batch_size={bs} gives {per_rank} image per process; BatchNorm needs >= 2")
    steps = num_images // bs
    if steps < 1:
        raise ConfigError(f"optim.batch_size={bs} is larger than the {num_images} training images")
    lr = cfg.optim.base_lr * bs / 256
    return Derived(
        num_images=num_images,
        world_size=world_size,
        per_rank_batch=per_rank,
        steps_per_epoch=steps,
        total_steps=steps * cfg.run.epochs,
        warmup_steps=int(round(cfg.optim.warmup_epochs * steps)),
        lr=lr,
        predictor_lr=lr * cfg.byol.predictor_lr_mult,
    )


def load_pretrain_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> PretrainConfig:
    """Defaults ← YAML ``path`` (``_base_:`` inheritance) ← dotted ``overrides``; validated and frozen."""
    cfg = load_config(PretrainConfig, path, list(overrides or []))
    if not math.isfinite(cfg.optim.base_lr):
        raise ConfigError("optim.base_lr must be finite")
    return cfg

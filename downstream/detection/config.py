"""The ``detection`` evaluator config and the protocol presets (``configs/<name>.yaml``).

A preset YAML has ``base`` (a detectron2 model-zoo config path), ``trials`` (runs per configuration,
reported as mean and std), ``d2`` (dotted detectron2 config keys → values) and optionally ``route``
(``auto``/``pkl``/``adapter``: how the backbone weights reach detectron2, ``weights.choose_route``). The
evaluator config only names a preset and optionally overrides the few knobs people change between runs.
Without a preset, a dataset with its own CPU preset (``<dataset>-cpu``) gets it, any other ``digits-det-cpu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.config import DuplicateKeyError, yaml_load

__all__ = ["DetectionConfig", "Preset", "load_preset", "PRESET_DIR", "list_presets", "default_preset", "ROUTES"]

PRESET_DIR = Path(__file__).resolve().parent / "configs"
_PRESET_KEYS = {"base", "trials", "d2", "description", "route"}
DEFAULT_PRESET = "digits-det-cpu"
ROUTES = ("auto", "pkl", "adapter")  # weights.choose_route


@dataclass(frozen=True)
class DetectionConfig:
    """``preset``: a name in ``downstream/detection/configs`` or a YAML path. ``None`` fields: the preset's."""

    preset: str | None = None  # None: '<dataset>-cpu' when it exists (shapes-det-cpu), else digits-det-cpu
    route: str | None = None  # auto | pkl | adapter (backbone weights → detectron2); None: the preset's (auto)
    max_iter: int | None = None  # SOLVER.MAX_ITER; LR steps are scaled with it
    trials: int | None = None  # fine-tuning runs (seeds seed, seed+1, …); mean and std are reported
    base_lr: float | None = None  # SOLVER.BASE_LR
    ims_per_batch: int | None = None  # SOLVER.IMS_PER_BATCH (total over GPUs)
    num_gpus: int | None = None  # None: every visible GPU when the device is CUDA, else CPU
    num_workers: int | None = None  # DATALOADER.NUM_WORKERS; None: the preset's (detectron2's 4 if it sets none)
    eval_period: int | None = None  # TEST.EVAL_PERIOD: AP every so many iterations (the record's curve); 0 = end only
    train_split: str = "train"
    test_split: str = "val"

    def __post_init__(self) -> None:
        for name in ("max_iter", "trials", "ims_per_batch"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be ≥ 1, got {v}")
        if self.base_lr is not None and self.base_lr <= 0:
            raise ValueError(f"base_lr must be positive, got {self.base_lr}")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise ValueError(f"num_gpus must be ≥ 0, got {self.num_gpus}")
        if self.eval_period is not None and self.eval_period < 0:
            raise ValueError(f"eval_period must be ≥ 0, got {self.eval_period}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be ≥ 0, got {self.num_workers}")
        if self.route is not None and self.route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}, got '{self.route}'")
        if self.train_split == self.test_split:
            raise ValueError(f"train_split and test_split are both '{self.train_split}'")


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    base: str
    trials: int
    d2: dict[str, Any]
    route: str = "auto"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def default_preset(dataset: str | None) -> str:
    """The preset used when none is named: ``<dataset>-cpu`` if shipped, else ``digits-det-cpu``."""
    return f"{dataset}-cpu" if dataset and f"{dataset}-cpu" in list_presets() else DEFAULT_PRESET


def load_preset(name_or_path: str | None, dataset: str | None = None) -> Preset:
    """Read and validate a preset (``None``: ``default_preset(dataset)``); unknown keys and a missing file are
    errors that name them."""
    if name_or_path is None:
        name_or_path = default_preset(dataset)
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"detection preset '{name_or_path}' not found (known: {', '.join(list_presets())})")
    try:  # the shared loader: a key given twice is an error, not a silent override
        data = yaml_load(path.read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as exc:
        raise ValueError(f"{path}: {exc.problem}") from exc
    unknown = set(data) - _PRESET_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown preset keys {sorted(unknown)} (allowed: {sorted(_PRESET_KEYS)})")
    if not isinstance(data.get("base"), str):
        raise ValueError(f"{path}: 'base' must name a detectron2 model-zoo config")
    trials = data.get("trials", 1)
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"{path}: 'trials' must be a positive integer, got {trials!r}")
    d2 = data.get("d2") or {}
    if not isinstance(d2, dict):
        raise ValueError(f"{path}: 'd2' must be a mapping of detectron2 config keys")
    route = data.get("route", "auto")
    if route not in ROUTES:
        raise ValueError(f"{path}: 'route' must be one of {', '.join(ROUTES)}, got {route!r}")
    return Preset(path.stem, path, data["base"], trials, d2, route)

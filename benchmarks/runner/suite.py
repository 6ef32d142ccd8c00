"""The suite file: one YAML that says what to pretrain, what to evaluate it with, on which seeds.

::

    name: quickstart
    scale: "digits-m, 3 epochs, 1 seed"            # stated on every table built from this suite
    seeds: [0]
    pretrain_overrides: [run.progress=false]       # applied to every pretrain variant, before its own
    variants:                                       # order = row order of the leaderboard
      byol:        {kind: pretrain, config: pretrain/configs/byol.yaml, overrides: [run.epochs=3]}
      random-init: {kind: random-init, overrides: [arch=resnet18, image_size=32]}
      supervised:  {kind: supervised, overrides: [epochs=5]}
      mine:        {kind: artifact, path: /somewhere/my-artifact}   # evaluated as is, once per seed
      pixels:      {kind: raw-pixels, dataset_options: {image_size: 32}}  # over each evaluation's options
    evaluations:
      - {evaluator: knn, dataset: digits-m}
      - {evaluator: linear, dataset: digits-m, overrides: [epochs=20]}
      - {evaluator: detection, dataset: digits-det, name: det, variants: [byol, random-init]}
    executor: {kind: local, workers: 1}             # or slurm: gpus_per_job, timeout_min, partition ...
    cost: {pretrain_images_per_s: 1367, device: V100, source: "..."}   # the dry-run's GPU-hour estimate
    leaderboard: {baseline: random-init, metrics: [knn.top1_k20, linear.top1]}
    expected:
      - [byol, knn.top1_k20, ">", random-init]      # comparative (optional margin as 5th item)
      - [byol, linear.top1, 0.6, 0.2]               # absolute: |mean − 0.6| ≤ 0.2

Unknown keys and wrong types are ``ConfigError``s naming the key; cross-references (a variant named in
``evaluations[i].variants``, ``leaderboard.baseline`` or ``expected``) are checked too.

Environment variables. ``${NAME}`` in any string value (a dataset ``root``, an artifact ``path``, an
override) is replaced by ``$NAME`` when the suite is loaded, so one suite file serves every machine:
``dataset_options: {root: "${CIFAR10_ROOT}"}``. An unset variable is an error naming the key and the
variable (``load_suite(..., require_env=False)`` leaves it in place, so ``--dry-run`` can still plan).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zoo.config import ConfigError, from_dict, load_yaml, parse_override

__all__ = [
    "VariantSpec",
    "EvalSpec",
    "ExecutorSpec",
    "CostSpec",
    "CurveSpec",
    "LeaderboardSpec",
    "Expectation",
    "SuiteSpec",
    "load_suite",
    "parse_expectation",
    "expand_env",
    "ARTIFACT_KINDS",
]

# Variant kinds that produce an artifact through a job (the others name an existing one).
ARTIFACT_KINDS = ("pretrain", "random-init", "supervised")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_OPS = (">", ">=", "<", "<=")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class VariantSpec:
    """One leaderboard row: a pretraining recipe, a baseline recipe, or an existing artifact."""

    kind: Literal["pretrain", "random-init", "supervised", "artifact", "raw-pixels"] = "pretrain"
    config: str | None = None  # pretrain: PretrainConfig YAML; supervised/random-init: SupervisedConfig YAML
    overrides: list[str] = field(default_factory=list)  # dotted key=value, applied after the config file
    path: str | None = None  # kind=artifact: the artifact directory
    label: str | None = None  # display name in tables (default: the variant's key)
    seeds: list[int] | None = None  # default: the suite's seeds
    gpus: int | None = None  # pretrain only: GPUs for this variant's job (default executor.gpus_per_job)
    # zoo.datasets.DatasetOptions fields laid over every evaluation's dataset_options for this variant's jobs:
    # e.g. raw-pixels at 32 px while the evaluations leave image_size to each artifact's own input size
    dataset_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSpec:
    """One evaluator on one dataset, applied to every variant (or to ``variants``)."""

    evaluator: str
    dataset: str
    name: str | None = None  # column group in the leaderboard (default: the evaluator name)
    config: str | None = None  # the evaluator's config YAML
    overrides: list[str] = field(default_factory=list)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # zoo.datasets.DatasetOptions fields
    variants: list[str] | None = None  # default: every variant
    gpus: int | None = None  # GPUs per job of this evaluation (default: 1 when executor.gpus_per_job > 0)

    @property
    def group(self) -> str:
        return self.name or self.evaluator


@dataclass(frozen=True)
class ExecutorSpec:
    """Where jobs run. ``local``: this process (``workers`` > 1: a process pool); ``slurm``: submitit."""

    kind: Literal["local", "slurm"] = "local"
    workers: int = 1
    cluster: Literal["slurm", "local", "debug"] | None = None  # submitit cluster (default: slurm)
    partition: str | None = None
    gpus_per_job: int = 0  # > 1 on a pretrain job: launched with torchrun --nproc_per_node
    cpus_per_job: int = 4
    mem_gb: float | None = None
    timeout_min: int = 240  # pretrain / baseline jobs
    eval_timeout_min: int = 60
    array_parallelism: int = 32
    slurm_additional: dict[str, Any] = field(default_factory=dict)  # passed as slurm_additional_parameters

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("executor.workers must be >= 1")
        if self.gpus_per_job < 0 or self.cpus_per_job < 1:
            raise ValueError("executor.gpus_per_job must be >= 0 and executor.cpus_per_job >= 1")
        if self.timeout_min < 1 or self.eval_timeout_min < 1:
            raise ValueError("executor.timeout_min and executor.eval_timeout_min must be >= 1")


@dataclass(frozen=True)
class CostSpec:
    """Stated per-step costs behind the dry-run's GPU-hour estimate (``benchmarks.runner.cost``).

    Each figure is a throughput someone measured, with the GPU and the source named next to it, so the
    estimate can be checked and updated: ``pretrain_images_per_s`` is images per second *per GPU* for one
    BYOL step (both views, forward and backward) at this suite's backbone and image size;
    ``detection_s_per_iter`` is seconds per detectron2 iteration on ``detection_gpus`` GPUs together.
    ``train_images`` is the size of the pretraining split (the dry run does not read the data).
    ``eval_gpu_hours`` maps an evaluation group to its GPU-hours per job (feature passes, linear probes).
    """

    pretrain_images_per_s: float | None = None
    train_images: int | None = None
    detection_s_per_iter: float | None = None
    detection_gpus: int = 8
    eval_gpu_hours: dict[str, float] = field(default_factory=dict)
    device: str = ""  # the GPU the figures were measured on
    source: str = ""  # where the figures come from

    def __post_init__(self) -> None:
        for name in ("pretrain_images_per_s", "detection_s_per_iter"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"cost.{name} must be positive, got {value}")
        if self.train_images is not None and self.train_images < 1:
            raise ValueError("cost.train_images must be >= 1")
        if self.detection_gpus < 1:
            raise ValueError("cost.detection_gpus must be >= 1")
        if any(v < 0 for v in self.eval_gpu_hours.values()):
            raise ValueError("cost.eval_gpu_hours values must be >= 0")


@dataclass(frozen=True)
class CurveSpec:
    """A metric plotted against a pretraining config value across variants (e.g. paper Table 5a: τ_base)."""

    param: str  # dotted key of the resolved pretrain config, e.g. byol.tau_base
    metrics: list[str]  # "group.metric"
    variants: list[str]
    xlabel: str | None = None


@dataclass(frozen=True)
class LeaderboardSpec:
    baseline: str | None = None  # Δ columns are against this variant
    metrics: list[str] = field(default_factory=list)  # "group.metric" columns, in order; empty: all
    lower_is_better: list[str] = field(default_factory=list)  # metrics ranked ascending
    precision: int = 3
    curves: list[CurveSpec] = field(default_factory=list)
    plot_metrics: list[str] | None = None  # bar charts (default: ``metrics``)


@dataclass(frozen=True)
class Expectation:
    """A checked claim about the leaderboard: absolute ``value ± tol`` or ``op`` against a value/variant."""

    variant: str
    metric: str  # "group.metric"
    op: Literal["≈", ">", ">=", "<", "<="]
    target: float | str  # a number, or a variant whose mean is compared against
    tolerance_or_margin: float = 0.0

    def describe(self) -> str:
        if self.op == "≈":
            return f"{self.variant} {self.metric} = {self.target} ± {self.tolerance_or_margin}"
        margin = f" + {self.tolerance_or_margin}" if self.tolerance_or_margin and self.op.startswith(">") else ""
        margin = f" - {self.tolerance_or_margin}" if self.tolerance_or_margin and self.op.startswith("<") else margin
        return f"{self.variant} {self.metric} {self.op} {self.target}{margin}"


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    variants: dict[str, VariantSpec]
    evaluations: list[EvalSpec]
    description: str = ""
    scale: str = ""
    results_dir: str | None = None  # default outputs/<name>
    seeds: list[int] = field(default_factory=lambda: [0])
    pretrain_overrides: list[str] = field(default_factory=list)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    leaderboard: LeaderboardSpec = field(default_factory=LeaderboardSpec)
    expected: list[list[Any]] = field(default_factory=list)
    cost: CostSpec | None = None  # stated per-step costs for the dry-run's GPU-hour estimate
    unset_env: list[str] = field(default_factory=list)  # ${VAR}s left unexpanded (load_suite(require_env=False))
    source: str | None = None  # the suite file (set by load_suite)

    def label(self, variant: str) -> str:
        return self.variants[variant].label or variant

    def expectations(self) -> list[Expectation]:
        return [parse_expectation(e, f"expected[{i}]") for i, e in enumerate(self.expected)]

    def default_results_dir(self) -> Path:
        return Path(self.results_dir) if self.results_dir else Path("outputs") / self.name


def parse_expectation(item: Any, key: str = "expected") -> Expectation:
    """``[variant, metric, value, tol]`` or ``[variant, metric, op, value|variant(, margin)]``."""
    if not isinstance(item, list | tuple) or len(item) not in (4, 5):
        raise ConfigError(
            f"suite: key '{key}' must be [variant, group.metric, value, tolerance] or "
            f"[variant, group.metric, op, value-or-variant(, margin)], got {item!r}"
        )
    variant, metric = item[0], item[1]
    if not isinstance(variant, str) or not isinstance(metric, str) or "." not in metric:
        raise ConfigError(f"suite: key '{key}' needs a variant name and a 'group.metric', got {item!r}")
    if isinstance(item[2], int | float) and not isinstance(item[2], bool):
        if len(item) != 4 or not isinstance(item[3], int | float) or item[3] < 0:
            raise ConfigError(f"suite: key '{key}' absolute form is [variant, metric, value, tolerance>=0]")
        return Expectation(variant, metric, "≈", float(item[2]), float(item[3]))
    if item[2] not in _OPS:
        raise ConfigError(f"suite: key '{key}' operator {item[2]!r} must be one of {list(_OPS)} or a number")
    target = item[3]
    if isinstance(target, bool) or not isinstance(target, int | float | str):
        raise ConfigError(f"suite: key '{key}' compares against a number or a variant name, got {target!r}")
    margin = item[4] if len(item) == 5 else 0.0
    if isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0:
        raise ConfigError(f"suite: key '{key}' margin must be a number >= 0, got {margin!r}")
    return Expectation(variant, metric, item[2], float(target) if not isinstance(target, str) else target, margin)


def _check_dataset_options(options: dict[str, Any], key: str, err: Callable[[str, str], ConfigError]) -> None:
    """Every key of a ``dataset_options`` mapping must be a ``DatasetOptions`` field (a typo is an error)."""
    from zoo.datasets import DatasetOptions

    known = {f.name for f in dataclasses.fields(DatasetOptions)}
    for name in options:
        if name not in known:
            raise err(f"{key}.{name}", f"is not a dataset option (known: {', '.join(sorted(known))})")


def _validate(suite: SuiteSpec, src: str) -> None:
    def err(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{src}: key '{key}' {msg}")

    if not _NAME.match(suite.name):
        raise err("name", f"= {suite.name!r} must be a simple name (letters, digits, - _ . +)")
    if not suite.variants:
        raise err("variants", "must name at least one variant")
    if not suite.evaluations:
        raise err("evaluations", "must list at least one evaluation")
    if not suite.seeds or len(set(suite.seeds)) != len(suite.seeds):
        raise err("seeds", f"must be a non-empty list of distinct integers, got {suite.seeds}")
    for name, v in suite.variants.items():
        key = f"variants.{name}"
        if not _NAME.match(name):
            raise err(key, "is not a simple name (letters, digits, - _ . +)")
        if v.kind == "pretrain" and not v.config:
            raise err(f"{key}.config", "is required for a pretrain variant (a PretrainConfig YAML)")
        if v.kind == "artifact" and not v.path:
            raise err(f"{key}.path", "is required for an artifact variant (the artifact directory)")
        if v.kind != "artifact" and v.path:
            raise err(f"{key}.path", f"only applies to kind 'artifact', not '{v.kind}'")
        if v.kind in ("artifact", "raw-pixels") and (v.config or v.overrides):
            raise err(f"{key}.overrides", f"kind '{v.kind}' takes no config or overrides")
        if v.seeds is not None and (not v.seeds or len(set(v.seeds)) != len(v.seeds)):
            raise err(f"{key}.seeds", "must be a non-empty list of distinct integers")
        if v.gpus is not None and (v.kind != "pretrain" or v.gpus < 0):
            raise err(f"{key}.gpus", "applies to pretrain variants only and must be >= 0")
        for i, o in enumerate(v.overrides):
            if "=" not in o:
                raise err(f"{key}.overrides[{i}]", f"= {o!r} must look like key.subkey=value")
        _check_dataset_options(v.dataset_options, f"{key}.dataset_options", err)
    groups: set[str] = set()
    for i, e in enumerate(suite.evaluations):
        key = f"evaluations[{i}]"
        if not _NAME.match(e.group) or "." in e.group:
            raise err(f"{key}.name", f"= {e.group!r} must be a simple name without dots")
        if e.group in groups:
            raise err(f"{key}.name", f"'{e.group}' is used twice; give one of them another name")
        groups.add(e.group)
        _check_dataset_options(e.dataset_options, f"{key}.dataset_options", err)
        for j, v in enumerate(e.variants or []):
            if v not in suite.variants:
                raise err(f"{key}.variants[{j}]", f"= {v!r} is not a variant of this suite")
        for j, o in enumerate(e.overrides):
            if "=" not in o:
                raise err(f"{key}.overrides[{j}]", f"= {o!r} must look like key.subkey=value")
        if e.gpus is not None and e.gpus < 0:
            raise err(f"{key}.gpus", "must be >= 0")
    lb = suite.leaderboard
    if lb.baseline is not None and lb.baseline not in suite.variants:
        raise err("leaderboard.baseline", f"= {lb.baseline!r} is not a variant of this suite")
    for name in ("metrics", "lower_is_better", "plot_metrics"):
        for j, m in enumerate(getattr(lb, name) or []):
            if m.split(".", 1)[0] not in groups or "." not in m:
                raise err(
                    f"leaderboard.{name}[{j}]", f"= {m!r} must be 'group.metric' with a group of {sorted(groups)}"
                )
    for c, curve in enumerate(lb.curves):
        for j, v in enumerate(curve.variants):
            if v not in suite.variants or suite.variants[v].kind != "pretrain":
                raise err(f"leaderboard.curves[{c}].variants[{j}]", f"= {v!r} is not a pretrain variant")
        for j, m in enumerate(curve.metrics):
            if m.split(".", 1)[0] not in groups or "." not in m:
                raise err(f"leaderboard.curves[{c}].metrics[{j}]", f"= {m!r} must be 'group.metric'")
    for i, item in enumerate(suite.expected):
        exp = parse_expectation(item, f"expected[{i}]")
        if exp.variant not in suite.variants:
            raise err(f"expected[{i}]", f"names variant {exp.variant!r}, which is not in this suite")
        if exp.metric.split(".", 1)[0] not in groups:
            raise err(f"expected[{i}]", f"metric {exp.metric!r} is not in an evaluation group {sorted(groups)}")
        if isinstance(exp.target, str) and exp.target not in suite.variants:
            raise err(f"expected[{i}]", f"compares against {exp.target!r}, which is not a variant")


def apply_suite_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Dotted ``key=value`` overrides where an integer part indexes a list (``evaluations.0.overrides=[]``)."""
    out = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override '{text}': '{part}' is not an index of a {len(node)}-item list")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"override '{text}': '{parts[i - 1]}' is not a section")
    return out


def expand_env(data: Any, environ: Mapping[str, str], key: str = "") -> tuple[Any, dict[str, str]]:
    """``${NAME}`` in every string of nested ``data`` replaced from ``environ``.

    Returns the new data and ``{variable: first key that uses it}`` for the variables ``environ`` lacks
    (those are left as written).
    """
    missing: dict[str, str] = {}
    if isinstance(data, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) in environ:
                return environ[m.group(1)]
            missing.setdefault(m.group(1), key or "<top level>")
            return m.group(0)

        return _ENV.sub(sub, data), missing
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out[k], m = expand_env(v, environ, f"{key}.{k}" if key else str(k))
            missing = {**m, **missing}
        return out, missing
    if isinstance(data, list):
        items = []
        for i, v in enumerate(data):
            item, m = expand_env(v, environ, f"{key}[{i}]")
            items.append(item)
            missing = {**m, **missing}
        return items, missing
    return data, missing


def load_suite(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    require_env: bool = True,
) -> SuiteSpec:
    """Read and validate a suite YAML (``_base_:`` inheritance and dotted ``overrides`` allowed).

    ``${NAME}`` is expanded from ``environ`` (default ``os.environ``) after the overrides; an unset
    variable is a ``ConfigError`` unless ``require_env`` is false (then it is listed in ``unset_env``).
    """
    path = Path(path)
    data = load_yaml(path)
    src = str(path)
    if overrides:
        data = apply_suite_overrides(data, overrides)
        src += " + overrides"
    data, missing = expand_env(data, os.environ if environ is None else environ)
    if missing and require_env:
        var, where = next(iter(missing.items()))
        raise ConfigError(
            f"{src}: key '{where}' uses ${{{var}}}, which is not set; export {var}=/path (or --set the key)"
        )
    data.setdefault("name", path.stem)
    data.pop("source", None)
    data.pop("unset_env", None)
    suite = from_dict(SuiteSpec, data, source=src)
    _validate(suite, src)
    return SuiteSpec(**{**suite.__dict__, "unset_env": sorted(missing), "source": str(path)})

"""The evaluator contract and registry.

An evaluator is a function registered by name::

    @register_evaluator("knn", config=KnnConfig, task="classification", frozen=True,
                        selection_rule="k and T fixed, or chosen on val; test reported")
    def knn(ctx: EvalContext, cfg: KnnConfig) -> dict[str, float]: ...

It receives an ``EvalContext`` (the loaded artifact with its frozen backbone, the dataset name and
options, seed, device, a work directory and the shared feature cache) and its own validated config
dataclass, and returns a flat ``dict[str, float]`` of metrics. It must not choose anything on the test
split; what it chose on val (e.g. an L2 strength) it notes in ``ctx.selection`` for the record.
``frozen=True`` evaluators are checked by the runner: backbone parameters and BN buffers must be
bit-identical afterwards. Evaluators are plain modules imported explicitly by ``downstream.evaluators``;
registering a name twice is an error. ``downstream.api.evaluate`` runs one evaluator and writes one
metric record; the benchmark runner nests each evaluator's metrics under its name and refuses key collisions.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EvaluatorSpec",
    "EVALUATORS",
    "register_evaluator",
    "get_evaluator",
    "EvaluatorError",
    "UNITS",
    "metric_unit",
]

# the units a metric can be stored in; leaderboards show both in percent (``benchmarks.runner.leaderboard``)
UNITS = {
    "fraction": "a fraction of the split, 0–1 (accuracies, MAP@R, recall)",
    "AP points": "COCO AP × 100, 0–100 (detectron2's convention)",
}


class EvaluatorError(ValueError):
    """Unknown evaluator, or an evaluator used on data it cannot handle."""


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    fn: Callable[..., dict[str, float]]
    config: type  # a frozen dataclass with defaults for every field
    task: str  # "classification" | "detection"
    frozen: bool  # backbone must be unchanged afterwards (checked by the runner)
    selection_rule: str  # how reported numbers were selected (goes into every record)
    # (fnmatch pattern, unit) per metric family, first match wins; unmatched metrics have no unit (a count, λ, R²)
    units: tuple[tuple[str, str], ...] = ()
    # cfg -> fnmatch patterns of every metric name the evaluator returns under cfg; None: not declared
    metrics: Callable[[Any], list[str]] | None = None

    def unit(self, metric: str) -> str | None:
        """The unit ``metric`` is stored in (one of ``UNITS``), or None."""
        return next((u for pattern, u in self.units if fnmatch.fnmatchcase(metric, pattern)), None)

    def metric_names(self, cfg: Any) -> list[str] | None:
        """The fnmatch patterns of the metrics returned under ``cfg``; None when the evaluator declares none."""
        return None if self.metrics is None else list(self.metrics(cfg))


EVALUATORS: dict[str, EvaluatorSpec] = {}


def register_evaluator(
    name: str,
    *,
    config: type,
    task: str,
    frozen: bool,
    selection_rule: str,
    units: dict[str, str] | None = None,
    metrics: Callable[[Any], list[str]] | None = None,
) -> Callable[[Callable[..., dict[str, float]]], Callable[..., dict[str, float]]]:
    """Register ``fn(ctx, cfg) -> dict[str, float]`` under ``name``.

    ``units`` maps fnmatch patterns of metric names to the unit they are stored in (a key of ``UNITS``),
    e.g. ``{"top1*": "fraction"}``; the record lists each metric's unit and leaderboards name it.
    ``metrics(cfg)`` lists (fnmatch patterns of) the metric names the evaluator returns under ``cfg``, so that
    a suite naming a metric it never returns is refused when it is planned, not after the run.
    """
    bad = sorted(set((units or {}).values()) - set(UNITS))
    if bad:
        raise ValueError(f"evaluator '{name}': unknown unit(s) {bad} (known: {', '.join(UNITS)})")

    def deco(fn: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
        if name in EVALUATORS:
            raise ValueError(f"evaluator '{name}' is already registered")
        spec_units = tuple((units or {}).items())
        EVALUATORS[name] = EvaluatorSpec(name, fn, config, task, frozen, selection_rule, spec_units, metrics)
        return fn

    return deco


def get_evaluator(name: str) -> EvaluatorSpec:
    """The spec registered as ``name``; importing ``downstream.evaluators`` registers the built-ins."""
    import downstream.evaluators  # noqa: F401  (explicit import of the built-in plug-ins)

    if name not in EVALUATORS:
        raise EvaluatorError(f"unknown evaluator '{name}' (known: {', '.join(sorted(EVALUATORS))})")
    return EVALUATORS[name]


def describe(spec: EvaluatorSpec) -> dict[str, Any]:
    return {"name": spec.name, "task": spec.task, "frozen": spec.frozen, "selection_rule": spec.selection_rule}


def metric_unit(evaluator: str, metric: str) -> str | None:
    """The unit ``evaluator`` stores ``metric`` in; None when it has none or the evaluator is unknown here."""
    try:
        return get_evaluator(evaluator).unit(metric)
    except EvaluatorError:
        return None

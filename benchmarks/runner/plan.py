"""From a suite to a graph of jobs whose identity is the hash of everything that determines their output.

Job kinds: ``pretrain`` / ``random-init`` / ``supervised`` produce an artifact; ``eval`` produces one metric
record from one artifact. An eval job's identity includes its upstream job's identity (or the weights hash
of an existing artifact), so editing one variant changes only that variant's job ids: the others stay
cached. Execution-only settings (progress bars, checkpoint frequency, the executor) are not part of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.io import stable_hash

from .suite import ARTIFACT_KINDS, SuiteSpec

__all__ = ["Job", "Plan", "make_plan", "Resolvers", "resolve_path", "drop_keys", "drop_defaults"]


@dataclass(frozen=True)
class Job:
    """One unit of work. ``spec`` holds the resolved inputs the stage adapter needs (JSON-serialisable)."""

    id: str
    kind: str  # "pretrain" | "random-init" | "supervised" | "eval"
    variant: str
    seed: int
    spec: dict[str, Any]
    deps: tuple[str, ...] = ()
    group: str | None = None  # eval jobs: the leaderboard column group
    gpus: int = 0
    plan_error: str | None = None  # the inputs could not be resolved: the job fails without running

    @property
    def produces_artifact(self) -> bool:
        return self.kind in ARTIFACT_KINDS

    def describe(self) -> str:
        what = f"{self.kind}" if self.kind != "eval" else f"eval {self.group} ({self.spec.get('dataset')})"
        return f"{self.variant} seed {self.seed}: {what}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "variant": self.variant,
            "seed": self.seed,
            "spec": self.spec,
            "deps": list(self.deps),
            "group": self.group,
            "gpus": self.gpus,
            "plan_error": self.plan_error,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(**{**d, "deps": tuple(d.get("deps", ()))})


@dataclass
class Plan:
    suite: SuiteSpec
    entries: list[Job]  # every (variant, seed[, evaluation]) of the suite, topological order
    jobs: list[Job] = field(default_factory=list)  # unique by id: what the executor runs
    by_id: dict[str, Job] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for j in self.entries:  # the same recipe under two variant names is one job
            self.by_id.setdefault(j.id, j)
        # run order: each artifact job followed by its evaluations, so an interrupted suite has whole rows
        unique = list(self.by_id.values())
        evals_of: dict[str | None, list[Job]] = {}
        for j in unique:
            if j.kind == "eval":
                evals_of.setdefault(j.deps[0] if j.deps else None, []).append(j)
        self.jobs = []
        for j in unique:
            if j.kind != "eval":
                self.jobs += [j, *evals_of.pop(j.id, [])]
        self.jobs += [j for group in evals_of.values() for j in group]

    def eval_jobs(self) -> list[Job]:
        return [j for j in self.entries if j.kind == "eval"]

    def to_dict(self) -> dict[str, Any]:
        from zoo.config import to_dict

        return {"suite": to_dict(self.suite), "entries": [j.to_dict() for j in self.entries]}


@dataclass(frozen=True)
class Resolvers:
    """How a recipe is resolved to the plain dict that identifies it; injected so tests need no stage."""

    pretrain: Callable[[str | None, list[str]], dict[str, Any]]
    baseline: Callable[[str | None, list[str]], dict[str, Any]]
    eval_config: Callable[[str, str | None, list[str]], dict[str, Any]]
    artifact_identity: Callable[[str], dict[str, Any]]
    execution_keys: frozenset[str] = frozenset()  # dotted pretrain keys that do not change the result
    # dotted pretrain keys left out of the identity while they hold this value (keys added after results
    # were published, at the value every earlier run had: the published job hashes stay valid)
    identity_defaults: dict[str, Any] = field(default_factory=dict)
    # (evaluator, dataset, resolved eval config) -> the config as it identifies the job: a value left to a
    # default resolved at run time (detection's num_workers: the preset's) is identified by what it resolves to
    eval_identity: Callable[[str, str, dict[str, Any]], dict[str, Any]] | None = None


def drop_keys(d: dict[str, Any], dotted: frozenset[str] | set[str]) -> dict[str, Any]:
    """A copy of nested ``d`` without the dotted keys (e.g. ``run.progress``)."""
    import copy

    out = copy.deepcopy(d)
    for key in dotted:
        *parents, last = key.split(".")
        node: Any = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def drop_defaults(d: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A copy of nested ``d`` without the dotted keys of ``defaults`` whose value there equals the default."""
    import copy

    out = copy.deepcopy(d)
    for key, value in defaults.items():
        *parents, last = key.split(".")
        node: Any = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node and node[last] == value:
            del node[last]
    return out


def resolve_path(p: str | None, suite_file: str | None) -> str | None:
    """A relative path is looked up next to the suite file, then from the current directory."""
    if p is None:
        return None
    path = Path(p)
    if path.is_absolute():
        return str(path)
    if suite_file is not None:
        near = Path(suite_file).parent / path
        if near.exists():
            return str(near.resolve())
    return str(path.resolve())


def _safe(fn: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - reported on the job, never hides the other jobs
        return {}, f"{type(exc).__name__}: {exc}"


def make_plan(suite: SuiteSpec, resolvers: Resolvers | None = None) -> Plan:
    """Every (variant, seed) artifact job, then every (variant, seed, evaluation) eval job."""
    if resolvers is None:
        from . import stages

        resolvers = stages.default_resolvers()
    src = suite.source
    artifact_of: dict[tuple[str, int], tuple[dict[str, Any], str | None, str | None]] = {}
    jobs: list[Job] = []
    for name, v in suite.variants.items():
        for seed in v.seeds or suite.seeds:
            config = resolve_path(v.config, src)
            if v.kind == "pretrain":
                overrides = [*suite.pretrain_overrides, *v.overrides, f"seed={seed}"]
                resolved, error = _safe(lambda c=config, o=overrides: resolvers.pretrain(c, o))
                gpus = v.gpus if v.gpus is not None else suite.executor.gpus_per_job
            elif v.kind in ("random-init", "supervised"):
                overrides = [*v.overrides, f"seed={seed}"]
                resolved, error = _safe(lambda c=config, o=overrides: resolvers.baseline(c, o))
                if v.kind == "random-init" and not error:  # only these fields shape a random init
                    resolved = {k: resolved[k] for k in ("arch", "image_size", "seed")}
                gpus = min(1, suite.executor.gpus_per_job)
            elif v.kind == "artifact":
                path = resolve_path(v.path, src)
                ident, error = _safe(lambda p=path: resolvers.artifact_identity(p))
                artifact_of[(name, seed)] = ({"artifact": path, **ident}, None, error)
                continue
            else:  # raw-pixels
                artifact_of[(name, seed)] = ({"artifact": "raw-pixels"}, None, None)
                continue
            spec = {"config": resolved}  # the full config runs; execution-only keys stay out of the identity
            kept = drop_defaults(drop_keys(resolved, resolvers.execution_keys), resolvers.identity_defaults)
            ident = {"kind": v.kind, "config": kept}
            job_id = stable_hash(ident) if not error else stable_hash([v.kind, name, seed, error])
            job = Job(job_id, v.kind, name, seed, spec, gpus=gpus, plan_error=error)
            jobs.append(job)
            artifact_of[(name, seed)] = ({"upstream": job_id}, job_id, error and f"upstream {v.kind}: {error}")
    for ev in suite.evaluations:
        config = resolve_path(ev.config, src)
        eval_cfg, eval_error = _safe(lambda e=ev, c=config: resolvers.eval_config(e.evaluator, c, list(e.overrides)))
        for name in ev.variants or list(suite.variants):
            for seed in suite.variants[name].seeds or suite.seeds:
                upstream, dep, up_error = artifact_of[(name, seed)]
                spec = {
                    "evaluator": ev.evaluator,
                    "dataset": ev.dataset,
                    "dataset_options": {**ev.dataset_options, **suite.variants[name].dataset_options},
                    "config": eval_cfg,
                    "config_path": config,
                    "overrides": list(ev.overrides),
                    "seed": seed,
                    **upstream,
                }
                ident = {k: v for k, v in spec.items() if k not in ("config_path", "overrides")} if eval_cfg else spec
                if eval_cfg and resolvers.eval_identity is not None:
                    ident = {**ident, "config": resolvers.eval_identity(ev.evaluator, ev.dataset, eval_cfg)}
                error = eval_error or up_error if dep is None else eval_error
                job_id = stable_hash({"kind": "eval", **ident}) if not error else stable_hash([name, seed, error])
                jobs.append(
                    Job(
                        job_id,
                        "eval",
                        name,
                        seed,
                        spec,
                        deps=(dep,) if dep else (),
                        group=ev.group,
                        gpus=ev.gpus if ev.gpus is not None else min(1, suite.executor.gpus_per_job),
                        plan_error=error,
                    )
                )
    return Plan(suite, jobs)

"""Adapters between the runner and the stages: small functions, the only place that imports them.

An *artifact stage* is ``fn(job, run_dir) -> None`` and must leave an artifact at ``run_dir/artifact``
(``meta.json`` written last); an *eval stage* is ``fn(job, artifact, work_dir) -> dict`` and returns one
metric record (its ``evidence`` files relative to ``work_dir``; the runner copies them beside the record).
Tests swap these for fakes (``StageFns``) to exercise planning, caching and failures without training
anything. The stages are imported lazily so a suite can be planned (and its other jobs
run) while one stage is missing; a missing stage fails only the jobs that need it, naming it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.io import atomic_write_text

from .plan import Job, Resolvers

__all__ = [
    "StageFns",
    "default_stage_fns",
    "default_resolvers",
    "resolve_pretrain",
    "resolve_baseline",
    "resolve_eval_config",
    "artifact_identity",
    "eval_identity",
    "run_pretrain",
    "run_random_init",
    "run_supervised",
    "run_eval",
]

ArtifactFn = Callable[[Job, Path], None]
EvalFn = Callable[[Job, str, Path], dict[str, Any]]


@dataclass(frozen=True)
class StageFns:
    """Which function runs each job kind (module-level functions, so they pickle for workers/submitit)."""

    artifact: dict[str, ArtifactFn] = field(default_factory=dict)
    eval: EvalFn | None = None


def default_stage_fns() -> StageFns:
    return StageFns(
        artifact={"pretrain": run_pretrain, "random-init": run_random_init, "supervised": run_supervised},
        eval=run_eval,
    )


def default_resolvers() -> Resolvers:
    try:  # keys that only control how a run executes (progress bars, checkpoint frequency)
        from pretrain.config import IDENTITY_DEFAULTS, RUN_CONTROL_KEYS
    except ImportError:
        RUN_CONTROL_KEYS, IDENTITY_DEFAULTS = frozenset(), {}  # noqa: N806 - no pretraining stage: its jobs say so
    return Resolvers(
        resolve_pretrain,
        resolve_baseline,
        resolve_eval_config,
        artifact_identity,
        RUN_CONTROL_KEYS,
        IDENTITY_DEFAULTS,
        eval_identity,
    )


# resolving recipes to the dicts that identify them ------------------------------------------------------
def resolve_pretrain(config: str | None, overrides: list[str]) -> dict[str, Any]:
    """The resolved ``PretrainConfig`` as a dict (all of it: it is what the job runs)."""
    from pretrain.config import load_pretrain_config
    from zoo.config import to_dict

    return to_dict(load_pretrain_config(config, overrides))


def resolve_baseline(config: str | None, overrides: list[str]) -> dict[str, Any]:
    from zoo.baselines import SupervisedConfig
    from zoo.config import load_config, to_dict

    return to_dict(load_config(SupervisedConfig, config, overrides))


def resolve_eval_config(evaluator: str, config: str | None, overrides: list[str]) -> dict[str, Any]:
    """The evaluator's validated config (its registered dataclass) as a dict."""
    from downstream.registry import get_evaluator
    from zoo.config import load_config, to_dict

    return to_dict(load_config(get_evaluator(evaluator).config, config, overrides))


def eval_identity(evaluator: str, dataset: str, config: dict[str, Any]) -> dict[str, Any]:
    """The eval config as it identifies a job: detection's ``num_workers: null`` is the preset's loader workers.

    So a job is identified by the workers it runs with (they seed detectron2's per-worker augmentation), and
    the published CPU-preset jobs, which ran with 0 workers, keep their hashes; for the same reason an unset
    ``eval_period`` (added later) is left out.
    """
    if evaluator != "detection":
        return config
    if "eval_period" in config and config["eval_period"] is None:
        config = {k: v for k, v in config.items() if k != "eval_period"}
    if config.get("num_workers") is not None:
        return config
    try:
        from downstream.detection.config import load_preset

        preset = load_preset(config.get("preset"), dataset=dataset)
    except Exception:  # noqa: BLE001 - an unknown preset fails the job itself, with its own message
        return config
    return {**config, "num_workers": int(preset.d2.get("DATALOADER.NUM_WORKERS", 4))}  # 4: detectron2's default


def artifact_identity(path: str) -> dict[str, Any]:
    """An existing artifact is identified by its weights hash (so replacing the weights re-runs its evals)."""
    from zoo.artifact import read_meta

    return {"weights_sha256": read_meta(path).weights_sha256}


# running ------------------------------------------------------------------------------------------------
def run_pretrain(job: Job, run_dir: Path) -> None:
    """``pretrain.train.train`` in this process, or ``torchrun ... byol-bench pretrain`` when the job has > 1 GPU.

    A stop signal (SIGTERM, SIGUSR1) lets pretraining finish its step and checkpoint; then the signal is
    delivered again, so the process ends as the signal would have ended it (a pool worker must not outlive
    a killed runner) unless a handler installed before (submitit's) decides otherwise.
    """
    from pretrain.config import PretrainConfig
    from zoo.config import from_dict

    cfg = from_dict(PretrainConfig, job.spec["config"], source=f"job {job.id}")
    if job.gpus > 1:
        _torchrun_pretrain(job, run_dir)
        return
    from pretrain.train import Preempted, train

    try:
        train(cfg, run_dir, resume=True)
    except Preempted as exc:
        os.kill(os.getpid(), exc.signum)  # train has put the previous handler back; the checkpoint is written
        raise


def _torchrun_command(job: Job, cfg_file: Path, run_dir: Path) -> list[str]:
    """``torchrun --nproc_per_node=GPUS -m benchmarks.cli pretrain CFG --out RUN_DIR`` from this environment."""
    launcher = [sys.executable, "-m", "torch.distributed.run"]  # = torchrun, from this environment
    # every rank runs the same ``byol-bench pretrain CONFIG --out RUN_DIR``; train() reads its rank from env
    cmd = [*launcher, f"--nproc_per_node={job.gpus}", "-m", "benchmarks.cli", "pretrain", str(cfg_file)]
    return [*cmd, "--out", str(run_dir)]


def _torchrun_pretrain(job: Job, run_dir: Path) -> None:
    """Multi-GPU pretraining is the pretraining stage's own ``torchrun`` path; we only launch it.

    The resolved config is written as YAML (execution-only keys take their defaults) and passed whole.
    torchrun lives no longer than this process (``procs.run_child``: a parent-death signal), and a stop signal
    to this process (SIGTERM, SIGUSR1, SIGUSR2) reaches it as SIGTERM: its ranks finish their step, write a
    checkpoint and exit. Then this process ends as the signal would have ended it, as in-process pretraining
    does, and where a handler keeps it alive (submitit's), the job is ``Preempted``.
    """
    import yaml

    from .procs import run_child

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = run_dir / "suite-config.yaml"
    atomic_write_text(cfg_file, yaml.safe_dump(job.spec["config"], sort_keys=True))
    cmd = _torchrun_command(job, cfg_file, run_dir)
    rc, stop = run_child(cmd, env=dict(os.environ))
    if stop is None:
        if rc:
            raise subprocess.CalledProcessError(rc, cmd)
        return
    if rc == 0:  # it finished just as the signal came: the artifact is written, end as the signal says
        os.kill(os.getpid(), stop)
        return
    from pretrain.train import Preempted

    name = signal.Signals(stop).name
    try:
        raise Preempted(
            f"{name} received: torchrun stopped (exit {rc}) after its ranks checkpointed in {run_dir}; "
            "run the same job again to resume",
            stop,
            -1,
        )
    except Preempted:
        os.kill(os.getpid(), stop)  # our handler is gone: the previous one (or the default action) acts
        raise


def run_random_init(job: Job, run_dir: Path) -> None:
    from zoo.baselines import random_init_artifact

    c = job.spec["config"]
    random_init_artifact(run_dir / "artifact", c["arch"], c["seed"], c["image_size"])


def run_supervised(job: Job, run_dir: Path) -> None:
    from zoo.baselines import SupervisedConfig, supervised_artifact
    from zoo.config import from_dict

    cfg = from_dict(SupervisedConfig, job.spec["config"], source=f"job {job.id}")
    supervised_artifact(run_dir / "artifact", cfg)


def run_eval(job: Job, artifact: str, work_dir: Path) -> dict[str, Any]:
    """``downstream.api.evaluate`` on one artifact; returns its metric record."""
    from downstream.api import evaluate
    from zoo.datasets import DatasetOptions

    s = job.spec
    options = DatasetOptions(**s["dataset_options"]) if s["dataset_options"] else None
    # run the config the job's identity was computed from (every resolved key pinned), so a default that
    # changed in the code since planning cannot make the record differ from its identity
    if s["config"]:
        config_path, overrides = None, _pin(s["config"])
    else:
        config_path, overrides = s["config_path"], list(s["overrides"])
    return evaluate(
        artifact,
        s["evaluator"],
        s["dataset"],
        dataset_options=options,
        config_path=config_path,
        overrides=overrides,
        seed=int(s["seed"]),
        out=work_dir / "record.json",
        work_dir=work_dir,
    )


def _pin(config: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}, "k": [20, 200]}`` → ``["a.b=1", "k=[20, 200]"]`` (values as JSON, which YAML reads)."""
    import json

    out: list[str] = []
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out += _pin(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out

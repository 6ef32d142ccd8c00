"""Fake stage functions and resolvers: they exercise planning, caching, locking and failures, not maths.

A fake artifact job writes ``artifact/meta.json`` with the ``quality`` from its (fake) config; a fake eval
job returns a record whose metric is that quality plus a seed-dependent offset. Every call appends
``start <id>`` / ``end <id>`` to ``$BENCH_FAKE_LOG`` so tests can count what ran. ``fail=true`` in a config
raises, ``sleep=<s>`` waits (to be killed in the middle), ``die=true`` kills its own process (SIGKILL, as the
OOM killer would). ``threads=true`` records the worker's torch intra-op threads in the meta.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from benchmarks.runner.plan import Job, Resolvers
from benchmarks.runner.stages import StageFns
from zoo.config import apply_overrides
from zoo.io import atomic_write_json, read_json


def _log(event: str, job: Job) -> None:
    path = os.environ.get("BENCH_FAKE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{event} {job.id} {job.kind} {job.variant} {job.seed} {job.group}\n")
            fh.flush()
            os.fsync(fh.fileno())


def fake_artifact(job: Job, run_dir: Path) -> None:
    _log("start", job)
    cfg = job.spec["config"]
    if cfg.get("sleep"):
        time.sleep(float(cfg["sleep"]))
    if cfg.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.get("fail"):
        raise RuntimeError(f"boom in {job.variant}")
    meta = {"quality": cfg.get("quality", 0.0), "seed": job.seed}
    if cfg.get("threads"):
        import torch

        meta["threads"] = torch.get_num_threads()
    atomic_write_json(run_dir / "artifact" / "meta.json", meta)
    _log("end", job)


def fake_eval(job: Job, artifact: str, work_dir: Path) -> dict[str, Any]:
    _log("start", job)
    cfg = job.spec["config"]
    if cfg.get("sleep"):
        time.sleep(float(cfg["sleep"]))
    if cfg.get("fail"):
        raise ValueError("evaluator exploded")
    quality = 0.0 if artifact == "raw-pixels" else float(read_json(Path(artifact) / "meta.json")["quality"])
    record = {
        "schema_version": 1,
        "evaluator": job.spec["evaluator"],
        "metrics": {"top1": quality + 0.01 * job.seed, "top5": min(1.0, quality + 0.2)},
        "seed": job.seed,
        "code_version": {"git_sha": "0123456789abcdef", "git_dirty": False},
        "machine": {"cpu": "fake cpu", "cpu_count": 2, "gpu": None},
    }
    _log("end", job)
    return record


def _dict(config: str | None, overrides: list[str]) -> dict[str, Any]:
    return apply_overrides({}, overrides)


FAKE_FNS = StageFns(
    artifact={"pretrain": fake_artifact, "random-init": fake_artifact, "supervised": fake_artifact}, eval=fake_eval
)
FAKE_RESOLVERS = Resolvers(
    pretrain=_dict,
    baseline=_dict,
    eval_config=lambda evaluator, config, overrides: {"evaluator": evaluator, **apply_overrides({}, overrides)},
    artifact_identity=lambda path: {"path_name": Path(path).name},
)


def read_log(path: str | Path) -> list[tuple[str, str]]:
    p = Path(path)
    if not p.is_file():
        return []
    return [tuple(line.split()[:2]) for line in p.read_text().splitlines() if line.strip()]

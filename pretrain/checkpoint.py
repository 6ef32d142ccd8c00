"""What a pretraining run directory holds on disk: the checkpoint format, the metrics log, the run config.

Export reads a run through this module and ``pretrain.model`` alone; the training loop (``pretrain.train``)
writes through it.

Checkpoints. ``checkpoints/last.pt`` is the newest, ``checkpoints/prev.pt`` the one before it; each has its
sha256 beside it (``last.pt.sha256``, in ``sha256sum`` format, so ``sha256sum -c`` checks it by hand). A save
writes the new file under a temporary name, moves ``last.pt`` to ``prev.pt``, writes the checksums, and only
then renames the new file to ``last.pt``; at every instant of that sequence at least one checkpoint matches a
recorded checksum, so a kill anywhere leaves a checkpoint that verifies. ``load_checkpoint`` takes the newest
file whose bytes match a recorded checksum and that ``torch.load`` reads; one that fails is named in the log
and the previous one is used, and when none is usable it raises ``CheckpointError`` naming every path. A
checkpoint written before checksums existed (no ``.sha256`` file at all) is loaded unverified, with a warning.

metrics.jsonl. One JSON object per line, appended. A line torn by a full disk or a kill is where reading
stops: readers keep the complete lines before it and log the file and line number; a resumed run truncates
the file back to its checkpoint's step, dropping the torn line.

Full disks. Every write of the run directory turns ``ENOSPC`` (and ``EDQUOT``) into ``DiskFull``, one line that
names the path, the bytes the write needed and the bytes free there.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import random
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrain.byol import BYOL
from pretrain.config import PretrainConfig, load_pretrain_config
from zoo.io import atomic_write_text, current_umask, fsync_dir, sha256_bytes, sha256_file

__all__ = [
    "CHECKPOINT",
    "PREVIOUS",
    "ARTIFACT",
    "METRICS",
    "CheckpointError",
    "DiskFull",
    "LoadedCheckpoint",
    "MetricsLog",
    "checkpoint_state",
    "clean_stale_temp",
    "disk_guard",
    "has_checkpoint",
    "load_checkpoint",
    "load_checkpoint_into",
    "load_run_config",
    "read_metrics",
    "rng_state",
    "save_checkpoint",
    "set_aside",
    "settle_checkpoints",
    "set_rng_state",
]

CHECKPOINT = Path("checkpoints") / "last.pt"
PREVIOUS = Path("checkpoints") / "prev.pt"
ARTIFACT = "artifact"
METRICS = "metrics.jsonl"
SHA_SUFFIX = ".sha256"
log = logging.getLogger("pretrain")


class CheckpointError(RuntimeError):
    """No checkpoint of a run directory is usable (each one named with its reason), or a named one is not."""


class DiskFull(RuntimeError):
    """A write of the run directory ran out of space; the message names the path, bytes needed and free."""

    def __init__(self, path: Path, needed: int) -> None:
        self.path, self.needed = Path(path), int(needed)
        self.free = _free_bytes(self.path)
        free = f"{_mb(self.free)} free there" if self.free is not None else "free space unknown"
        super().__init__(f"no space left on device writing {self.path}: it needs {_mb(self.needed)}, {free}")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def _free_bytes(path: Path) -> int | None:
    for p in (path, *path.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


@contextmanager
def disk_guard(path: str | Path, needed: int) -> Iterator[None]:
    """Turn ``ENOSPC`` / ``EDQUOT`` raised inside into ``DiskFull(path, needed)``; other errors pass through."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFull(Path(path), needed) from exc


def load_run_config(run_dir: str | Path) -> PretrainConfig:
    """The config a run directory was trained with (``config.yaml``)."""
    return load_pretrain_config(Path(run_dir) / "config.yaml", [])


# --------------------------------------------------------------------------------------------------
# metrics.jsonl
# --------------------------------------------------------------------------------------------------


class MetricsLog:
    """Append-only JSON lines (rank 0), truncated on resume to the checkpointed step."""

    def __init__(self, path: Path, enabled: bool, tensorboard_dir: Path | None) -> None:
        self.path, self.enabled = path, enabled
        self.tb = None
        if enabled and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(tensorboard_dir))
            except ImportError:
                log.warning("run.tensorboard is true but tensorboard is not installed; logging to JSON only")

    def truncate(self, step: int) -> None:
        """Keep the records up to ``step`` (all of them removed with ``step = -1``), and no torn line."""
        if not self.enabled or not self.path.exists():
            return
        keep = [ln for ln, rec in _complete_lines(self.path) if rec["step"] <= step]
        text = "".join(ln + "\n" for ln in keep)
        with disk_guard(self.path, len(text.encode("utf-8"))):
            atomic_write_text(self.path, text)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (and its numbers to tensorboard when enabled)."""
        if not self.enabled:
            return
        line = json.dumps(record, sort_keys=True) + "\n"
        with disk_guard(self.path, len(line.encode("utf-8"))), open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        """Close the tensorboard writer, if any."""
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` in order, up to the last complete line (a torn one is logged)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [rec for _, rec in _complete_lines(path)]


def _complete_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(line, record)`` of every line of ``path`` up to the first one that is not a whole JSON record.

    A line torn by a full disk or a kill mid-append is where the log stops: it and anything after it are
    left out, and a warning names the file and the line.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    lines = path.read_bytes().split(b"\n")
    for no, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                raise ValueError("not a record with an integer 'step'")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            rest = sum(1 for r in lines[no:] if r.strip())
            log.warning(
                "%s line %d is not a complete record (%s): a torn append; reading stops at line %d%s",
                path, no, exc, no - 1, f" ({rest} later line(s) left out)" if rest else "",
            )  # fmt: skip
            break
        out.append((line, rec))
    return out


# --------------------------------------------------------------------------------------------------
# checkpoints/last.pt
# --------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every global RNG state (torch, numpy, python, CUDA), in a form ``torch.load(weights_only=True)`` reads."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate(_to_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(obj: Any) -> Any:
    return tuple(_to_tuple(v) for v in obj) if isinstance(obj, list | tuple) else obj


def checkpoint_state(
    model: BYOL,
    opt: torch.optim.Optimizer,
    scaler: Any,
    step: int,
    epoch: int,
    epoch_proj_std: list[float] | None = None,
    train_s: float = 0.0,
) -> dict[str, Any]:
    """The checkpoint dict: online + target networks, optimiser, grad scaler, step, epoch, RNG states.

    ``epoch_proj_std``: the per-step ``proj_std`` values of the epoch in progress, so that a run resumed
    mid-epoch logs that epoch's mean over all its steps, as an uninterrupted run does. ``train_s``: the training
    seconds so far (without kNN passes and saves), so that a resumed run's ``train_s`` goes on from there.
    """
    return {
        "online": {
            "backbone": model.backbone.state_dict(),
            "projector": model.projector.state_dict(),
            "predictor": model.predictor.state_dict(),
        },
        "target": {"backbone": model.target_backbone.state_dict(), "projector": model.target_projector.state_dict()},
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "step": step,
        "epoch": epoch,
        "rng": rng_state(),
        "epoch_proj_std": [float(v) for v in (epoch_proj_std or [])],
        "train_s": float(train_s),
    }


def load_checkpoint_into(model: BYOL, ckpt: dict[str, Any]) -> None:
    """Restore online and target networks of ``model`` from a ``last.pt`` dict."""
    model.backbone.load_state_dict(ckpt["online"]["backbone"])
    model.projector.load_state_dict(ckpt["online"]["projector"])
    model.predictor.load_state_dict(ckpt["online"]["predictor"])
    model.target_backbone.load_state_dict(ckpt["target"]["backbone"])
    model.target_projector.load_state_dict(ckpt["target"]["projector"])


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint (``last.pt`` or ``prev.pt``), good or not."""
    return (Path(run_dir) / CHECKPOINT).is_file() or (Path(run_dir) / PREVIOUS).is_file()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SHA_SUFFIX)


def _recorded(path: Path) -> str | None:
    """The sha256 recorded beside ``path`` (``sha256sum`` format), or None when there is none readable."""
    try:
        text = _sidecar(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0] if text and re.fullmatch(r"[0-9a-f]{64}", text[0]) else None


def _write_checksum(path: Path, digest: str) -> None:
    atomic_write_text(_sidecar(path), f"{digest}  {path.name}\n")


def _write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new ``.<name>.*.tmp`` beside ``path``, flushed to disk, with ``open()``'s mode."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path


def save_checkpoint(state: dict[str, Any], run_dir: str | Path) -> Path:
    """Write ``state`` as ``checkpoints/last.pt`` with its sha256, keeping the one before as ``prev.pt``.

    Order (see the module docstring): new bytes to a temporary file; ``last.pt`` → ``prev.pt``; ``prev``'s
    checksum; ``last``'s checksum; temporary → ``last.pt``. A kill at any point leaves a checkpoint that
    verifies against a recorded checksum. ``ENOSPC`` becomes ``DiskFull`` naming ``last.pt``.
    """
    run_dir = Path(run_dir)
    last, prev = run_dir / CHECKPOINT, run_dir / PREVIOUS
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    digest = sha256_bytes(data)
    with disk_guard(last, len(data)):
        last.parent.mkdir(parents=True, exist_ok=True)
        tmp = _write_temp(last, data)
        try:
            if last.is_file():
                old = _recorded(last) or sha256_file(last)  # no checksum: a checkpoint of an older version
                os.replace(last, prev)
                _write_checksum(prev, old)
            _write_checksum(last, digest)
            os.replace(tmp, last)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_dir(last.parent)
    return last


@dataclass
class LoadedCheckpoint:
    """A checkpoint that verified and loaded: its dict, its path, and the newer ones that did not."""

    state: dict[str, Any]
    path: Path
    sha256: str
    rejected: list[tuple[Path, str]] = field(default_factory=list)  # (path, why), newest first

    @property
    def fell_back(self) -> bool:
        """Whether a newer checkpoint was rejected (so this one is older than the newest written)."""
        return bool(self.rejected)


def load_checkpoint(
    run_dir: str | Path, map_location: str | torch.device = "cpu", fallback: bool = True
) -> LoadedCheckpoint | None:
    """The newest usable checkpoint of ``run_dir`` (``last.pt``, else ``prev.pt`` when ``fallback``); None if none.

    Usable: its bytes match a recorded sha256 (either checksum file: during a save the previous checkpoint's
    checksum may still sit under the other name) and ``torch.load(weights_only=True)`` reads them. A rejected
    newer checkpoint is logged with its path and reason. Raises ``CheckpointError`` naming every checkpoint
    and why it failed when checkpoints exist but none is usable.
    """
    run_dir = Path(run_dir)
    candidates = [run_dir / CHECKPOINT] + ([run_dir / PREVIOUS] if fallback else [])
    recorded = {d for d in (_recorded(run_dir / CHECKPOINT), _recorded(run_dir / PREVIOUS)) if d}
    rejected: list[tuple[Path, str]] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            rejected.append((path, f"cannot be read: {exc}"))
            continue
        digest = sha256_bytes(data)
        if recorded and digest not in recorded:
            rejected.append((path, f"sha256 {digest[:16]}... matches no recorded checksum ({_sidecar(path).name})"))
            continue
        try:
            state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
            if not isinstance(state, dict) or not {"online", "target", "step"} <= set(state):
                raise ValueError("not a BYOL checkpoint dict (online, target, step)")
        except Exception as exc:  # noqa: BLE001 - any load failure rejects this file, named below
            rejected.append((path, f"torch.load failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))
            continue
        if not recorded:
            log.warning("%s has no %s file (written before checksums): loaded unverified", path, SHA_SUFFIX)
        for bad, why in rejected:
            log.warning("checkpoint %s is unusable (%s); using %s (step %d)", bad, why, path, int(state["step"]))
        return LoadedCheckpoint(state, path, digest, rejected)
    if rejected:
        detail = "; ".join(f"{p}: {why}" for p, why in rejected)
        raise CheckpointError(
            f"no usable checkpoint in {run_dir / CHECKPOINT.parent}: {detail}. Move the file(s) away to start "
            "over from step 0 (or pass --no-resume)"
        )
    return None


def set_aside(path: Path) -> Path:
    """Rename an unusable checkpoint to ``<name>.bad`` (kept for inspection; never loaded or rotated)."""
    bad = path.with_name(path.name + ".bad")
    os.replace(path, bad)
    return bad


def settle_checkpoints(run_dir: str | Path, loaded: LoadedCheckpoint) -> None:
    """After a resume (rank 0): set rejected newer files aside, and give the loaded one a matching checksum file.

    So the next save rotates the good checkpoint to ``prev.pt``, never a bad one; and a checkpoint that
    verified against the other checksum file (a save was cut short) or none (an older version) gets its own.
    """
    for path, _ in loaded.rejected:
        if path.is_file():
            log.warning("set aside the unusable checkpoint %s as %s", path, set_aside(path).name)
    if _recorded(loaded.path) != loaded.sha256:
        with disk_guard(_sidecar(loaded.path), 100):
            _write_checksum(loaded.path, loaded.sha256)


# Temporary names this package's writers use inside a run directory (zoo.io's ``.<name>.*.tmp`` files,
# export's ``.artifact.*`` folders and ``atomic_replace_dir``'s ``.artifact.old-<pid>``).
_TEMP_FILE = re.compile(
    r"\.(last\.pt|prev\.pt|last\.pt\.sha256|prev\.pt\.sha256|metrics\.jsonl|config\.yaml|derived\.json)\..+\.tmp"
)
_TEMP_DIR = re.compile(rf"\.{ARTIFACT}\..+")


def clean_stale_temp(run_dir: str | Path) -> list[Path]:
    """Remove temporary files a killed run of ``run_dir`` left behind (only this package's own names).

    Call it when a run starts, before anything writes: the only writer of a run directory is its run.
    """
    run_dir = Path(run_dir)
    removed: list[Path] = []
    for folder in (run_dir, run_dir / CHECKPOINT.parent):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and not entry.is_symlink() and _TEMP_FILE.fullmatch(entry.name):
                size = entry.stat().st_size
                entry.unlink(missing_ok=True)
            elif folder == run_dir and entry.is_dir() and not entry.is_symlink() and _TEMP_DIR.fullmatch(entry.name):
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
                shutil.rmtree(entry, ignore_errors=True)
            else:
                continue
            log.info("removed %s (%s) left by an interrupted run", entry, _mb(size))
            removed.append(entry)
    return removed

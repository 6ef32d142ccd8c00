"""Atomic file writes, hashing and provenance shared by every stage.

Every file another process may read (checkpoints, artifacts, metric records, caches) is written to a
temporary file in the same directory and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zoo

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "atomic_write_with",
    "DiskFullError",
    "disk_full_error",
    "is_disk_full",
    "atomic_replace_dir",
    "current_umask",
    "fsync_dir",
    "make_temp_dir",
    "read_json",
    "sha256_bytes",
    "sha256_file",
    "stable_hash",
    "code_version",
    "machine_info",
    "utc_now",
    "default_cache_dir",
]


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename into it) to disk; best effort, errors ignored."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where Linux exposes it (``/proc/self/status``).

    Elsewhere it is read the only portable way, by setting it and putting it back at once.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(prefix: str, dir: str | os.PathLike) -> Path:  # noqa: A002 - tempfile's own name
    """``tempfile.mkdtemp`` with the mode an ordinary ``mkdir`` would give (``0o777 & ~umask``).

    ``mkdtemp`` makes 0700 folders whatever the umask; a folder that is renamed into place as an artifact
    or cache must be as readable as any other folder the user creates (shared results, clusters).
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


class DiskFullError(OSError):
    """ENOSPC, said in one line: the file being written, the space it needed and the space left there.

    Built as ``DiskFullError(errno.ENOSPC, message, path)`` so that it pickles like any ``OSError``.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def _size(n: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    while n >= 1024 and len(units) > 1:
        n /= 1024
        units.pop(0)
    return f"{int(n)} B" if units[0] == "B" else f"{n:.1f} {units[0]}"


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk, or a full quota: the same for whoever is writing


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is a full disk (or quota)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError) and cur.errno in NO_SPACE:
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def disk_full_error(path: str | os.PathLike, need: int | None = None, at_least: bool = False) -> DiskFullError:
    """The ``DiskFullError`` for writing ``need`` bytes (or ``at_least`` that many) to ``path``."""
    path = Path(path)
    where = path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = _size(shutil.disk_usage(where).free)
    except OSError:
        free = "unknown"
    needed = "" if need is None else f"needs {'more than ' if at_least else ''}{_size(need)}, "
    return DiskFullError(errno.ENOSPC, f"no space left on device writing {path}: {needed}{free} free there", str(path))


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None], size: int | None = None) -> Path:
    """Call ``writer(tmp_path)`` then rename ``tmp_path`` onto ``path`` (same directory, atomic).

    The file ends with the mode ``open()`` would give it (``0o666 & ~umask``), not ``mkstemp``'s 0600.
    A full disk is a ``DiskFullError`` naming ``path`` and the ``size`` it needed (else the bytes written).
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        writer(tmp_path)
        os.chmod(tmp_path, 0o666 & ~current_umask())
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        written = tmp_path.stat().st_size if tmp_path is not None and tmp_path.exists() else 0
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE and not isinstance(exc, DiskFullError):
            raise disk_full_error(path, size if size is not None else written, at_least=size is None) from exc
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda p: p.write_bytes(data), size=len(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (keys sorted) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (load it back with ``weights_only=True``)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_replace_dir(tmp_dir: str | os.PathLike, final_dir: str | os.PathLike) -> Path:
    """Move a fully written ``tmp_dir`` to ``final_dir``, replacing any previous directory there."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)
    fsync_dir(final_dir.parent)
    return final_dir


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, raising an error that names the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a JSON file at {path}, found nothing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short sha256 of the canonical JSON form of ``obj`` (sorted keys): identity of a recipe or config."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def code_version() -> dict[str, Any]:
    """Package version plus git commit and dirty flag of the checkout this code runs from (if any).

    Read once per process (at first use), so every record a long run writes names the same commit even
    if the checkout changes underneath it.
    """
    return dict(_code_version_once())


@functools.cache
def _code_version_once() -> dict[str, Any]:
    repo = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"package": zoo.__version__, "git_sha": None, "git_dirty": None}
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            info["git_sha"] = sha.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def machine_info() -> dict[str, Any]:
    """CPU / GPU model, core count and library versions: which machine produced a number."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["gpu_count"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def default_cache_dir() -> Path:
    """Where generated data and feature caches live: ``$BYOL_BENCH_CACHE`` or ``~/.cache/byol-bench``."""
    env = os.environ.get("BYOL_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "byol-bench"

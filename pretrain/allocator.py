"""glibc ``malloc`` settings for CPU training: keep freed activation memory in the process.

Why. On CPU, PyTorch allocates every activation and gradient with ``malloc``. glibc serves blocks above its
mmap threshold with fresh ``mmap`` calls and returns them with ``munmap`` when they are freed, and it trims the
heap top back to the OS whenever more than its trim threshold is free. A training step frees and re-allocates
the same large buffers hundreds of times, so every step pays for page faults on zeroed pages and for the
system calls. Raising the mmap threshold to its maximum (32 MiB on 64-bit) and never trimming keeps those
pages mapped: the next step reuses them. For ResNet-18 at 32 px, batch 128, 2 threads
(``benchmarks/perf/pretrain_throughput.py``) that was +8–9 % images/s on this project's 2-core Intel VM (7
alternating pairs, through the environment variables named below) and ≈ 7 % on its AMD VM (ratio to lightly's loop
1.37× untuned, 1.41–1.46× tuned). It is the same as setting ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_`` in the environment before Python starts,
which works for any CPU training loop.

The cost: the process's resident memory no longer shrinks after its peak (freed memory stays mapped for
reuse). The settings are process-wide and last until the process exits; ``run.malloc_tuning: false`` leaves
the allocator alone. Nothing here changes what is computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["GLIBC_TUNING", "tune_glibc_malloc"]

# mallopt(3) parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# name -> (mallopt parameter, value); the mmap threshold's ceiling is 4 MiB × sizeof(long) = 32 MiB on 64-bit
GLIBC_TUNING: dict[str, tuple[int, int]] = {
    "M_MMAP_THRESHOLD": (_M_MMAP_THRESHOLD, 32 * 2**20),
    "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, 2**31 - 1),
    "M_TOP_PAD": (_M_TOP_PAD, 256 * 2**20),
}


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None  # musl and others: no mallopt, nothing to tune
    return libc


def tune_glibc_malloc() -> dict[str, bool] | None:
    """Apply ``GLIBC_TUNING`` with ``mallopt``; per setting whether glibc accepted it, or None without glibc."""
    libc = _glibc()
    if libc is None:
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return {name: libc.mallopt(param, value) == 1 for name, (param, value) in GLIBC_TUNING.items()}

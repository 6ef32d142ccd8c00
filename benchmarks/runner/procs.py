"""Child processes that live no longer than the runner process that started them, and stop when it is asked to.

Multi-GPU pretraining is a ``torchrun`` child of the runner's worker (or of the submitit job). Run with a plain
``subprocess.run``, a worker killed by its runner's parent-death signal left torchrun and its ranks re-parented
to PID 1, training on (review of issue 24). ``run_child`` instead:

* arms ``PR_SET_PDEATHSIG`` (SIGTERM) in the child between fork and exec, so the kernel stops the child when
  its parent dies, however it dies (kill -9 included); torchrun passes SIGTERM on to its ranks, which finish
  their step and write a checkpoint;
* while the child runs, turns this process's stop signals (SIGTERM, SIGUSR1, SIGUSR2) into a SIGTERM to the
  child (torchrun passes only SIGTERM, SIGINT, SIGHUP and SIGQUIT on to its ranks; USR1/USR2 would end it at
  once, leaving the ranks behind), waits for the child to exit, and returns which signal arrived, so the
  caller can then end as that signal would have ended it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["STOP_SIGNALS", "run_child", "parent_death_preexec"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def parent_death_preexec(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to send ``sig`` to the child when this process dies (Linux).

    ``prctl`` is looked up here, in the parent, so the child runs one foreign call between fork and exec.
    The child then checks that its parent is still this process (it may have died before the call); if not it
    exits at once. Returns None where there is no ``prctl``.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return preexec


def run_child(
    cmd: Sequence[str], env: dict[str, str] | None = None, *, forward_as: int = signal.SIGTERM
) -> tuple[int, int | None]:
    """Run ``cmd`` to its end; returns ``(return code, the stop signal this process received or None)``.

    A stop signal received meanwhile is sent on to the child as ``forward_as`` and the child is waited for
    (it checkpoints and exits); the caller decides how to end. Anything else that interrupts the wait
    (Ctrl-C, an exception) terminates the child before it propagates.
    """
    proc = subprocess.Popen(list(cmd), env=env, preexec_fn=parent_death_preexec())  # noqa: PLW1509 - see its doc
    received: list[int] = []

    def on_stop(signum: int, frame: Any) -> None:
        received.append(signum)
        if proc.poll() is None:
            try:
                proc.send_signal(forward_as)
            except ProcessLookupError:
                pass

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():  # handlers can only be set from the main thread
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, on_stop)
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for odd platforms
                continue
    except BaseException:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    return rc, (received[0] if received else None)

"""Where log output goes: libraries' logs and warnings to each job's log file, the console kept quiet.

The console shows progress bars, one line per finished job and the leaderboard. Everything else (detectron2's
model, weight-loading and evaluation logs, pycocotools' prints, library warnings such as torch's
``torch.jit.script`` FutureWarning raised when detectron2 imports fvcore) goes through ``logging``:

- ``setup_console(verbose)`` — called once by the ``byol-bench`` entry point — routes warnings into
  logging (``logging.captureWarnings``) and adds one stderr handler: WARNING and above of our own loggers,
  or, with ``-v``, every record at INFO and above, libraries' included.
- ``job_log(path)`` wraps one job (a runner job, one ``byol-bench eval --out``): every record at INFO and
  above goes to ``path``; library loggers are set to INFO (which also stops detectron2's ``DefaultTrainer``
  from installing its own stdout handler); warnings raised inside are collected (``warnings.catch_warnings``)
  and logged there; what libraries ``print`` (pycocotools) is redirected (``contextlib.redirect_stdout``)
  into the ``stdout`` logger. A library logger that detectron2's ``setup_logger`` cut off from the root
  (``propagate=False`` plus its own stdout handler) is reconnected for the job. All of it is undone when the
  job ends.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LIBRARY_LOGGERS", "StderrHandler", "setup_console", "job_log"]

# loggers whose INFO output is a library's, not ours: hidden on the console unless -v
LIBRARY_LOGGERS = ("detectron2", "d2", "fvcore", "iopath", "py.warnings", "stdout")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _is_library(record: logging.LogRecord) -> bool:
    return any(record.name == n or record.name.startswith(n + ".") for n in LIBRARY_LOGGERS)


class _ConsoleFilter(logging.Filter):
    """Without -v: only our own warnings and errors reach the console."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        return self.verbose or (record.levelno >= logging.WARNING and not _is_library(record))


class StderrHandler(logging.StreamHandler):
    """A stream handler bound to whatever ``sys.stderr`` is when a record is emitted (not when it was made)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


def setup_console(verbose: bool = False) -> logging.Handler:
    """The process's console logging (idempotent: a second call replaces the first's handler)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_byol_bench_console", False)]:
        root.removeHandler(h)
    handler = StderrHandler()
    handler._byol_bench_console = True  # type: ignore[attr-defined]
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    handler.addFilter(_ConsoleFilter(verbose))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)  # warnings outside a job (imports) become 'py.warnings' records
    return handler


class _LineLogger(io.TextIOBase):
    """A text stream that logs each complete line it is written (for ``redirect_stdout``)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.buf = logger, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.buf.strip():
            self.logger.info(self.buf.rstrip())
        self.buf = ""


@contextlib.contextmanager
def job_log(path: str | Path | None) -> Iterator[Path | None]:
    """Send every log record, warning and library ``print`` of the enclosed job to ``path`` (appended).

    ``path=None``: the same routing without a file (the records reach the console only with ``-v``).
    """
    root = logging.getLogger()
    handler: logging.Handler | None = None
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    # each library logger's level, propagation and handlers, given back when the job ends. detectron2's
    # setup_logger() (DefaultTrainer, default_setup, a user's script) turns propagation off on 'detectron2'
    # and gives it its own stdout handler: for the job, its records go through the root again
    libraries = {n: logging.getLogger(n) for n in LIBRARY_LOGGERS}
    saved = {n: (lg.level, lg.propagate, list(lg.handlers)) for n, lg in libraries.items()}
    root_level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    for lg in libraries.values():
        lg.setLevel(logging.INFO)
        lg.propagate = True
        for h in list(lg.handlers):
            lg.removeHandler(h)
    stdout = _LineLogger(logging.getLogger("stdout"))
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(stdout):
            warnings.simplefilter("default")
            try:
                yield path
            finally:
                stdout.flush()
                for w in caught:
                    logging.getLogger("py.warnings").warning(
                        warnings.formatwarning(w.message, w.category, w.filename, w.lineno).rstrip()
                    )
    finally:
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(root_level)
        for name, (level, propagate, handlers) in saved.items():
            lg = libraries[name]
            lg.setLevel(level)
            lg.propagate = propagate
            for h in handlers:
                lg.addHandler(h)

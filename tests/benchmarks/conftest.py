import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """``$BENCH_FAKE_LOG`` plus a PYTHONPATH that lets spawned workers import ``fakes``."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("BENCH_FAKE_LOG", str(log))
    paths = [str(HERE), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    if str(HERE) not in sys.path:
        monkeypatch.syspath_prepend(str(HERE))
    return log

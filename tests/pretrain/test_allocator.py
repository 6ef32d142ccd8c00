"""glibc malloc tuning for CPU training: applied, observable in the allocator, switchable, recorded."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from pretrain_tiny import tiny_config

from pretrain.config import RUN_CONTROL_KEYS
from zoo.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# In a fresh process: malloc 1 MiB (above glibc's default 128 KiB mmap threshold, below the tuned 32 MiB) and
# report how many chunks glibc then serves with mmap (mallinfo2().hblks), with or without the tuning first.
PROBE = """
import ctypes, json, sys
from pretrain.allocator import tune_glibc_malloc
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
applied = tune_glibc_malloc() if sys.argv[1] == "on" else None
before = libc.mallinfo2().hblks
ptr = libc.malloc(1 << 20)
print(json.dumps({"applied": applied, "mmapped_chunks": libc.mallinfo2().hblks - before}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@glibc
def test_tuning_moves_mid_sized_blocks_from_mmap_to_the_heap():
    off, on = _probe("off"), _probe("on")
    assert off["applied"] is None and off["mmapped_chunks"] == 1  # glibc's default: a fresh mmap per 1 MiB block
    assert on["applied"] == {"M_MMAP_THRESHOLD": True, "M_TRIM_THRESHOLD": True, "M_TOP_PAD": True}
    assert on["mmapped_chunks"] == 0  # tuned: served from the heap, reused after free


def test_malloc_tuning_is_a_validated_run_control_key():
    assert tiny_config().run.malloc_tuning is True  # the default
    assert tiny_config("run.malloc_tuning=false").run.malloc_tuning is False
    assert "run.malloc_tuning" in RUN_CONTROL_KEYS  # it changes speed, not what is computed: resume may differ
    with pytest.raises(ConfigError, match="run.malloc_tuning"):
        tiny_config("run.malloc_tuning=sometimes")


@glibc
@pytest.mark.slow
@pytest.mark.parametrize("setting", ["true", "false"])
def test_the_trainer_records_whether_it_tuned_malloc(tmp_path, setting):
    code = (
        "import sys; sys.path.insert(0, 'tests/pretrain'); from pretrain_tiny import tiny_config; "
        "from pretrain.train import train; "
        f"train(tiny_config('run.knn_every=0', 'run.malloc_tuning={setting}'), sys.argv[1])"
    )  # its own process: the settings are process-wide
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], check=True, cwd=REPO, env=env)
    recorded = json.loads((tmp_path / "run" / "derived.json").read_text())["malloc_tuning"]
    if setting == "true":
        assert recorded == {"M_MMAP_THRESHOLD": True, "M_TRIM_THRESHOLD": True, "M_TOP_PAD": True}
    else:
        assert recorded is None

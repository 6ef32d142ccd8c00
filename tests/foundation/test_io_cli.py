import json
import os
import subprocess
import sys

import pytest

from benchmarks.cli import main
from zoo.io import atomic_write_json, atomic_write_with, read_json, stable_hash


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "rec.json"
    atomic_write_json(path, {"a": 1})

    def broken(tmp):
        tmp.write_text('{"a": 2')  # half-written
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write_with(path, broken)
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["rec.json"]


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_json(tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_cli_lists_datasets(capsys):
    assert main(["datasets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["digits-m"]["sizes"] == {"train": 1078, "val": 359, "test": 360}


def test_cli_unknown_command_and_help(capsys):
    assert main([]) == 0
    assert "pretrain" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["frobnicate"])


def test_console_script_runs_baseline(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "byol-bench")
    out = subprocess.run(
        [exe, "baseline", "random-init", "--out", str(tmp_path / "ri"), "arch=resnet18", "seed=2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "ri" / "meta.json").read_text())
    assert meta["method"] == "random-init" and meta["seed"] == 2
    bad = subprocess.run(
        [exe, "baseline", "random-init", "--out", str(tmp_path / "x"), "arch=resnet7"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "resnet7" in bad.stderr

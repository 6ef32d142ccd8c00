"""The checkpoint format on its own (no training): checksums, rotation, a save cut short anywhere, torn logs."""

from __future__ import annotations

import logging
import os

import pytest
import torch

import pretrain.checkpoint as C
from pretrain.checkpoint import CheckpointError, clean_stale_temp, load_checkpoint, read_metrics, save_checkpoint


def _state(step: int) -> dict:
    return {"online": {"w": torch.full((64,), float(step))}, "target": {}, "step": step}


class Killed(BaseException):
    pass


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, None])
def test_a_save_cut_short_anywhere_leaves_a_checkpoint_that_verifies(tmp_path, monkeypatch, kill_at):
    save_checkpoint(_state(1), tmp_path)
    save_checkpoint(_state(2), tmp_path)
    calls = []
    real = os.replace

    def replace(src, dst):  # the n-th rename of the next save is where the process dies
        calls.append(src)
        if len(calls) == kill_at:
            raise Killed
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    if kill_at is None:
        save_checkpoint(_state(3), tmp_path)
    else:
        with pytest.raises(Killed):
            save_checkpoint(_state(3), tmp_path)
    monkeypatch.setattr(os, "replace", real)
    assert kill_at is not None or len(calls) == 4  # the save has four renames: each one was tried
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded.state["step"] in ((2,) if kill_at else (3,))
    assert not loaded.rejected
    C.settle_checkpoints(tmp_path, loaded)
    save_checkpoint(_state(4), tmp_path)  # and the run goes on: last and prev both verify afterwards
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"garbage")
    again = load_checkpoint(tmp_path)
    assert again is not None and again.path.name == "prev.pt" and again.state["step"] == loaded.state["step"]


def test_both_checkpoints_bad_raises_naming_both(tmp_path):
    save_checkpoint(_state(1), tmp_path)
    save_checkpoint(_state(2), tmp_path)
    for name in ("last.pt", "prev.pt"):
        path = tmp_path / "checkpoints" / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert str(tmp_path / "checkpoints" / "last.pt") in str(info.value)
    assert str(tmp_path / "checkpoints" / "prev.pt") in str(info.value)
    with pytest.raises(CheckpointError, match="last.pt"):  # export: no fallback, the path named
        load_checkpoint(tmp_path, fallback=False)


def test_checksum_file_is_sha256sum_format(tmp_path):
    import hashlib

    save_checkpoint(_state(1), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    digest, name = (tmp_path / "checkpoints" / "last.pt.sha256").read_text().split()
    assert name == "last.pt" and digest == hashlib.sha256(last.read_bytes()).hexdigest()


def test_read_metrics_stops_at_a_torn_line(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "lo')
    with caplog.at_level(logging.WARNING, logger="pretrain"):
        assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    assert f"{path} line 3" in caplog.text and "reading stops at line 2" in caplog.text


def test_clean_stale_temp_removes_only_our_names(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    ours = [ckpt / ".last.pt.ab12_x.tmp", ckpt / ".last.pt.sha256.zz9.tmp", tmp_path / ".metrics.jsonl.q1.tmp"]
    theirs = [ckpt / "last.pt", tmp_path / ".notes.tmp", tmp_path / "job.log", tmp_path / ".last.pt.x.tmp.keep"]
    for p in ours + theirs:
        p.write_text("x")
    (tmp_path / ".artifact.k3j2" / "a").mkdir(parents=True)
    (tmp_path / "artifact").mkdir()
    removed = clean_stale_temp(tmp_path)
    assert sorted(removed) == sorted([*ours, tmp_path / ".artifact.k3j2"])
    assert all(p.exists() for p in theirs) and (tmp_path / "artifact").is_dir()

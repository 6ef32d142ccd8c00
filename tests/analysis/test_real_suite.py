"""``byol-bench interpret --real-suite``: every backbone is measured at the input size its own kNN record used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks.shapes_interpretability as si
from downstream.analysis.interpret import InterpretConfig


def _knn_record(folder: Path, variant: str, seed: int, size: int) -> None:
    rec = {
        "evaluator": "knn",
        "metrics": {"top1_k20": 0.8},
        "benchmark": {"variant": variant, "seed": seed},
        "artifact": {"path": f"runs/{variant}{seed}/artifact", "sha256": f"sha-{variant}-{seed}"},
        "dataset": {"name": "fashion-mnist", "options": {"image_size": size}},
    }
    (folder / f"{variant}-{seed}.json").write_text(json.dumps(rec))


def _suite(tmp_path: Path, rows: list[tuple[str, int, int]]) -> Path:
    records = tmp_path / "suite" / "records"
    records.mkdir(parents=True)
    for variant, seed, size in rows:
        _knn_record(records, variant, seed, size)
    return tmp_path / "suite"


def test_each_backbone_is_measured_at_its_own_size(tmp_path, monkeypatch):
    # "byol-48px" sorts before "byol": the old code measured every backbone at the first record's 48 px
    rows = [("byol-48px", 0, 48), ("byol", 0, 32), ("byol", 1, 32), ("random-init-48px", 0, 48)]
    suite = _suite(tmp_path, rows)
    calls = []

    def fake_measure(items, out, cfg, *, log, dataset_options, records_dir):
        calls.append(({name for name, _, _ in items}, dataset_options.image_size, records_dir))
        return {name: {} for name, _, _ in items}

    monkeypatch.setattr(si, "measure_backbones", fake_measure)
    groups = si._real_suite(str(suite), tmp_path / "out", InterpretConfig(), print)
    assert [g["image_size"] for g in groups] == [32, 48]
    assert [{b.name for b in g["backbones"]} for g in groups] == [
        {"byol.s0", "byol.s1"},
        {"byol-48px.s0", "random-init-48px.s0"},
    ]
    assert calls == [
        ({"byol.s0", "byol.s1"}, 32, tmp_path / "out" / "records" / "fashion-mnist" / "32px"),
        ({"byol-48px.s0", "random-init-48px.s0"}, 48, tmp_path / "out" / "records" / "fashion-mnist" / "48px"),
    ]


def test_a_backbone_with_two_sizes_is_an_error_naming_it(tmp_path):
    suite = _suite(tmp_path, [("byol", 0, 32)])
    (suite / "records" / "byol-0.json").rename(suite / "records" / "a.json")
    _knn_record(suite / "records", "byol", 0, 48)  # a second record: the same backbone at another size
    with pytest.raises(ValueError, match=r"\('byol', 0\) has kNN records at (32|48) and (48|32) px"):
        si._real_suite(str(suite), tmp_path / "out", InterpretConfig(), print)


def test_a_torn_record_is_an_error_naming_it_not_a_missing_backbone(tmp_path):
    # the old code skipped unparsable JSON: the report lost ('byol', 1) and the command exited 0
    suite = _suite(tmp_path, [("byol", 0, 32), ("byol", 1, 32)])
    torn = suite / "records" / "byol-1.json"
    torn.write_text(torn.read_text()[:40])
    with pytest.raises(ValueError, match=r"byol-1\.json: not valid JSON"):
        si.collect_backbones(suite)


def test_a_record_changed_after_it_was_sealed_is_refused(tmp_path):
    from zoo.records import write_record

    suite = _suite(tmp_path, [("byol", 0, 32)])
    path = suite / "records" / "byol-0.json"
    write_record(path, json.loads(path.read_text()))
    path.write_text(path.read_text().replace("0.8", "0.9"))
    with pytest.raises(ValueError, match=r"byol-0\.json: does not match its record_sha256"):
        si.collect_backbones(suite)
    assert [b.metrics["knn.top1_k20"] for b in si.collect_backbones(_suite(tmp_path / "b", [("byol", 0, 32)]))] == [0.8]

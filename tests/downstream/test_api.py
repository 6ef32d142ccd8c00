"""evaluate(): the metric record, the frozen check, selection on val only, and clear errors."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from downstream.api import FrozenCheckError, evaluate
from downstream.features import get_features
from downstream.knn import knn_scores, topk_accuracy
from downstream.registry import EVALUATORS, EvaluatorError, register_evaluator
from zoo.datasets import DATASETS, DatasetOptions, load_dataset, register_dataset

PIX8 = DatasetOptions(image_size=8)  # raw pixels at 8 px: 192-d features, fast


@pytest.fixture
def temp_evaluator():
    names = []

    def make(name, fn, frozen=True):
        @dataclass(frozen=True)
        class Cfg:
            pass

        register_evaluator(name, config=Cfg, task="classification", frozen=frozen, selection_rule="none")(fn)
        names.append(name)

    yield make
    for n in names:
        EVALUATORS.pop(n, None)


@pytest.fixture
def temp_dataset():
    names = []

    def make(name, builder):
        register_dataset(name, task="classification", description="test", embedded=True)(builder)
        names.append(name)

    yield make
    for n in names:
        DATASETS.pop(n, None)


def test_knn_record_schema_and_values(tmp_path):
    out = tmp_path / "rec" / "knn.json"
    rec = evaluate("raw-pixels", "knn", "digits", dataset_options=PIX8, cache_dir=tmp_path / "c", out=out, seed=3)
    written = json.loads(out.read_text())
    # the file is the returned record plus a checksum of it (zoo.records)
    from zoo.records import CHECKSUM_KEY, record_checksum

    assert written.pop(CHECKSUM_KEY) == record_checksum(rec)
    assert written == json.loads(json.dumps(rec))
    assert set(rec) >= {
        "schema_version", "evaluator", "metrics", "artifact", "dataset", "config", "seed", "selection_rule",
        "selection", "code_version", "machine", "wall_time_s", "created",
    }  # fmt: skip
    assert rec["schema_version"] == 1 and rec["evaluator"] == "knn" and rec["seed"] == 3
    assert set(rec["metrics"]) == {
        "top1_k20", "top5_k20", "top1_k200", "top5_k200", "map_at_r", "recall_at_1", "recall_at_5", "recall_at_10",
    }  # fmt: skip
    assert all(isinstance(v, float) for v in rec["metrics"].values())
    assert rec["artifact"]["path"] == "raw-pixels" and len(rec["artifact"]["sha256"]) == 64
    assert rec["artifact"]["meta"]["feature_dim"] == 192
    assert rec["dataset"]["name"] == "digits" and rec["dataset"]["splits"] == {"train": 1078, "test": 360}
    assert rec["dataset"]["options"]["image_size"] == 8 and rec["dataset"]["recipe"]["kind"] == "digits"
    assert rec["config"]["k"] == [20, 200] and rec["config"]["temperature"] == 0.07
    assert "val" in rec["selection_rule"] and rec["code_version"]["git_sha"]
    # the numbers are the kNN of the cached features, not something else
    tr = load_dataset("digits", "train", PIX8)
    te = load_dataset("digits", "test", PIX8)
    from zoo.baselines import to_normalized_tensor

    bank = to_normalized_tensor(tr.images, tr.mean, tr.std).flatten(1)
    q = to_normalized_tensor(te.images, te.mean, te.std).flatten(1)
    s = knn_scores(bank, torch.from_numpy(tr.targets), q, 10, [20], 0.07)[20]
    assert rec["metrics"]["top1_k20"] == pytest.approx(topk_accuracy(s, torch.from_numpy(te.targets))[1])
    assert 0.5 < rec["metrics"]["top1_k20"] <= 1.0


def test_knn_grid_selects_on_val(tmp_path):
    rec = evaluate(
        "raw-pixels", "knn", "digits", dataset_options=PIX8, cache_dir=tmp_path / "c",
        overrides=["grid=true", "grid_k=[1,10]", "grid_temperature=[0.05,1.0]", "retrieval=false"],
    )  # fmt: skip
    sel = rec["selection"]
    assert sel["split"] == "val" and rec["dataset"]["splits"] == {"train": 1078, "test": 360, "val": 359}
    assert rec["metrics"]["k_selected"] == sel["k"] and rec["metrics"]["temperature_selected"] == sel["temperature"]
    # recompute the val grid by hand: the selected pair has the best val top-1
    from downstream.artifacts import resolve_artifact
    from downstream.context import EvalContext

    ctx = EvalContext(
        resolve_artifact("raw-pixels", 8), "digits", PIX8, 0, torch.device("cpu"), tmp_path, tmp_path / "c"
    )
    bank, by = get_features(ctx, "train")
    val, vy = get_features(ctx, "val")
    accs = {
        (k, t): topk_accuracy(knn_scores(bank, torch.from_numpy(by), val, 10, [k], t)[k], torch.from_numpy(vy))[1]
        for t in (0.05, 1.0)
        for k in (1, 10)
    }
    assert rec["metrics"]["val_top1_selected"] == pytest.approx(max(accs.values()))
    assert accs[(sel["k"], sel["temperature"])] == pytest.approx(max(accs.values()))


def test_linear_fast_chooses_l2_on_val_never_on_test(tmp_path, temp_dataset):
    over = ["l2_steps=5", "l2_min=1e-4", "l2_max=1e2"]
    rec = evaluate("raw-pixels", "linear", "digits", dataset_options=PIX8, cache_dir=tmp_path / "c", overrides=over)
    m = rec["metrics"]
    assert set(m) == {"top1", "top5", "val_top1", "l2"}
    assert rec["selection"]["split"] == "val" and rec["selection"]["l2"] == m["l2"]
    assert m["val_top1"] == max(rec["selection"]["val_top1_per_l2"])
    assert 0.8 < m["top1"] <= 1.0

    # the same data with test labels scrambled: identical choice and val score, different test score
    def scrambled(split, opts):
        s = load_dataset("digits", split, opts)
        if split == "test":
            s = dataclasses.replace(s, targets=np.random.default_rng(0).permutation(s.targets), name="digits-scr")
        return s

    temp_dataset("digits-scrambled-test", scrambled)
    rec2 = evaluate(
        "raw-pixels", "linear", "digits-scrambled-test", dataset_options=PIX8, cache_dir=tmp_path / "c", overrides=over
    )
    assert rec2["selection"]["l2"] == m["l2"] and rec2["metrics"]["val_top1"] == m["val_top1"]
    assert rec2["metrics"]["top1"] < 0.5


def test_linear_standard_and_low_shot(tiny_artifact, tmp_path):
    rec = evaluate(
        tiny_artifact, "linear", "digits", cache_dir=tmp_path / "c",
        overrides=["protocol=standard", "epochs=2", "batch_size=128"],
    )  # fmt: skip
    assert set(rec["metrics"]) == {"top1", "top5", "val_top1", "train_loss"}
    assert rec["selection"]["epoch"] == 2 and rec["metrics"]["top1"] > 0.2  # 10 classes: chance is 0.1
    low = evaluate(
        "raw-pixels", "linear", "digits", dataset_options=PIX8, cache_dir=tmp_path / "c",
        overrides=["shots_per_class=5", "draws=3", "l2_steps=4", "l2_min=1e-3", "l2_max=1"],
    )  # fmt: skip
    m = low["metrics"]
    assert m["draws"] == 3 and m["train_size"] == 50
    assert len(low["selection"]["per_draw"]["top1"]) == 3
    assert m["top1_mean"] == pytest.approx(np.mean(low["selection"]["per_draw"]["top1"]))
    assert m["top1_std"] > 0 and m["top1_mean"] < 0.98


def test_frozen_check_catches_parameter_and_bn_changes(tiny_artifact, tmp_path, temp_evaluator):
    def bump_weight(ctx, cfg):
        next(ctx.artifact.model.parameters()).add_(1e-3)
        return {"x": 1.0}

    def train_mode_forward(ctx, cfg):
        ctx.artifact.model.train()
        ctx.artifact.model(torch.randn(4, 3, 16, 16))  # BN running stats move
        return {"x": 1.0}

    def honest(ctx, cfg):
        ctx.artifact.model(torch.randn(4, 3, 16, 16))
        return {"x": 1.0}

    temp_evaluator("test-bump", bump_weight)
    temp_evaluator("test-trainmode", train_mode_forward)
    temp_evaluator("test-honest", honest)
    with pytest.raises(FrozenCheckError, match="conv1.weight"):
        evaluate(tiny_artifact, "test-bump", "digits", cache_dir=tmp_path)
    with pytest.raises(FrozenCheckError, match="running_mean"):
        evaluate(tiny_artifact, "test-trainmode", "digits", cache_dir=tmp_path)
    assert evaluate(tiny_artifact, "test-honest", "digits", cache_dir=tmp_path)["metrics"] == {"x": 1.0}


def test_clear_errors(tmp_path, temp_dataset, temp_evaluator):
    with pytest.raises(EvaluatorError, match="unknown evaluator 'nope'.*knn.*linear"):
        evaluate("raw-pixels", "nope", "digits", cache_dir=tmp_path)
    with pytest.raises(EvaluatorError, match="classification.*detection"):
        evaluate("raw-pixels", "knn", "digits-det", cache_dir=tmp_path)

    def unlabelled(split, opts):
        s = load_dataset("digits", split, opts)
        return dataclasses.replace(s, targets=np.full_like(s.targets, -1), name="unl")

    temp_dataset("digits-unlabelled", unlabelled)
    with pytest.raises(EvaluatorError, match="knn needs labels.*'train'.*digits-unlabelled"):
        evaluate("raw-pixels", "knn", "digits-unlabelled", dataset_options=PIX8, cache_dir=tmp_path)

    from zoo.config import ConfigError

    with pytest.raises(ConfigError, match="unknown key 'kk'"):
        evaluate("raw-pixels", "knn", "digits", overrides=["kk=3"], cache_dir=tmp_path)

    temp_evaluator("test-badmetric", lambda ctx, cfg: {"acc": "high"})
    with pytest.raises(EvaluatorError, match="metric 'acc' is str"):
        evaluate("raw-pixels", "test-badmetric", "digits", cache_dir=tmp_path)

"""Suite validation: a bad key is an error that names it; the shipped suites load and plan."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from benchmarks.runner.suite import load_suite
from zoo.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
GOOD = """
name: toy
variants:
  byol: {kind: pretrain, config: byol.yaml}
  random-init: {kind: random-init}
evaluations:
  - {evaluator: knn, dataset: digits-m}
"""


def load(tmp_path, extra=None, text=GOOD):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    return load_suite(path, extra)


def test_good_suite_defaults(tmp_path):
    s = load(tmp_path)
    assert s.seeds == [0] and s.executor.kind == "local" and s.default_results_dir() == Path("outputs/toy")
    assert list(s.variants) == ["byol", "random-init"] and s.evaluations[0].group == "knn"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("variants.byol.overide=[a=1]", "variants.byol.overide"),
        ("variants.byol.kind=pretrian", "variants.byol.kind"),
        ("variants.byol.config=null", "variants.byol.config"),
        ("variants.mine={kind: artifact}", "variants.mine.path"),
        ("variants.byol.overrides=[epochs]", "variants.byol.overrides[0]"),
        ("evaluations.0.evaluater=knn", "evaluations[0].evaluater"),
        ("evaluations.0.variants=[byol, nope]", "evaluations[0].variants[1]"),
        ("seeds=[0, 0]", "seeds"),
        ("seeds=zero", "seeds"),
        ("executor.workers=0", "executor.workers"),
        ("executor.kind=cloud", "executor.kind"),
        ("leaderboard.baseline=supervised", "leaderboard.baseline"),
        ("leaderboard.metrics=[top1]", "leaderboard.metrics[0]"),
        ("expected=[[byol, knn.top1, '>']]", "expected[0]"),
        ("expected=[[byol, knn.top1, '!=', 1.0]]", "expected[0]"),
        ("expected=[[byol, knn.top1, '>', supervised]]", "expected[0]"),
        ("expected=[[byol, linear.top1, 0.5, 0.1]]", "expected[0]"),
        ("typo_key=1", "typo_key"),
        ("variants.byol.dataset_options={image_sise: 48}", "variants.byol.dataset_options.image_sise"),
        ("evaluations.0.dataset_options={rot: /data}", "evaluations[0].dataset_options.rot"),
    ],
)
def test_bad_key_is_named(tmp_path, override, key):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, [override])
    assert key in str(exc.value), str(exc.value)


def test_duplicate_group_needs_a_name(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluations\[1\].name"):
        load(tmp_path, ["evaluations=[{evaluator: knn, dataset: a}, {evaluator: knn, dataset: b}]"])
    s = load(tmp_path, ["evaluations=[{evaluator: knn, dataset: a}, {evaluator: knn, dataset: b, name: knn-b}]"])
    assert [e.group for e in s.evaluations] == ["knn", "knn-b"]


@pytest.mark.parametrize("name", ["quickstart", "ablation-predictor-momentum"])
def test_shipped_suites_load_and_plan(name):
    suite = load_suite(REPO / "benchmarks" / "suites" / f"{name}.yaml")
    assert suite.name == name and suite.scale
    pytest.importorskip("pretrain.config")
    pytest.importorskip("downstream.api")
    from benchmarks.runner.plan import make_plan

    plan = make_plan(suite)
    assert not [j.plan_error for j in plan.jobs if j.plan_error]
    # one artifact entry per variant and seed (none for raw pixels), plus one per evaluation that applies to it
    expected = sum(
        len(v.seeds or suite.seeds)
        * ((v.kind != "raw-pixels") + sum(e.variants is None or key in e.variants for e in suite.evaluations))
        for key, v in suite.variants.items()
    )
    assert len(plan.entries) == expected


def test_execution_keys_do_not_change_identity():
    pytest.importorskip("pretrain.config")
    from benchmarks.runner.plan import make_plan

    path = REPO / "benchmarks" / "suites" / "quickstart.yaml"
    base = make_plan(load_suite(path))
    quiet = make_plan(load_suite(path, ["pretrain_overrides=[run.progress=true, run.log_every=1]"]))
    longer = make_plan(load_suite(path, ["variants.byol.overrides=[run.epochs=7]"]))
    ids = lambda plan, variant: {j.id for j in plan.jobs if j.variant == variant}  # noqa: E731
    assert ids(quiet, "byol") == ids(base, "byol")
    assert ids(longer, "byol").isdisjoint(ids(base, "byol"))
    assert ids(longer, "random-init") == ids(base, "random-init")


def test_duplicate_variant_key_is_refused(tmp_path):
    """Issue 24.1: a second ``byol:`` must not silently replace the first (its row would show the other's number)."""
    text = """
    name: toy
    variants:
      byol: {kind: pretrain, config: byol.yaml}
      random-init: {kind: random-init}
      byol: {kind: random-init}
    evaluations:
      - {evaluator: knn, dataset: digits-m}
    """
    with pytest.raises(ConfigError, match=r"duplicate key 'byol' on line 4 and line 6") as exc:
        load(tmp_path, text=text)
    assert str(tmp_path / "s.yaml") in str(exc.value)


def test_variant_dataset_options_reach_its_jobs_and_only_its_jobs(tmp_path):
    """A variant's ``dataset_options`` lie over each evaluation's: raw pixels stated at 32 px plan the very job
    (same id, same options) that an evaluation stating 32 px planned, while the artifacts keep their own size."""
    pytest.importorskip("pretrain.config")
    from benchmarks.runner.plan import make_plan

    path = REPO / "benchmarks" / "suites" / "quickstart.yaml"
    at_32 = make_plan(load_suite(path, ["evaluations.0.dataset_options={image_size: 32}"]))
    own = make_plan(load_suite(path, ["variants.raw-pixels.dataset_options={image_size: 32}"]))
    knn = lambda plan, variant: [j for j in plan.jobs if j.variant == variant and j.group == "knn"]  # noqa: E731
    assert [j.id for j in knn(own, "raw-pixels")] == [j.id for j in knn(at_32, "raw-pixels")]
    assert [j.spec["dataset_options"] for j in knn(own, "raw-pixels")] == [{"image_size": 32}]
    assert all(j.spec["dataset_options"] == {} for j in knn(own, "byol"))
    assert {j.id for j in knn(own, "byol")}.isdisjoint(j.id for j in knn(at_32, "byol"))

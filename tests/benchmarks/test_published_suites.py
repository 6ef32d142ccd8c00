"""The published-protocol suites: they load and plan, the dry run states where jobs run and what they cost,
``${VAR}`` dataset roots, the cost arithmetic, ``--only`` and the Slurm submission each suite asks for."""

from __future__ import annotations

import textwrap
from pathlib import Path

import fakes
import pytest

from benchmarks.runner.cli import dry_run_table, run_main
from benchmarks.runner.cost import (
    detection_gpu_hours,
    estimate_job,
    in_memory_gib,
    pretrain_gpu_hours,
)
from benchmarks.runner.executors import SubmititExecutor
from benchmarks.runner.plan import Job, make_plan
from benchmarks.runner.store import Store
from benchmarks.runner.suite import CostSpec, expand_env, load_suite
from zoo.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
SUITES = REPO / "benchmarks" / "suites"
PUBLISHED = ["cifar10-byol", "stl10-byol", "imagenet100-byol", "imagenet-byol-r50", "coco-det-r50-fpn-1x"]


# the cost arithmetic -------------------------------------------------------------------------------------
def test_pretrain_gpu_hours_by_hand():
    # 1000 images at batch 128: 7 full steps (896 images) per epoch, the last 104 dropped; 10 epochs
    assert pretrain_gpu_hours(1000, 10, 128, 896.0) == pytest.approx(10 / 3600)
    # lightly's CIFAR-10 run: 50,000 x 200 epochs at 1367 img/s is the 121.9 min it reports (batch 128: 390 steps)
    assert pretrain_gpu_hours(50000, 200, 128, 1367) * 60 == pytest.approx(121.7, abs=0.1)
    with pytest.raises(ValueError):
        pretrain_gpu_hours(10, 1, 128, 0.0)


def test_detection_and_memory_by_hand():
    # detectron2's R50-FPN 1x: 90k iterations at 0.210 s on 8 V100 = 5.25 h wall, 42 GPU-hours
    assert detection_gpu_hours(90000, 0.210, 8) == pytest.approx(42.0)
    assert in_memory_gib(1024, 32) == pytest.approx(1024 * 3 * 32 * 32 / 2**30)
    with pytest.raises(ValueError):
        detection_gpu_hours(10, 0.1, 0)


def test_estimate_job_uses_the_resolved_config():
    cost = CostSpec(pretrain_images_per_s=100.0, train_images=1000, eval_gpu_hours={"knn": 0.5})
    cfg = {"data": {"image_size": 32, "limit": 500}, "optim": {"batch_size": 100}, "run": {"epochs": 36}}
    est = estimate_job(Job("a", "pretrain", "byol", 0, {"config": cfg}), cost)
    assert est.gpu_hours == pytest.approx(36 * 5 * 100 / 100 / 3600)  # data.limit caps the 1000 images at 500
    assert est.host_gib_per_process == pytest.approx(in_memory_gib(500, 32))
    assert estimate_job(Job("b", "eval", "byol", 0, {"evaluator": "knn"}, group="knn"), cost).gpu_hours == 0.5
    assert estimate_job(Job("c", "eval", "byol", 0, {"evaluator": "linear"}, group="linear"), cost).gpu_hours is None
    assert estimate_job(Job("d", "random-init", "r", 0, {"config": {}}), cost).gpu_hours == 0.0


def test_detection_estimate_reads_the_datasets_default_preset():
    """No preset named: the one the evaluator would use for the job's dataset (shapes-det-cpu: 300 iterations,
    1 trial), not another dataset's (digits-det-cpu has 2 trials)."""
    from benchmarks.runner.cost import _detection_iterations
    from downstream.detection.config import load_preset

    shapes, digits = load_preset(None, dataset="shapes-det"), load_preset(None, dataset="digits-det")
    assert shapes.trials != digits.trials
    got = _detection_iterations({"evaluator": "detection", "dataset": "shapes-det", "config": {"preset": None}})
    assert got == (shapes.d2["SOLVER.MAX_ITER"], shapes.trials)
    assert _detection_iterations({"dataset": "digits-det", "config": {}})[1] == digits.trials


@pytest.mark.parametrize(
    ("field", "value"), [("pretrain_images_per_s", 0.0), ("train_images", 0), ("detection_gpus", 0)]
)
def test_cost_block_is_validated(tmp_path, field, value):
    path = tmp_path / "s.yaml"
    path.write_text("variants: {r: {kind: raw-pixels}}\nevaluations: [{evaluator: knn, dataset: digits}]\n")
    with pytest.raises(ConfigError, match="cost"):
        load_suite(path, [f"cost.{field}={value}"])


# ${VAR} in suites ----------------------------------------------------------------------------------------
def test_expand_env_replaces_and_reports():
    data = {"a": "${X}/cifar", "b": ["k=${Y}", 3], "c": {"d": "$X plain", "e": "${X}${X}"}}
    out, missing = expand_env(data, {"X": "/data"})
    assert out == {"a": "/data/cifar", "b": ["k=${Y}", 3], "c": {"d": "$X plain", "e": "/data/data"}}
    assert missing == {"Y": "b[0]"}


def test_suite_roots_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", str(tmp_path / "cifar"))
    suite = load_suite(SUITES / "cifar10-byol.yaml")
    assert suite.evaluations[0].dataset_options["root"] == str(tmp_path / "cifar")
    assert f"data.root={tmp_path / 'cifar'}" in suite.pretrain_overrides and not suite.unset_env
    monkeypatch.delenv("CIFAR10_ROOT")
    with pytest.raises(ConfigError, match=r"CIFAR10_ROOT.*not set") as exc:
        load_suite(SUITES / "cifar10-byol.yaml")
    assert "pretrain_overrides[0]" in str(exc.value)
    assert load_suite(SUITES / "cifar10-byol.yaml", require_env=False).unset_env == ["CIFAR10_ROOT"]


def test_run_needs_the_variable_but_dry_run_plans_without_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("STL10_ROOT", raising=False)
    args = [str(SUITES / "stl10-byol.yaml"), "--results-dir", str(tmp_path), "--dry-run"]
    assert run_main([*args, "--no-data-check"]) == 0  # plans; the roots are not looked at
    out = capsys.readouterr().out
    assert "warning: ${STL10_ROOT} is not set" in out and "estimated GPU-hours" in out
    assert run_main(args) == 1  # the data check refuses a root that comes from an unset variable
    assert "${STL10_ROOT}, which is not set" in capsys.readouterr().err
    assert run_main([str(SUITES / "stl10-byol.yaml"), "--results-dir", str(tmp_path)]) == 2
    assert "STL10_ROOT" in capsys.readouterr().err


# the shipped suites --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_suite_loads_plans_and_dry_runs(name, tmp_path, monkeypatch):
    pytest.importorskip("pretrain.config")
    pytest.importorskip("downstream.api")
    for var in ("CIFAR10_ROOT", "STL10_ROOT", "IMAGENET100_ROOT", "IMAGENET_ROOT", "COCO_ROOT"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("BYOL_R50_ARTIFACT", str(tmp_path / "artifact"))
    suite = load_suite(SUITES / f"{name}.yaml")
    assert suite.name == name and suite.scale and suite.expected and suite.cost and suite.cost.source
    plan = make_plan(suite)
    errors = [j.plan_error for j in plan.jobs if j.plan_error]
    if name == "coco-det-r50-fpn-1x":  # its BYOL row is an existing artifact, which this test does not make
        assert len(errors) == 1 and "artifact" in errors[0]
    else:
        assert not errors
    for e in suite.expectations():  # every expected metric names a real column group; comparisons a real row
        assert e.metric.split(".")[0] in {ev.group for ev in suite.evaluations}
    table = dry_run_table(plan, Store(tmp_path / "res"))
    assert "estimated GPU-hours" in table and "source:" in table and "where" in table
    assert "?" not in table.split("\n\n")[0].split("\n", 2)[2]  # every job has a stated cost


def test_dry_run_numbers_of_the_paper_recipe(tmp_path, monkeypatch):
    """ImageNet R50 on all 1,281,167 train/ images: 312 steps x 4096 at 305 img/s for 300 and for 1000 epochs;
    torchrun over 8 GPUs; streamed (no split in memory). DeepMind's presets per length (byol/configs/byol.py 21-23)."""
    pytest.importorskip("pretrain.config")
    monkeypatch.setenv("IMAGENET_ROOT", str(tmp_path))
    plan = make_plan(load_suite(SUITES / "imagenet-byol-r50.yaml"))
    table = dry_run_table(plan, Store(tmp_path / "res"))
    for variant, epochs in (("byol-300ep", 300), ("byol-1000ep", 1000)):
        pre = next(line for line in table.splitlines() if f" {variant} " in line and " pretrain " in line)
        assert "torchrun ×8" in pre and f"{epochs * 312 * 4096 / 305 / 3600:.1f}" in pre
        assert pre.split()[-1] == "0.0"  # host GiB per process: streamed from the files, no split in memory
    cfg = {j.variant: j.spec["config"] for j in plan.jobs if j.kind == "pretrain"}
    got = {v: (c["optim"]["base_lr"], c["optim"]["weight_decay"], c["byol"]["tau_base"], c["run"]["epochs"])
           for v, c in cfg.items()}  # fmt: skip
    assert got == {"byol-300ep": (0.3, 1e-6, 0.99, 300), "byol-1000ep": (0.2, 1.5e-6, 0.996, 1000)}
    assert {c["data"]["split"] for c in cfg.values()} == {"trainval"}  # the paper's TRAIN_AND_VALID
    slurm = dry_run_table(plan, Store(tmp_path / "res"), "slurm")
    assert "slurm, torchrun ×8, 8 GPU, 4320 min" in slurm


def test_eval_gpus_key(tmp_path):
    text = """
    variants: {byol: {kind: pretrain, config: byol.yaml}}
    evaluations:
      - {evaluator: knn, dataset: digits-m}
      - {evaluator: detection, dataset: digits-det, name: det, gpus: 4}
    executor: {gpus_per_job: 2}
    """
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    plan = make_plan(load_suite(path), fakes.FAKE_RESOLVERS)
    assert {j.group: j.gpus for j in plan.eval_jobs()} == {"knn": 1, "det": 4}
    assert next(j for j in plan.jobs if j.kind == "pretrain").gpus == 2
    with pytest.raises(ConfigError, match=r"evaluations\[1\].gpus"):
        load_suite(path, ["evaluations.1.gpus=-1"])


def test_only_checks_the_expectations_about_the_rows_it_ran(tmp_path, fake_env, capsys, monkeypatch):
    """``--only a`` runs a's jobs and leaves out expectations naming other rows (they could only miss)."""
    import benchmarks.runner.cli as cli
    import benchmarks.runner.stages as stages

    monkeypatch.setattr(stages, "default_resolvers", lambda: fakes.FAKE_RESOLVERS)
    monkeypatch.setattr(stages, "default_stage_fns", lambda: fakes.FAKE_FNS)
    monkeypatch.setattr(cli, "run_plan", _with_fake_fns(cli.run_plan))
    text = """
    name: two
    variants:
      a: {kind: pretrain, config: x.yaml, overrides: [quality=0.8]}
      b: {kind: pretrain, config: x.yaml, overrides: [quality=0.5]}
    evaluations: [{evaluator: knn, dataset: digits}]
    expected:
      - [a, knn.top1, 0.8, 0.01]
      - [b, knn.top1, 0.5, 0.01]
      - [a, knn.top1, ">", b]
    """
    path = tmp_path / "two.yaml"
    path.write_text(textwrap.dedent(text))
    args = [str(path), "--results-dir", str(tmp_path / "res"), "--no-plots"]
    assert run_main([*args, "--only", "a"]) == 0
    out = capsys.readouterr().out
    assert "checking 1 of 3 expected results" in out and "ok   a knn.top1 = 0.8" in out and "MISS" not in out
    assert run_main(args) == 0  # now b runs too and all three hold
    assert "MISS" not in capsys.readouterr().out


def _with_fake_fns(run_plan):
    def wrapped(plan, store, executor=None, fns=None, log=print, only=None):
        return run_plan(plan, store, executor, fakes.FAKE_FNS, log, only)

    return wrapped


# Slurm submission ----------------------------------------------------------------------------------------
def _sbatch(ex: SubmititExecutor, job: Job, monkeypatch) -> str:
    """The sbatch script submitit would write for the array ``job`` goes to (no Slurm needed)."""
    from submitit.slurm import slurm

    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # pretend srun exists
    sub = ex._executor(*ex.limits(job))
    return sub._executor._make_submission_file_text("python -u -m submitit.core._submit FOLDER", "uid")


@pytest.mark.parametrize(
    ("name", "pretrain_lines", "eval_lines"),
    [
        ("cifar10-byol", ["--gpus-per-node=1", "--time=1440", "--mem=32GB"], ["--gpus-per-node=1", "--time=120"]),
        ("imagenet100-byol", ["--gpus-per-node=2", "--cpus-per-task=16", "--time=2880"], ["--gpus-per-node=1"]),
        ("imagenet-byol-r50", ["--gpus-per-node=8", "--cpus-per-task=64", "--mem=480GB"], ["--time=720"]),
        ("coco-det-r50-fpn-1x", [], ["--gpus-per-node=8", "--time=1440", "--cpus-per-task=32"]),
    ],
)
def test_slurm_submission_of_each_suite(name, pretrain_lines, eval_lines, tmp_path, monkeypatch):
    """``--executor slurm``: one task per job (torchrun starts the GPU processes), the suite's limits."""
    pytest.importorskip("submitit")
    pytest.importorskip("pretrain.config")
    suite = load_suite(SUITES / f"{name}.yaml", ["executor.partition=gpu"], require_env=False)
    plan = make_plan(suite)
    from benchmarks.runner.cli import _executor

    ex = _executor(suite, Store(tmp_path / "res"), "slurm", None)
    assert isinstance(ex, SubmititExecutor) and ex.cluster is None  # submitit's auto: Slurm where sbatch is
    ex.cluster = "slurm"
    for job in plan.jobs:
        if job.kind == "random-init":
            continue
        text = _sbatch(ex, job, monkeypatch)
        assert "#SBATCH --ntasks-per-node=1" in text and "#SBATCH --partition=gpu" in text
        for line in pretrain_lines if job.kind == "pretrain" else eval_lines:
            assert f"#SBATCH {line}" in text, (job.describe(), line, text)


def test_the_published_three_seed_quickstart_is_the_quickstart_plus_raw_pixels_linear():
    """results/quickstart-3seeds/ holds the quickstart's own jobs: the same hashes, so the suites share records."""
    quickstart = make_plan(load_suite(SUITES / "quickstart.yaml", ["seeds=[0,1,2]"]))
    three = make_plan(load_suite(SUITES / "quickstart-3seeds.yaml"))
    assert {j.id for j in quickstart.jobs} < {j.id for j in three.jobs}
    extra = [j for j in three.jobs if j.id not in {q.id for q in quickstart.jobs}]
    assert [(j.variant, j.seed, j.spec["evaluator"]) for j in extra] == [("raw-pixels", 0, "linear")]


@pytest.mark.parametrize("name", ["quickstart-3seeds", "ablation-predictor-momentum"])
def test_published_job_hashes_do_not_change(name):
    """Keys added later at their default (optim.lars_clip_lr; detection's num_workers, now the preset's) leave
    the published job hashes as they were, so the records under results/ still belong to today's plan."""
    pytest.importorskip("pretrain.config")
    pytest.importorskip("downstream.api")
    from zoo.io import read_json

    published = read_json(REPO / "results" / name / "plan.json")
    pub = {e["id"] for e in published["entries"]}
    assert {e["kind"] for e in published["entries"]} >= {"pretrain", "eval"}
    assert any(e["spec"].get("evaluator") == "detection" for e in published["entries"])
    seeds = sorted({e["seed"] for e in published["entries"]})
    now = {j.id for j in make_plan(load_suite(SUITES / f"{name}.yaml", [f"seeds={seeds}"])).jobs}
    assert pub and pub <= now


def test_every_published_pretrain_config_keeps_its_identity():
    """Each published pretrain job's config, read back with today's defaults, hashes to the same job id."""
    pytest.importorskip("pretrain.config")
    from benchmarks.runner.plan import drop_defaults, drop_keys
    from benchmarks.runner.stages import default_resolvers
    from pretrain.config import PretrainConfig
    from zoo.config import from_dict, to_dict
    from zoo.io import read_json, stable_hash

    res = default_resolvers()
    assert res.identity_defaults == {"optim.lars_clip_lr": False, "data.stream": False}
    checked = 0
    for plan_file in sorted((REPO / "results").glob("*/plan.json")):
        for e in read_json(plan_file)["entries"]:
            if e["kind"] != "pretrain" or e.get("plan_error"):
                continue
            cfg = to_dict(from_dict(PretrainConfig, e["spec"]["config"], source=str(plan_file)))
            assert cfg["optim"]["lars_clip_lr"] is False and cfg["data"]["stream"] is False
            kept = drop_defaults(drop_keys(cfg, res.execution_keys), res.identity_defaults)
            ident = {"kind": "pretrain", "config": kept}
            assert stable_hash(ident) == e["id"], (plan_file, e["variant"])
            checked += 1
    assert checked >= 24
    clipped = {"optim": {"lars_clip_lr": True}}
    assert drop_defaults(clipped, res.identity_defaults) == clipped  # a run that clips gets a new identity


def test_cifar10_200ep_runs_the_views_behind_lightlys_0869():
    """lightly's 0.869 came from SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0) at commit
    03f534b3 (cifar10_benchmark.py lines 169-173, 237): both views alike, jitter 0.8 x 0.5 / 0.2 x 0.5, no blur,
    no solarization (BYOL's solarizing view 2 came to lightly's BYOL later, without a re-run)."""
    pytest.importorskip("pretrain.config")
    from pretrain.config import load_pretrain_config

    cfg = load_pretrain_config(REPO / "pretrain" / "configs" / "cifar10-byol-200ep.yaml")
    import dataclasses

    v1, v2 = cfg.augment.view1, cfg.augment.view2
    assert dataclasses.asdict(v1) == dataclasses.asdict(v2)
    assert (v1.brightness, v1.contrast, v1.saturation, v1.hue, v1.jitter_p) == (0.4, 0.4, 0.4, 0.1, 0.8)
    assert (v1.solarize_p, v1.blur_p, v1.grayscale_p, tuple(v1.crop_scale)) == (0.0, 0.0, 0.2, (0.08, 1.0))
    suite = load_suite(SUITES / "cifar10-byol.yaml", require_env=False)
    assert "RTX A6000" in (suite.cost.device or "") and "V100" not in (suite.cost.device or "")

"""Each published-protocol suite, end to end on a tiny generated fake of its dataset in the real on-disk layout.

The runs override only epochs, sizes, iterations, the dataset root (``${VAR}``) and, for the 8-GPU recipe, the
GPU count, so what is tested is the suite's own wiring: its configs resolve, its datasets load from the
layout users have, every job finishes, and every expected result names a metric the records hold. The
published numbers themselves cannot hold on fakes, so the expectations report misses (exit 1) and the
tests check that they were evaluated, not that they passed.

Where they run: ``cifar10-byol`` and ``imagenet-byol-r50`` in this process; ``stl10-byol`` through submitit's
debug executor (the Slurm path, in process); ``imagenet100-byol`` as its executor asks, 2 GPUs, so its
pretraining job is launched with ``torchrun --nproc_per_node=2`` (gloo on CPU); ``coco-det-r50-fpn-1x``
through detectron2 on CPU.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import dataset_fakes
import pytest
import yaml

pytest.importorskip("pretrain.train")
pytest.importorskip("downstream.api")

from benchmarks.runner.cli import run_main  # noqa: E402
from benchmarks.runner.store import Store  # noqa: E402
from zoo.io import read_json  # noqa: E402

pytestmark = pytest.mark.slow
SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
TINY = "run.epochs=1, run.threads=1"


def _run(capsys, suite: str, results: Path, sets: list[str], *extra: str) -> tuple[int, str]:
    args = [str(SUITES / f"{suite}.yaml"), "--results-dir", str(results), "--no-plots", *extra]
    for s in sets:
        args += ["--set", s]
    rc = run_main(args)
    return rc, capsys.readouterr().out


def _check_ran(rc: int, out: str, n_jobs: int, n_expected: int) -> None:
    """Every job finished; every expectation was evaluated against a value (a miss is fine on a fake)."""
    assert f"summary: {n_jobs} done, 0 cached, 0 failed, 0 blocked" in out, out[-3000:]
    checks = [ln for ln in out.splitlines() if ln.startswith(("  ok ", "  MISS "))]
    assert len(checks) == n_expected and all("got " in ln for ln in checks), checks
    assert rc == (1 if any(ln.startswith("  MISS") for ln in checks) else 0)


def _pretrain_config(results: Path) -> dict:
    (run,) = [p for p in (results / "runs").iterdir() if (p / "config.yaml").is_file()]
    return yaml.safe_load((run / "config.yaml").read_text())


def _shipped(name: str) -> dict:
    path = SUITES.parent.parent / "pretrain" / "configs" / f"{name}.yaml"
    return yaml.safe_load(path.read_text())


def _same_recipe(ran: dict, shipped: dict, changed: set[str]) -> None:
    """The run's config equals the shipped one except for the overridden keys (epochs, sizes, root, threads)."""
    for section, values in shipped.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if f"{section}.{key}" in changed or isinstance(value, dict):
                continue
            got = ran[section][key]
            assert got == value or (isinstance(got, list) and list(value) == got), (section, key, got, value)


def _records(results: Path) -> list[dict]:
    return [read_json(p) for p in sorted((results / "records").glob("*.json"))]


def test_cifar10_suite_on_fake_pickles(tmp_path, monkeypatch, capsys):
    dataset_fakes.trust_torchvision_files(monkeypatch)
    root = dataset_fakes.write_cifar10(tmp_path / "cifar", per_batch=20, n_test=40)  # 90 train, 10 val, 40 test
    monkeypatch.setenv("CIFAR10_ROOT", str(root))
    tiny = f"[{TINY}, data.image_size=16, optim.batch_size=16]"
    sets = [
        f"variants.byol-200ep.overrides={tiny}",
        f"variants.byol-1000ep.overrides={tiny}",
        "variants.random-init.overrides=[arch=resnet18-small, image_size=16]",
        "evaluations.1.overrides.1=epochs=1",  # the linear probe's 100 epochs
    ]
    rc, out = _run(capsys, "cifar10-byol", tmp_path / "res", sets)
    _check_ran(rc, out, n_jobs=9, n_expected=3)
    recs = _records(tmp_path / "res")
    assert {r["dataset"]["name"] for r in recs} == {"cifar10"}
    assert all(r["dataset"]["recipe"]["root"] == str(root) for r in recs)
    assert {r["dataset"]["splits"]["test"] for r in recs} == {40}
    knn = next(r for r in recs if r["evaluator"] == "knn")
    assert knn["config"]["k"] == [200] and knn["config"]["temperature"] == 0.1  # lightly's protocol
    runs = {json.loads((p / "derived.json").read_text())["lr"] for p in (tmp_path / "res" / "runs").glob("*/")
            if (p / "derived.json").is_file()}  # fmt: skip
    assert runs == {0.12 * 16 / 256, 1.0 * 16 / 256}  # each recipe's base LR, scaled to the tiny batch


def test_stl10_suite_on_fake_binaries_through_submitit(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    dataset_fakes.trust_torchvision_files(monkeypatch)
    root = dataset_fakes.write_stl10(tmp_path / "stl", n_train=60, n_unlabeled=40, n_test=40)
    monkeypatch.setenv("STL10_ROOT", str(root))
    sets = [
        f"variants.byol.overrides=[{TINY}, data.image_size=16, optim.batch_size=16]",
        "variants.random-init.overrides=[arch=resnet18-small, image_size=16]",
        "evaluations.0.dataset_options.image_size=16",
        "evaluations.1.dataset_options.image_size=16",
    ]
    rc, out = _run(capsys, "stl10-byol", tmp_path / "res", sets, "--executor", "submitit-debug")
    _check_ran(rc, out, n_jobs=6, n_expected=1)
    assert "to submitit debug" in out
    derived = json.loads(next((tmp_path / "res" / "runs").glob("*/derived.json")).read_text())
    assert derived["num_images"] == 100 and derived["train_split"]["name"] == "stl10-unlabeled"  # train+unlabeled
    _same_recipe(_pretrain_config(tmp_path / "res"), _shipped("stl10-byol"), {"data.image_size", "data.root",
                 "optim.batch_size", "run.epochs", "run.threads", "run.progress"})  # fmt: skip
    assert {r["dataset"]["splits"].get("test") for r in _records(tmp_path / "res")} == {40}  # the labelled test set


def test_imagenet100_suite_on_a_folder_tree_under_torchrun(tmp_path, monkeypatch, capsys):
    """The suite's executor asks for 2 GPUs: its pretraining runs as ``torchrun --nproc_per_node=2`` (gloo, CPU)."""
    from zoo.datasets.published import IMAGENET100_WNIDS

    # ImageNet-100's own 100 class folders (any other tree is refused): 10 train images each (9 train, 1 val)
    root = dataset_fakes.write_imagenet(
        tmp_path / "in100", wnids=list(IMAGENET100_WNIDS), train_per_class=10, val_per_class=1, sizes=(24, 41)
    )
    monkeypatch.setenv("IMAGENET100_ROOT", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with socket.socket() as s:  # torchrun's rendezvous port (PET_ variables are its flags' environment form)
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("PET_MASTER_PORT", str(s.getsockname()[1]))
    sets = [
        f"variants.byol.overrides=[{TINY}, data.image_size=32, optim.batch_size=8, data.limit=48, data.workers=1]",
        "variants.random-init.overrides=[arch=resnet18, image_size=32]",
        "evaluations.0.dataset_options.image_size=32",
        "evaluations.1.dataset_options.image_size=32",
    ]
    rc, out = _run(capsys, "imagenet100-byol", tmp_path / "res", sets)
    _check_ran(rc, out, n_jobs=6, n_expected=2)
    run_dir = next(p for p in (tmp_path / "res" / "runs").iterdir() if (p / "derived.json").is_file())
    derived = json.loads((run_dir / "derived.json").read_text())
    assert derived["world_size"] == 2 and derived["per_rank_batch"] == 4  # two processes shared each batch
    assert (run_dir / "suite-config.yaml").is_file()  # the config the runner handed to torchrun
    assert derived["train_split"]["split"] == "trainval"  # all of train/ (data.limit keeps 48 for speed)
    changed = {"data.image_size", "data.root", "optim.batch_size", "run.epochs", "run.threads", "run.progress",
               "data.limit", "data.workers"}  # fmt: skip
    _same_recipe(_pretrain_config(tmp_path / "res"), _shipped("imagenet100-byol"), changed)
    tests = {r["dataset"]["splits"]["test"] for r in _records(tmp_path / "res")}
    assert tests == {100}


def test_imagenet_r50_suite_on_a_folder_tree(tmp_path, monkeypatch, capsys):
    root = dataset_fakes.write_imagenet(tmp_path / "in1k", classes=3, train_per_class=10, val_per_class=3)
    monkeypatch.setenv("IMAGENET_ROOT", str(root))
    sets = [
        "executor.gpus_per_job=1",  # 8 processes of ResNet-50 on a 2-core CPU would only be slow
        f"variants.byol-300ep.overrides=[{TINY}, data.image_size=32, optim.batch_size=8, data.workers=0]",
        f"variants.byol-1000ep.overrides=[{TINY}, data.image_size=32, optim.batch_size=8, data.workers=0]",
        "variants.random-init.overrides=[arch=resnet50, image_size=32]",
        "evaluations.0.dataset_options.image_size=32",
        "evaluations.1.dataset_options.image_size=32",
    ]
    rc, out = _run(capsys, "imagenet-byol-r50", tmp_path / "res", sets)
    _check_ran(rc, out, n_jobs=9, n_expected=3)
    changed = {"data.image_size", "data.root", "optim.batch_size", "run.epochs", "run.threads", "run.progress",
               "data.workers"}  # fmt: skip
    ran = {}
    for run in (p for p in (tmp_path / "res" / "runs").iterdir() if (p / "config.yaml").is_file()):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        ran[cfg["byol"]["tau_base"]] = cfg
    _same_recipe(ran[0.99], _shipped("imagenet-byol-r50-300ep"), changed)
    _same_recipe(ran[0.996], _shipped("imagenet-byol-r50-1000ep"), changed)
    assert ran[0.99]["optim"]["base_lr"] == 0.3 and ran[0.996]["optim"]["base_lr"] == 0.2
    assert ran[0.99]["data"]["split"] == "trainval" and ran[0.99]["backbone"]["arch"] == "resnet50"
    assert ran[0.99]["data"]["stream"] is True  # read from the JPEG files, not held in memory


@pytest.mark.detectron2
def test_coco_detection_suite_on_a_fake_coco(tmp_path, monkeypatch, capsys):
    pytest.importorskip("detectron2")
    from zoo.baselines import random_init_artifact

    root = dataset_fakes.write_coco(tmp_path / "coco", n_train=4, n_val=2, size=96)
    artifact = random_init_artifact(tmp_path / "byol-r50", "resnet50", seed=1, input_size=224)
    monkeypatch.setenv("COCO_ROOT", str(root))
    monkeypatch.setenv("BYOL_R50_ARTIFACT", str(artifact))
    sets = ["evaluations.0.overrides=[preset=coco-r50-fpn-1x, max_iter=1, trials=1, ims_per_batch=2, num_workers=0]"]
    rc, out = _run(capsys, "coco-det-r50-fpn-1x", tmp_path / "res", sets)
    _check_ran(rc, out, n_jobs=3, n_expected=1)
    recs = _records(tmp_path / "res")
    assert len(recs) == 2 and all(r["evaluator"] == "detection" and "AP" in r["metrics"] for r in recs)
    assert {r["config"]["preset"] for r in recs} == {"coco-r50-fpn-1x"}
    assert any(r["artifact"]["path"] == str(artifact) for r in recs)
    assert Store(tmp_path / "res").read_plan() is not None

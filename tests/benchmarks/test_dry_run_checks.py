"""``byol-bench run SUITE --dry-run`` refuses (exit 1) what the run would fail on: a dataset root without its
files, a job that cannot be planned, a metric no evaluation returns, a plan that does not fit the executor's
memory; ``--no-data-check`` leaves the roots alone. Plus the ImageNet(-100) readers the data check relies on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dataset_fakes
import numpy as np
import pytest

pytest.importorskip("pretrain.config")
pytest.importorskip("downstream.api")

from benchmarks.runner.checks import memory_problems, metric_problems  # noqa: E402
from benchmarks.runner.cli import run_main  # noqa: E402
from benchmarks.runner.plan import make_plan  # noqa: E402
from benchmarks.runner.suite import load_suite  # noqa: E402
from zoo.datasets import DatasetError, load_dataset  # noqa: E402
from zoo.datasets.published import IMAGENET100_WNIDS  # noqa: E402
from zoo.datasets.roots import check_root  # noqa: E402

SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"


def _dry(capsys, suite: Path, results: Path, *extra: str) -> tuple[int, str, str]:
    rc = run_main([str(suite), "--results-dir", str(results), "--dry-run", *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


# dataset roots -------------------------------------------------------------------------------------------
def test_dry_run_refuses_a_missing_root_and_accepts_the_real_layout(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIFAR10_ROOT", str(tmp_path / "cifar"))
    rc, _, err = _dry(capsys, SUITES / "cifar10-byol.yaml", tmp_path / "res")
    assert rc == 1 and f"root {tmp_path / 'cifar'} does not exist" in err
    (tmp_path / "cifar").mkdir()  # the folder exists but holds no batches
    rc, _, err = _dry(capsys, SUITES / "cifar10-byol.yaml", tmp_path / "res")
    assert rc == 1 and "cifar-10-batches-py/data_batch_1" in err and "batches.meta" in err
    dataset_fakes.write_cifar10(tmp_path / "cifar")
    rc, out, err = _dry(capsys, SUITES / "cifar10-byol.yaml", tmp_path / "res")
    assert rc == 0 and not err and "every dataset root has its files" in out


def test_no_data_check_plans_without_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    rc, _, err = _dry(capsys, SUITES / "cifar10-byol.yaml", tmp_path / "res")
    assert rc == 1 and "${CIFAR10_ROOT}, which is not set" in err
    rc, out, _ = _dry(capsys, SUITES / "cifar10-byol.yaml", tmp_path / "res", "--no-data-check")
    assert rc == 0 and "dataset roots not checked (--no-data-check)" in out
    assert "warning: ${CIFAR10_ROOT} is not set" in out


def test_check_root_of_each_layout(tmp_path):
    stl = dataset_fakes.write_stl10(tmp_path / "stl")
    assert check_root("stl10-unlabeled", str(stl)) == [] and check_root("stl10", str(stl)) == []
    (stl / "stl10_binary" / "unlabeled_X.bin").unlink()
    assert "unlabeled_X.bin" in check_root("stl10-unlabeled", str(stl))[0]
    coco = dataset_fakes.write_coco(tmp_path / "coco")
    assert check_root("coco", str(coco)) == []
    (coco / "annotations" / "instances_val2017.json").unlink()
    assert "instances_val2017.json" in check_root("coco", str(coco))[0]
    tree = dataset_fakes.write_imagenet(tmp_path / "in", classes=3, train_per_class=2, val_per_class=1)
    assert check_root("imagenet", str(tree)) == []
    empty = tree / "val" / sorted(p.name for p in (tree / "val").iterdir())[0]
    for f in empty.iterdir():
        f.unlink()
    assert "hold no image" in check_root("imagenet", str(tree))[0]
    assert check_root("digits", None) == []  # embedded: nothing on disk to check
    # any other layout is checked by its own loader: an image folder without class folders is named
    (tmp_path / "folder").mkdir()
    assert "no class sub-folders" in check_root("imagefolder", str(tmp_path / "folder"))[0]
    assert check_root("imagefolder", str(tree / "train")) == []
    assert "unknown dataset" in check_root("no-such-set", str(tmp_path))[0]


# plan errors and metric names (issue 24 point 7) ----------------------------------------------------------
_TINY = """
name: tiny
variants:
  raw: {kind: raw-pixels}
evaluations:
  - {evaluator: knn, dataset: digits, overrides: ["k=[5]"]}
leaderboard:
  metrics: [knn.top1_k5]
expected:
  - [raw, knn.top1_k5, ">=", 0.0]
"""


_PRETRAIN_ROW = "raw: {kind: raw-pixels}\n  b: {kind: pretrain, config: nope.yaml}"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("", "", None),
        ("evaluator: knn,", "evaluator: knnn, name: knn,", "unknown evaluator 'knnn'"),
        ("dataset: digits,", "dataset: digits, config: missing.yaml,", "missing.yaml"),
        ("raw: {kind: raw-pixels}", _PRETRAIN_ROW, "nope.yaml"),
        ("[raw, knn.top1_k5,", "[raw, knn.top1_k20,", "expected[0]: 'knn.top1_k20' is not a metric of group 'knn'"),
        ("metrics: [knn.top1_k5]", "metrics: [knn.top1]", "leaderboard.metrics[0]: 'knn.top1' is not a metric"),
    ],
    ids=[
        "sound",
        "unknown-evaluator",
        "missing-eval-config",
        "missing-pretrain-config",
        "unknown-metric",
        "unknown-leaderboard-metric",
    ],  # fmt: skip
)
def test_dry_run_exits_nonzero_on_what_the_run_would_fail(tmp_path, capsys, old, new, message):
    text = textwrap.dedent(_TINY)
    assert old in text
    path = tmp_path / "tiny.yaml"
    path.write_text(text.replace(old, new) if old else text)
    rc, out, err = _dry(capsys, path, tmp_path / "res")
    if message is None:
        assert rc == 0 and not err, err
    else:
        assert rc == 1 and message in err, err


def test_declared_metrics_match_the_published_records():
    """Each evaluator's declared names are the keys its published records hold (knn, linear, detection, and the
    patterns of the analysis evaluators geometry and nuisance)."""
    import fnmatch

    from downstream.registry import get_evaluator
    from zoo.config import from_dict
    from zoo.io import read_json

    repo = SUITES.parent.parent
    seen = set()
    for plan_file in sorted((repo / "results").glob("*/plan.json")):
        for e in read_json(plan_file)["entries"]:
            rec_file = plan_file.parent / "records" / f"{e['id']}.json"
            if e["kind"] != "eval" or not rec_file.is_file():
                continue
            spec = get_evaluator(e["spec"]["evaluator"])
            names = spec.metric_names(from_dict(spec.config, e["spec"]["config"]))
            if names is None:
                continue
            keys = set(read_json(rec_file)["metrics"])
            assert all(any(fnmatch.fnmatchcase(k, p) for p in names) for k in keys), (rec_file, keys, names)
            if spec.name != "detection":  # COCO leaves out a size range with no objects (shapes-det has no APl)
                assert {n for n in names if "*" not in n} <= keys, (rec_file, keys, names)
            seen.add(spec.name)
    assert {"knn", "linear", "detection", "geometry", "nuisance"} <= seen


# memory -------------------------------------------------------------------------------------------------
def test_the_imagenet_plan_that_cannot_fit_is_refused(tmp_path, monkeypatch, capsys):
    """Held in memory, 1,281,167 images x 3 x 224 x 224 = 179.6 GiB per process x 8 > mem_gb 480: exit 1.
    The shipped presets stream from the files (data.stream) and pass."""
    tree = dataset_fakes.write_imagenet(tmp_path / "in", classes=2, train_per_class=2, val_per_class=1)
    monkeypatch.setenv("IMAGENET_ROOT", str(tree))
    in_memory = ["--set", "variants.byol-300ep.overrides=[data.stream=false]"]
    suite = load_suite(SUITES / "imagenet-byol-r50.yaml", in_memory[1:])
    problems = memory_problems(make_plan(suite))
    assert len(problems) == 1 and "byol-300ep" in problems[0]
    assert "179.6 GiB x 8 process(es) = 1436.9 GiB > executor.mem_gb = 480" in problems[0]
    rc, _, err = _dry(capsys, SUITES / "imagenet-byol-r50.yaml", tmp_path / "res", *in_memory)
    assert rc == 1 and "does not fit in memory" in err and "does not exist" not in err
    rc, out, err = _dry(capsys, SUITES / "imagenet-byol-r50.yaml", tmp_path / "res")  # as shipped: streamed
    assert rc == 0, err
    assert not memory_problems(make_plan(load_suite(SUITES / "imagenet-byol-r50.yaml")))
    assert not metric_problems(make_plan(suite))


# ImageNet readers ---------------------------------------------------------------------------------------
def test_imagenet100_refuses_other_classes_naming_them(tmp_path):
    wrong = dataset_fakes.write_imagenet(tmp_path / "wrong", classes=3, train_per_class=2, val_per_class=1)
    with pytest.raises(DatasetError, match=r"missing 100: n01558993.*extra 3: n01440764"):
        load_dataset("imagenet100", "train", root=str(wrong), image_size=32)
    assert "missing 100" in check_root("imagenet100", str(wrong))[0]
    ids = list(IMAGENET100_WNIDS)
    assert len(set(ids)) == 100 and ids[:2] == ["n02869837", "n01749939"] and ids[-1] == "n02090622"
    near = dataset_fakes.write_imagenet(tmp_path / "near", wnids=[*ids[:99], "n09999999"], train_per_class=1,
                                        val_per_class=1, sizes=(16, 17))  # fmt: skip
    with pytest.raises(DatasetError, match=r"missing 1: n02090622; extra 1: n09999999"):
        load_dataset("imagenet100", "test", root=str(near), image_size=16)
    good = dataset_fakes.write_imagenet(tmp_path / "good", wnids=ids, train_per_class=1, val_per_class=1,
                                        sizes=(16, 17))  # fmt: skip
    assert check_root("imagenet100", str(good)) == []
    assert len(load_dataset("imagenet100", "trainval", root=str(good), image_size=16)) == 100


def test_imagenet_images_are_resized_then_centre_cropped_not_squashed(tmp_path):
    """A 2:1 image whose left and right quarters are red: resize 256 + centre crop 224 keeps only the middle."""
    from PIL import Image

    root = tmp_path / "in"
    for split in ("train", "val"):
        d = root / split / "n01440764"
        d.mkdir(parents=True)
        img = np.zeros((100, 200, 3), np.uint8)
        img[:, :, 2] = 255  # blue
        img[:, :50] = img[:, 150:] = (255, 0, 0)  # red quarters on the left and right
        Image.fromarray(img).save(d / "a.png")
    test = load_dataset("imagenet", "test", root=str(root), image_size=224)
    x = np.asarray(test[0][0])
    assert x.shape == (224, 224, 3)
    # shorter side 100 -> 256 (width 512), centre 224 x 224: columns 144..367 of 512 = 28..71 % of the width,
    # all inside the blue middle half; squashing would have kept the red quarters
    assert x[..., 0].max() < 30 and x[..., 2].min() > 225
    assert test.recipe["transform"] == "resize shorter side 256 + centre crop 224"
    full = load_dataset("imagenet", "trainval", root=str(root), image_size=224)
    assert len(full) == 1 and len(load_dataset("imagenet", "test", root=str(root), image_size=224)) == 1

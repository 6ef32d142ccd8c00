"""Console noise (issue 13, point 5): libraries' logs, prints and warnings go to the job's log file; -v shows them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings

import pytest

from zoo.logs import job_log, setup_console


@pytest.fixture
def console():
    """Restore the root logger and warnings routing after a test that sets up the console."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield setup_console
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logging.captureWarnings(False)


def _noise():
    logging.getLogger("detectron2.engine.train_loop").info("Starting training from iteration 0")
    logging.getLogger("fvcore.common.checkpoint").info("Loading checkpoint from backbone_d2.pkl")
    print("Accumulating evaluation results...")  # pycocotools prints
    warnings.warn("`torch.jit.script` is deprecated.", FutureWarning, stacklevel=1)


def test_job_log_takes_libraries_output_off_the_console(tmp_path, capfd, console):
    console(verbose=False)
    before = {n: logging.getLogger(n).level for n in ("detectron2", "fvcore", "")}
    handlers = list(logging.getLogger().handlers)
    with job_log(tmp_path / "job.log"):
        _noise()
        logging.getLogger("benchmarks.mine").warning("our own warning")
    out, err = capfd.readouterr()
    assert out == "" and err.strip() == "our own warning"
    text = (tmp_path / "job.log").read_text()
    for line in ("Starting training", "Loading checkpoint", "Accumulating evaluation", "torch.jit.script", "our own"):
        assert line in text
    assert {n: logging.getLogger(n).level for n in before} == before  # undone after the job
    assert logging.getLogger().handlers == handlers


def test_verbose_shows_them_on_the_console(tmp_path, capfd, console):
    console(verbose=True)
    with job_log(tmp_path / "job.log"):
        _noise()
    err = capfd.readouterr().err
    assert "Starting training" in err and "Loading checkpoint" in err and "torch.jit.script" in err
    assert "Accumulating evaluation" in err  # the printed line, as a log record


@pytest.mark.detectron2
def test_coco_evaluation_output_goes_to_the_log(tmp_path, capfd, console):
    """detectron2's COCOEvaluator logs and pycocotools' prints of a real evaluation stay off the console."""
    pytest.importorskip("detectron2")
    import torch
    from PIL import Image

    from downstream.detection.evaluation import evaluate_predictions, register_split

    (tmp_path / "im").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "im" / "1.png")
    js = tmp_path / "gt.json"
    js.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "1.png", "width": 32, "height": 32}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 0, "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0}
                ],
                "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
            }
        )
    )
    name = register_split(js, tmp_path / "im")
    capfd.readouterr()
    console(verbose=False)
    with job_log(tmp_path / "job.log"):
        ap = evaluate_predictions(name, [(1, torch.tensor([[2.0, 2, 12, 12]]), torch.ones(1), torch.zeros(1))])
    assert ap["AP"] == pytest.approx(100.0)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    text = (tmp_path / "job.log").read_text()
    assert "Evaluating predictions" in text  # detectron2's logger
    assert "Average Precision" in text  # COCOeval.summarize() prints


@pytest.mark.slow  # two fresh interpreters importing torch and detectron2
@pytest.mark.detectron2
def test_cli_does_not_print_the_torch_jit_warning():
    """``byol-bench eval --list`` imports detectron2 (and fvcore's torch.jit.script): quiet, unless -v."""
    pytest.importorskip("detectron2")
    exe = os.path.join(os.path.dirname(sys.executable), "byol-bench")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = subprocess.run([exe, "eval", "--list"], capture_output=True, text=True, timeout=600, env=env)
    assert quiet.returncode == 0 and "detection" in quiet.stdout
    assert "torch.jit.script" not in quiet.stderr + quiet.stdout and quiet.stderr == ""
    loud = subprocess.run([exe, "-v", "eval", "--list"], capture_output=True, text=True, timeout=600, env=env)
    assert loud.returncode == 0 and "torch.jit.script" in loud.stderr


def test_a_logger_detectron2_set_up_still_goes_to_the_job_log(tmp_path, capfd, console):
    """detectron2's ``setup_logger`` (called by DefaultTrainer or a user's script before our job) sets
    ``propagate=False`` on 'detectron2' and adds a stdout handler; inside a job its records still reach the
    log file and not the console, and the logger is given back as it was."""
    d2 = logging.getLogger("detectron2")
    own = logging.StreamHandler(sys.stdout)
    d2.addHandler(own)
    d2.propagate = False
    try:
        console(verbose=False)
        with job_log(tmp_path / "job.log"):
            _noise()
        out, err = capfd.readouterr()
        assert out == "" and err == ""
        assert "Starting training" in (tmp_path / "job.log").read_text()
        assert d2.propagate is False and own in d2.handlers
    finally:
        d2.removeHandler(own)
        d2.propagate = True

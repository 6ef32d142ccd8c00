"""``data.stream``: pretraining reads the image files every step (DataLoader workers cut both views' crops
from the full-resolution file); nothing decoded is kept, the views do not depend on the worker count."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pretrain_tiny import tiny_config

from pretrain.stream import StepBatches, StreamedViews, crop_box

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dataset_fakes  # noqa: E402


def test_crop_box_by_hand():
    # half of a 200 x 100 image at aspect 1: a 100 x 100 box; u_x = 0.5 of the 100 free columns
    assert crop_box(200, 100, 0.5, 0.0, 0.5, 0.0) == (50, 0, 100, 100)
    # the whole area at aspect 4 does not fit: shrunk to the image's width, height sqrt(10000 / 4) = 50
    assert crop_box(100, 100, 1.0, math.log(4.0), 0.0, 1.0) == (0, 50, 100, 50)
    assert crop_box(10, 10, 1e-6, 0.0, 1.0, 1.0) == (9, 9, 1, 1)  # never empty


def _stripes(path: Path, size: int = 400) -> Path:
    """2-px black and white columns: any copy at a much lower resolution averages them to grey."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:, (np.arange(size) // 2) % 2 == 0] = 255
    Image.fromarray(img).save(path)
    return path


def test_views_are_cut_from_the_full_resolution_file(tmp_path):
    cfg = tiny_config("augment.view1.crop_scale=[0.001, 0.001]", "augment.view2.crop_scale=[0.001, 0.001]")
    views = StreamedViews([str(_stripes(tmp_path / "s.png"))], (cfg.augment.view1, cfg.augment.view2), 16, 0, 0)
    pair = views[(0, 0, 0)]
    assert pair.shape == (2, 3, 16, 16) and pair.dtype == torch.uint8
    # a ~13 x 13 crop of the 400-px file resized to 16 keeps the stripes' contrast; a crop of a 16-px copy
    # of the image (what the in-memory path holds) would be uniform grey
    assert pair.float().std() > 40
    small = np.asarray(Image.open(tmp_path / "s.png").resize((16, 16), Image.BILINEAR), dtype=np.float32)
    assert small.std() < 5
    assert torch.equal(views[(0, 0, 0)], pair)  # the same key draws the same crops
    assert not torch.equal(views[(1, 0, 0)], pair)  # another step, other crops


def test_step_batches_follow_the_epoch_permutation():
    perm = {0: torch.tensor([3, 1, 0, 2, 5, 4]), 1: torch.tensor([5, 4, 3, 2, 1, 0])}
    batches = list(StepBatches(perm.__getitem__, 4, 2, 1, 1, 0, 2))  # batch 4 over 2 ranks, rank 1, 1 step/epoch
    assert batches == [[(0, 0, 0), (0, 1, 2)], [(1, 0, 3), (1, 1, 2)]]
    assert list(StepBatches(perm.__getitem__, 4, 2, 1, 1, 1, 2)) == batches[1:]  # a resume starts at its step


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_pretraining_is_the_same_with_any_worker_count(tmp_path, workers):
    """Two runs on an image tree, in-process loading and two workers, give bit-identical weights."""
    from pretrain.train import train

    root = dataset_fakes.write_imagenet(tmp_path / "in", classes=2, train_per_class=10, val_per_class=1)
    over = [f"data.root={root}", "data.dataset=imagenet", "data.split=trainval", "data.stream=true",
            "run.knn_every=0", "backbone.arch=resnet18-small", "optim.batch_size=8", "run.epochs=1"]  # fmt: skip
    ref = tiny_config(*over, "data.workers=0")
    run_ref = train(ref, tmp_path / "ref")
    run = train(tiny_config(*over, f"data.workers={workers}"), tmp_path / f"w{workers}")
    a = torch.load(run_ref / "checkpoints" / "last.pt", weights_only=True)["online"]["backbone"]
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["online"]["backbone"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], v) for k, v in _init_backbone(ref).items())  # it trained


def _init_backbone(cfg) -> dict[str, torch.Tensor]:  # noqa: ANN001
    from pretrain.model import build_model

    torch.manual_seed(cfg.seed)
    return build_model(cfg).backbone.state_dict()


def test_stream_needs_image_files():
    from pretrain.train import train
    from zoo.config import ConfigError

    with pytest.raises(ConfigError, match="data.stream=true reads image files"):
        train(tiny_config("data.stream=true", "run.knn_every=0"), Path("/tmp/unused-stream-run"))


def test_streamed_stop_and_resume_equals_one_go(tmp_path):
    """A streamed run stopped after an epoch and resumed (with another worker count) equals one go, bit for bit."""
    from pretrain.train import train

    root = dataset_fakes.write_imagenet(tmp_path / "in", classes=2, train_per_class=8, val_per_class=1)
    over = [f"data.root={root}", "data.dataset=imagenet", "data.split=trainval", "data.stream=true",
            "run.knn_every=0", "backbone.arch=resnet18-small", "optim.batch_size=8", "run.epochs=2"]  # fmt: skip
    full = train(tiny_config(*over, "data.workers=0"), tmp_path / "full")
    part = tmp_path / "part"
    train(tiny_config(*over, "data.workers=0", "run.stop_after_epochs=1"), part)
    train(tiny_config(*over, "data.workers=2"), part)  # data.workers is a run-control key
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for net in ("online", "target"):
        for mod, state in a[net].items():
            assert all(torch.equal(v, b[net][mod][k]) for k, v in state.items()), (net, mod)

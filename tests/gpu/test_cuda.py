"""The CUDA paths against their CPU references (skipped where there is no GPU; ``benchmarks/perf/gpu_check.py``).

The trainer's GPU path (batched augmentation on the device, multi-tensor LARS and EMA, AMP bf16,
channels_last) is written once and exercised on CPU everywhere else; these tests check on a GPU that it
computes the same thing and that a tiny run trains, exports and loads.
"""

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pretrain.augment import augment_view
from pretrain.byol import update_ema
from pretrain.config import View2Augment, ViewAugment, load_pretrain_config
from pretrain.optim import LARS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIGS = Path(__file__).resolve().parents[2] / "pretrain" / "configs"


def test_augmentation_on_the_gpu_matches_the_cpu():
    """Same generator, same draws: the device only changes where the arithmetic happens."""
    imgs = torch.randint(0, 256, (16, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for view in (ViewAugment(), View2Augment()):
        cpu = augment_view(imgs, view, 16, (0.5,) * 3, (0.25,) * 3, torch.Generator().manual_seed(3))
        gpu = augment_view(imgs.cuda(), view, 16, (0.5,) * 3, (0.25,) * 3, torch.Generator().manual_seed(3))
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=0)


def test_foreach_lars_and_ema_on_the_gpu_match_the_cpu_loops():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    cpu, gpu = net, copy.deepcopy(net).cuda()

    def lars(m: nn.Module, foreach: bool) -> LARS:
        ps = list(m.parameters())
        groups = [
            {"params": [p for p in ps if p.ndim > 1]},
            {"params": [p for p in ps if p.ndim <= 1], "lars_exclude": True},
        ]
        return LARS(groups, lr=0.2, momentum=0.9, weight_decay=1e-3, eta=0.02, foreach=foreach)

    opt_cpu, opt_gpu = lars(cpu, False), lars(gpu, True)
    for step in range(3):
        x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(step))
        for m, opt, dev in ((cpu, opt_cpu, "cpu"), (gpu, opt_gpu, "cuda")):
            opt.zero_grad(set_to_none=True)
            m(x.to(dev)).square().mean().backward()
            opt.step()
        for a, b in zip(cpu.state_dict().values(), gpu.state_dict().values()):
            torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=1e-4)
    target_cpu, target_gpu = copy.deepcopy(cpu), copy.deepcopy(gpu)
    for p in (*target_cpu.parameters(), *target_gpu.parameters()):
        p.data.mul_(0.5)
    update_ema(cpu, target_cpu, 0.9, foreach=False)
    update_ema(gpu, target_gpu, 0.9, foreach=True)
    for a, b in zip(target_cpu.state_dict().values(), target_gpu.state_dict().values()):
        torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=1e-4)


def test_knn_on_the_gpu_matches_the_cpu():
    from downstream.knn import knn_scores

    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(300, 16, generator=g), torch.randint(0, 5, (300,), generator=g)
    queries = torch.randn(40, 16, generator=g)
    cpu = knn_scores(bank, labels, queries, 5, [5, 20], 0.07, chunk_size=16)
    gpu = knn_scores(bank.cuda(), labels.cuda(), queries.cuda(), 5, [5, 20], 0.07, chunk_size=16)
    for k in (5, 20):
        assert torch.equal(gpu[k].argmax(1).cpu(), cpu[k].argmax(1))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_tiny_byol_run_on_the_gpu_trains_exports_and_loads(tmp_path, amp):
    from pretrain.train import read_metrics, train
    from zoo.artifact import load_artifact

    overrides = [
        "data.image_size=16", "data.limit=48", "data.knn_limit=40", "heads.projector_hidden=32",
        "heads.projector_out=16", "heads.predictor_hidden=32", "optim.batch_size=16", "optim.warmup_epochs=1",
        "run.epochs=2", "run.progress=false", "run.log_every=1", "run.device=cuda", f"run.amp={amp}",
        "run.channels_last=true",
    ]  # fmt: skip
    run = train(load_pretrain_config(CONFIGS / "byol.yaml", overrides), tmp_path / "run", resume=False)
    records = read_metrics(run)
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "step")
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1, 2]
    derived = (run / "derived.json").read_text()
    assert ('"amp_dtype": "bfloat16"' in derived) == (amp == "bf16") and '"device": "cuda' in derived
    model = load_artifact(run / "artifact").model  # loads on the CPU, hash and shapes checked
    assert next(model.parameters()).device.type == "cpu"

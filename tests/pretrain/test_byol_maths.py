import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pretrain.byol import BYOL, byol_loss, projection_std, symmetric_byol_loss, tau_schedule, update_ema
from zoo.heads import MLPSpec


def test_loss_equals_two_minus_two_cosine_and_squared_distance():
    torch.manual_seed(0)
    p, z = torch.randn(8, 5), torch.randn(8, 5)
    cos = F.cosine_similarity(p, z, dim=1)
    assert byol_loss(p, z).item() == pytest.approx((2 - 2 * cos).mean().item(), abs=1e-6)
    dist = ((F.normalize(p, dim=1) - F.normalize(z, dim=1)) ** 2).sum(1).mean()  # paper Eq. 2, first form
    assert byol_loss(p, z).item() == pytest.approx(dist.item(), abs=1e-6)
    # scale invariance, range, identical vectors
    assert byol_loss(3 * p, 0.5 * z).item() == pytest.approx(byol_loss(p, z).item(), abs=1e-6)
    assert byol_loss(p, p).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(p, -p).item() == pytest.approx(4.0, abs=1e-6)


def test_symmetric_loss_is_symmetric_in_the_views():
    torch.manual_seed(1)
    p1, p2, z1, z2 = (torch.randn(6, 4) for _ in range(4))
    a = symmetric_byol_loss(p1, p2, z1, z2)
    b = symmetric_byol_loss(p2, p1, z2, z1)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)
    assert a.item() == pytest.approx((byol_loss(p1, z2) + byol_loss(p2, z1)).item(), abs=1e-6)


def test_no_gradient_reaches_the_target():
    torch.manual_seed(0)
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None  # stop-gradient inside the loss


def _tiny_byol(predictor: bool = True) -> BYOL:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return BYOL(backbone, MLPSpec(4, 8, 3), MLPSpec(3, 8, 3) if predictor else None)


def test_byol_model_target_gets_no_gradient_and_is_a_separate_copy():
    model = _tiny_byol()
    x1, x2 = torch.randn(5, 3, 8, 8), torch.randn(5, 3, 8, 8)
    before = [p.clone() for p in model.target_parameters()]
    out = model(x1, x2)
    out["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.target_parameters())
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    # separate storage: changing the online weights leaves the target alone
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.target_parameters()))
    # target BN running stats do not move in a forward pass (they follow the EMA only)
    bn = model.target_backbone[1]
    stats = bn.running_mean.clone()
    model(x1 * 5 + 3, x2)
    assert torch.equal(bn.running_mean, stats)


def test_loss_decreases_under_gradient_steps():
    model = _tiny_byol()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(3)
    x1, x2 = torch.randn(16, 3, 8, 8), torch.randn(16, 3, 8, 8)
    first = model(x1, x2)["loss"].item()
    for _ in range(8):
        loss = model(x1, x2)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x1, x2)["loss"].item() < first


@pytest.mark.parametrize("foreach", [True, False])
def test_update_ema_is_exact(foreach):
    torch.manual_seed(0)
    online, target = (
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
    )
    online[1].running_mean.fill_(2.0)
    online[1].num_batches_tracked.fill_(7)
    t0 = {k: v.clone() for k, v in target.state_dict().items()}
    o0 = {k: v.clone() for k, v in online.state_dict().items()}
    update_ema(online, target, 0.7, foreach=foreach)
    for k, v in target.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert int(v) == 7
        else:
            torch.testing.assert_close(v, 0.7 * t0[k] + 0.3 * o0[k], rtol=0, atol=1e-7)
    assert all(torch.equal(v, o0[k]) for k, v in online.state_dict().items())  # online untouched
    update_ema(online, target, 0.0, foreach=foreach)
    assert all(torch.equal(v, o0[k]) for k, v in target.state_dict().items())  # tau = 0: exact copy
    snap = {k: v.clone() for k, v in target.state_dict().items()}
    with torch.no_grad():
        online[0].weight.add_(1)
    update_ema(online, target, 1.0, buffers=True, foreach=foreach)
    assert torch.equal(target[0].weight, snap["0.weight"])  # tau = 1: unchanged
    target[1].running_mean.fill_(9.0)
    update_ema(online, target, 0.5, buffers=False, foreach=foreach)  # buffers copied, not averaged
    assert torch.equal(target[1].running_mean, online[1].running_mean)


@pytest.mark.parametrize("buffers", [True, False])
def test_update_ema_foreach_matches_the_loop(buffers):
    """The multi-tensor EMA gives the per-tensor loop's target, parameters and BN buffers, over several steps."""
    torch.manual_seed(0)
    online = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4 * 4, 5), nn.BatchNorm1d(5)
    )
    online(torch.randn(4, 3, 6, 6))  # real BN statistics and num_batches_tracked = 1
    target_loop = copy.deepcopy(online)
    for p in target_loop.parameters():
        p.data.normal_()
    for b in target_loop.buffers():
        b.data.fill_(3)
    target_foreach = copy.deepcopy(target_loop)
    for tau in (0.9, 0.99, 0.3, 0.0, 1.0):
        with torch.no_grad():
            for p in online.parameters():
                p.add_(torch.randn_like(p))
        online(torch.randn(4, 3, 6, 6))
        update_ema(online, target_loop, tau, buffers=buffers, foreach=False)
        update_ema(online, target_foreach, tau, buffers=buffers, foreach=True)
        for (k, a), b in zip(target_loop.state_dict().items(), target_foreach.state_dict().values()):
            torch.testing.assert_close(b, a, msg=f"{k} after tau={tau}")
    assert int(target_foreach[1].num_batches_tracked) == int(online[1].num_batches_tracked) == 6


def test_update_ema_refuses_different_structures():
    with pytest.raises(ValueError, match="differ in structure"):
        update_ema(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.5)


def test_tau_schedule_endpoints_and_monotone():
    assert tau_schedule(0, 100, 0.996) == pytest.approx(0.996)
    assert tau_schedule(100, 100, 0.996) == pytest.approx(1.0)
    assert tau_schedule(50, 100, 0.996) == pytest.approx(1 - 0.004 * 0.5)
    assert tau_schedule(10, 40, 0.9) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)
    vals = [tau_schedule(k, 37, 0.99) for k in range(38)]
    assert all(a <= b for a, b in zip(vals, vals[1:]))
    assert tau_schedule(0, 10, 0.0) == 0.0 and tau_schedule(5, 10, 1.0) == 1.0


def test_projection_std_signals_collapse():
    torch.manual_seed(0)
    spread = torch.randn(512, 64)
    assert projection_std(spread) == pytest.approx(1 / math.sqrt(64), rel=0.05)
    collapsed = torch.randn(1, 64).repeat(512, 1) + 1e-6 * torch.randn(512, 64)
    assert projection_std(collapsed) < 1e-4

import pytest
import torch
from torch import nn

from pretrain.knn import knn_predict
from pretrain.optim import LARS, build_optimizer, lr_at, param_groups


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_step_matches_hand_computation(foreach):
    w = torch.tensor([3.0, 4.0], requires_grad=True)  # |w| = 5
    b = torch.tensor([1.0], requires_grad=True)
    opt = LARS(
        [{"params": [w], "lars_exclude": False}, {"params": [b], "lars_exclude": True, "weight_decay": 0.0}],
        lr=0.1, momentum=0.9, weight_decay=0.5, eta=0.01, foreach=foreach,
    )  # fmt: skip
    w.grad = torch.tensor([1.0, 0.0])
    b.grad = torch.tensor([2.0])
    opt.step()
    u = torch.tensor([1.0, 0.0]) + 0.5 * torch.tensor([3.0, 4.0])  # g + wd * w = [2.5, 2]
    trust = 0.01 * 5.0 / torch.linalg.vector_norm(u)
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - 0.1 * trust * u)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # excluded: plain SGD, no decay
    # second step uses momentum
    w.grad = torch.tensor([0.0, 0.0])
    b.grad = torch.tensor([0.0])
    opt.step()
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 2.0 - 0.1 * 0.9 * 2.0]))


def _lars_pair(weight_decay: float) -> tuple[list[list[torch.Tensor]], list[LARS]]:
    """Two identical parameter sets, one LARS each (loop and multi-tensor), with every corner of the update."""
    torch.manual_seed(0)
    shapes = [(8, 3, 3, 3), (8,), (8,), (5, 8), (5,), (4, 4)]
    base = [torch.randn(s) for s in shapes]
    base[5].zero_()  # ‖w‖ = 0: trust ratio 1
    sets, opts = [], []
    for foreach in (False, True):
        ps = [b.clone().requires_grad_(True) for b in base]
        groups = [
            {"params": [ps[0], ps[3], ps[5]], "lars_exclude": False},
            {"params": [ps[1], ps[2], ps[4]], "lars_exclude": True, "weight_decay": 0.0, "lr": 0.05},
        ]
        opts.append(LARS(groups, lr=0.3, momentum=0.9, weight_decay=weight_decay, eta=0.02, foreach=foreach))
        sets.append(ps)
    return sets, opts


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_lars_foreach_matches_the_loop(weight_decay):
    """Multi-tensor LARS = the per-tensor loop (to float tolerance): weights, momentum buffers, state dict."""
    (loop_ps, fe_ps), (loop_opt, fe_opt) = _lars_pair(weight_decay)
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        grads = [torch.randn(p.shape, generator=gen) for p in loop_ps]
        if step == 2:
            grads[3].zero_()  # ‖u‖ = 0 without weight decay: trust ratio 1
        for ps in (loop_ps, fe_ps):
            for i, (p, g) in enumerate(zip(ps, grads)):
                p.grad = None if (step == 0 and i == 4) else g.clone()  # a late first gradient: buffer made at step 1
        loop_opt.step()
        fe_opt.step()
        for i, (a, b) in enumerate(zip(loop_ps, fe_ps)):
            torch.testing.assert_close(b.detach(), a.detach(), msg=f"param {i} at step {step}")
    loop_state, fe_state = loop_opt.state_dict(), fe_opt.state_dict()
    assert loop_state["state"].keys() == fe_state["state"].keys() and len(fe_state["state"]) == 6
    for k, s in loop_state["state"].items():
        torch.testing.assert_close(fe_state["state"][k]["momentum_buffer"], s["momentum_buffer"])
    assert not torch.equal(fe_ps[0].detach(), _lars_pair(weight_decay)[0][1][0].detach())  # it did move


def test_param_groups_exclude_bias_and_bn():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    groups = param_groups({"backbone": m}, {"backbone": 1.0}, 1e-4, exclude_bias_bn=True)
    by_name = {g["name"]: g for g in groups}
    assert {id(p) for p in by_name["backbone"]["params"]} == {id(m[0].weight), id(m[2].weight)}
    excl = by_name["backbone/no-decay"]
    assert excl["weight_decay"] == 0.0 and excl["lars_exclude"] is True and len(excl["params"]) == 4
    opt = build_optimizer("adamw", groups, 1.0, 0.9, 1e-4, 1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    with pytest.raises(ValueError, match="unknown optimiser"):
        build_optimizer("adam", groups, 1.0, 0.9, 1e-4, 1e-3)


def test_lr_warmup_then_cosine():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert lr_at(100, 100, 10, 1.0, final_frac=0.1) == pytest.approx(0.1)


def test_knn_predict_hand_case():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    query = torch.tensor([[1.0, 0.05], [0.05, 1.0], [1.0, 1.0]])
    pred = knn_predict(query, bank, labels, num_classes=2, k=2, t=0.1)
    assert pred[:2].tolist() == [0, 1]
    # k = 5 on the diagonal: class 1 has three neighbours, class 0 two, at the same similarities pairwise
    assert knn_predict(query[2:], bank, labels, 2, k=5, t=1.0).item() == 1


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_clip_lr_matches_hand_computation(foreach):
    """solo-learn's ``clip_lr``: a layer's step size is min(trust, lr), not lr x trust (solo/utils/lars.py 145-147)."""
    big = torch.tensor([3.0, 4.0], requires_grad=True)  # |w| = 5, trust = eta |w| / |g| = 0.5 > lr: clipped to lr
    small = torch.tensor([0.3, 0.4], requires_grad=True)  # |w| = 0.5, trust = 0.05 < lr: the step size is trust
    opt = LARS([big, small], lr=0.1, momentum=0.9, weight_decay=0.0, eta=0.5, foreach=foreach, clip_lr=True)
    big.grad = torch.tensor([5.0, 0.0])  # |g| = 5
    small.grad = torch.tensor([0.0, 5.0])
    opt.step()
    torch.testing.assert_close(big.detach(), torch.tensor([3.0 - 0.1 * 5.0, 4.0]))  # step size min(0.5, 0.1) = lr
    torch.testing.assert_close(small.detach(), torch.tensor([0.3, 0.4 - 0.05 * 5.0]))  # min(0.05, 0.1) = 0.05
    # without the clip both layers step lr x trust: 0.05 and 0.005 times the gradient
    plain = torch.tensor([3.0, 4.0], requires_grad=True)
    LARS([plain], lr=0.1, momentum=0.9, eta=0.5, foreach=foreach).zero_grad()
    plain.grad = torch.tensor([5.0, 0.0])
    LARS([plain], lr=0.1, momentum=0.9, eta=0.5, foreach=foreach).step()
    torch.testing.assert_close(plain.detach(), torch.tensor([3.0 - 0.1 * 0.5 * 5.0, 4.0]))


def test_lars_clip_lr_is_a_config_key_off_by_default():
    from pretrain.config import OptimConfig
    from zoo.config import ConfigError, from_dict

    assert OptimConfig().lars_clip_lr is False
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lars_exclude": False}]
    assert build_optimizer("lars", groups, 0.1, 0.9, 0.0, 1e-3, lars_clip_lr=True).param_groups[0]["clip_lr"] is True
    with pytest.raises((ValueError, ConfigError), match="lars_clip_lr"):
        from_dict(OptimConfig, {"name": "sgd", "lars_clip_lr": True})

"""Two-process DDP on CPU (gloo): shards, gradient averaging, rank-0-only writes, identical replicas."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, run_dir: str, overrides: list[str], out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    from pretrain_tiny import tiny_config

    import pretrain.train as T

    built = []
    real_build = T.build_model

    def keep(cfg):  # the trained model object, to compare the replicas afterwards
        built.append(real_build(cfg))
        return built[-1]

    T.build_model = keep
    T.train(tiny_config(*overrides), run_dir)
    model = built[0]
    torch.save({"online": model.backbone.state_dict(), "target": model.target_backbone.state_dict()}, out)


def _initial_conv1(overrides):
    from pretrain_tiny import tiny_config

    from pretrain.train import build_model

    return build_model(tiny_config(*overrides)).backbone.conv1.weight.detach().clone()


def test_two_process_gloo_run(tmp_path):
    world, port = 2, _free_port()
    run_dir = tmp_path / "ddp"
    overrides = ["run.epochs=2", "run.knn_every=1", "optim.batch_size=16"]
    outs = [str(tmp_path / f"rank{r}.pt") for r in range(world)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, world, port, str(run_dir), overrides, outs[r])) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    res = [torch.load(o, weights_only=True) for o in outs]
    init = _initial_conv1(overrides)
    for net in ("online", "target"):  # DDP keeps the replicas identical (same averaged gradients, same EMA)
        for k, v in res[0][net].items():
            if "running" not in k:  # BN running stats are per rank on CPU (no CPU SyncBatchNorm)
                assert torch.equal(v, res[1][net][k]), f"{net} {k} differs between ranks"
    assert not torch.equal(res[0]["online"]["conv1.weight"], init)  # and they did train
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 * (48 // 16)
    assert torch.equal(ckpt["online"]["backbone"]["conv1.weight"], res[0]["online"]["conv1.weight"])
    derived = (run_dir / "derived.json").read_text()
    assert '"world_size": 2' in derived and '"per_rank_batch": 8' in derived
    assert (run_dir / "artifact" / "meta.json").is_file()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len([ln for ln in lines if '"kind": "step"' in ln]) == 6  # rank 0 alone writes: no duplicates

"""The search over 2 ranks (gloo on CPU) equals the 1-rank search with the same seed: same fronts, the
hypernetwork within float tolerance; rank 0 alone checkpoints. Ranks are spawned with a ``file://``
rendezvous (no TCP port opened), as torchrun would start them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # two spawned processes, ~25 s


class _Kill(Exception):
    """Stands in for a kill after an epoch's checkpoint."""


def _search(cfg_over: dict, shard=None, checkpoint_dir: str = "", on_epoch=None):
    from modnas_ops.search import run_search
    from tests.test_search import ExactPredictor, _bench_cfg, make_world

    table, costs = make_world()
    over = {"epochs": 2, "steps_per_epoch": 10, **cfg_over}
    if checkpoint_dir:
        over["checkpoint_dir"] = checkpoint_dir
    predictor = ExactPredictor(table, costs)
    return run_search(_bench_cfg(**over), progress=False, shard=shard, table=table, predictor=predictor,
                      on_epoch=on_epoch)  # fmt: skip


def _rank(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from modnas_ops.architect import Architect
    from modnas_ops.distributed import DeviceShard

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    rows: list[int] = []  # devices this rank computed gradients for, per step
    own = Architect.per_device_gradients
    Architect.per_device_gradients = lambda self, losses: rows.append(len(losses)) or own(self, losses)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        res = _search({}, shard=DeviceShard(rank, world), checkpoint_dir=str(Path(out) / "ckpt"))
        torch.save({"hypernet": res.hypernetwork.state_dict(), "fronts": res.fronts.to_dict("list"),
                    "metrics": res.metrics, "rows": sorted(set(rows))}, Path(out) / f"rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_one_rank(tmp_path) -> None:
    import torch.multiprocessing as mp

    one = _search({})
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank, args=(2, init, str(tmp_path)), nprocs=2, join=True)
    for rank, own_devices in ((0, 2), (1, 1)):  # 3 train devices: rank 0 evaluates 2, rank 1 one
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["rows"] == [own_devices]
        for k, v in one.hypernetwork.state_dict().items():
            torch.testing.assert_close(got["hypernet"][k], v, rtol=1e-4, atol=1e-6, msg=f"rank {rank}: {k}")
        fronts = one.fronts.to_dict("list")
        assert got["fronts"]["arch"] == fronts["arch"] and got["fronts"]["device"] == fronts["device"]
        for k in (k for k in one.metrics if k.startswith("hv/")):
            assert got["metrics"][k] == pytest.approx(one.metrics[k], rel=1e-6), k
    assert len(list((tmp_path / "ckpt").rglob("*.pt"))) == 1  # one checkpoint, rank 0's


def _killed_then_resumed(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from modnas_ops.distributed import DeviceShard

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        shard, ckpt = DeviceShard(rank, world), str(Path(out) / "ckpt")

        def die(epoch, metrics):
            raise _Kill

        try:
            _search({}, shard=shard, checkpoint_dir=ckpt, on_epoch=die)  # every rank stops after epoch 0
        except _Kill:
            pass
        dist.barrier()  # rank 0's checkpoint of epoch 0 is written
        epochs = []
        res = _search({}, shard=shard, checkpoint_dir=ckpt, on_epoch=lambda e, m: epochs.append(e))
        torch.save({"hypernet": res.hypernetwork.state_dict(), "epochs": epochs}, Path(out) / f"resumed{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_killed_two_rank_search_resumes_from_rank_0s_checkpoint(tmp_path) -> None:
    import torch.multiprocessing as mp

    one = _search({})
    mp.spawn(_killed_then_resumed, args=(2, f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"resumed{rank}.pt", weights_only=True)
        assert got["epochs"] == [1]  # epoch 0 came from the checkpoint
        for k, v in one.hypernetwork.state_dict().items():
            torch.testing.assert_close(got["hypernet"][k], v, rtol=1e-4, atol=1e-6, msg=f"rank {rank}: {k}")

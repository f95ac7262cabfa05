"""The mbv3 (Once-for-All MobileNetV3-elastic) space: grid, strings, canonical forms, HELP encoding, the table's
architectures and anchors (when ``MODNAS_MBV3_TABLE`` names the table), the elastic supernet's weight sharing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modnas_ops.spaces import get_search_space
from modnas_ops.spaces.mbv3.space import D0, E0, KS0, MBV3_ANCHOR_INDICES, R

SPACE = get_search_space("mbv3")
ANCHOR = "ks=7-7-5-5-7-7-3-5-7-7-5-7-3-5-3-3-3-5-5-7|e=3-6-3-6-6-4-3-6-4-6-6-3-3-4-4-3-3-3-3-4|d=4-3-3-4-2|r=196"


def _ofa_table() -> Path | None:
    p = os.environ.get("MODNAS_MBV3_TABLE", "")
    return Path(p) if p and Path(p).is_file() else None


def test_grid_and_counts() -> None:
    assert SPACE.shape == (46, 25)
    assert SPACE.num_choices == (3,) * 45 + (25,)
    assert SPACE.num_features == 160
    assert SPACE.num_distinct_architectures == (81 + 729 + 6561) ** 5 * 25


def test_strings_write_inactive_slots_as_x_and_read_table_fillers() -> None:
    g = SPACE.from_string(ANCHOR)
    s = SPACE.to_string(g)
    # stage 1 runs 3 of 4 blocks: slot 7 is inactive; stage 4 runs 2: slots 18, 19
    assert s.split("|")[0] == "ks=7-7-5-5-7-7-3-x-7-7-5-x-3-5-3-3-3-5-x-x"
    assert SPACE.from_string(s) == g and SPACE.canonical(g) == g
    assert SPACE.config(g)["d"] == [4, 3, 3, 4, 2] and SPACE.config(g)["r"] == 196
    with pytest.raises(ValueError, match="resolution '197'"):
        SPACE.from_string(ANCHOR.replace("r=196", "r=197"))
    with pytest.raises(ValueError, match="ks of block 0 'x'"):
        SPACE.from_string("ks=x" + ANCHOR[4:])
    with pytest.raises(ValueError, match="needs the four parts"):
        SPACE.from_string("ks=3")
    with pytest.raises(ValueError, match="of the form"):
        SPACE.from_string("ks=3|q=4")


def test_inactive_blocks_do_not_distinguish_architectures() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = list(SPACE.sample(rng))
        c = SPACE.canonical(g)
        inactive = [b for b, a in enumerate(SPACE.active_blocks(g)) if not a]
        for b in inactive:
            g[KS0 + b], g[E0 + b] = 2, 1
        assert SPACE.canonical(g) == c and SPACE.to_string(g) == SPACE.to_string(c)
        f1, f2 = (SPACE.features(torch.from_numpy(SPACE.one_hot_batch([x]))) for x in (g, c))
        torch.testing.assert_close(f1, f2)


def test_features_are_helps_layout_with_inactive_blocks_zeroed() -> None:
    g = SPACE.from_string(ANCHOR)
    f = SPACE.features(torch.from_numpy(SPACE.one_hot_batch([g])))[0].numpy()  # (160,)
    ks, e, r, d = f[:60].reshape(20, 3), f[60:120].reshape(20, 3), f[120:145], f[145:].reshape(5, 3)
    active = np.asarray(SPACE.active_blocks(g))
    assert active.sum() == 16 and np.all(ks[~active] == 0) and np.all(e[~active] == 0)
    assert np.all(ks[active].sum(1) == 1) and ks[0].tolist() == [0, 0, 1]  # kernel 7
    assert r.argmax() == (196 - 128) // 4 and r.sum() == 1
    assert d.argmax(1).tolist() == [2, 1, 1, 2, 0]


def test_features_are_differentiable_through_the_depth_decision() -> None:
    g = SPACE.from_string(ANCHOR)
    w = torch.from_numpy(SPACE.one_hot(g))[None].requires_grad_()
    SPACE.features(w)[:, :60].sum().backward()  # active ks rows count once each
    assert w.grad[0, D0, :3].tolist() == [2.0, 3.0, 4.0]  # choosing depth 2/3/4 of stage 0 runs 2/3/4 blocks
    assert torch.all(w.grad[0, R] == 0)


@pytest.mark.skipif(_ofa_table() is None, reason="MODNAS_MBV3_TABLE does not name the OFA table")
def test_every_table_architecture_parses_and_the_anchors_are_the_tables_rows() -> None:
    import pandas as pd

    df = pd.read_csv(_ofa_table())
    G = SPACE.table_genotypes({c: df[c].tolist() for c in ("ks", "e", "d", "r")})
    assert G.shape == (5000, 46)
    assert len({tuple(x) for x in G}) == 5000  # distinct even with fillers ignored (the table's README)
    assert [tuple(G[i]) for i in MBV3_ANCHOR_INDICES] == SPACE.anchors()
    back = SPACE.from_string(SPACE.to_string(tuple(G[17])))
    assert back == tuple(G[17])


def test_subnet_sizes_follow_the_choices() -> None:
    torch.manual_seed(0)
    net = SPACE.build_supernet((1, 16, 16), 4, C=2, N=1)
    rng = np.random.default_rng(1)
    small, big = list(SPACE.canonical(SPACE.sample(rng))), None
    for s in range(5):
        small[D0 + s] = 0
    small[R] = 0
    for b in range(20):
        small[KS0 + b], small[E0 + b] = 0, 0
    big = [2] * 45 + [24]
    n_small = sum(p.numel() for p in net.subnet(small).parameters())
    n_big = sum(p.numel() for p in net.subnet(big).parameters())
    assert n_small < n_big
    assert net.subnet(small).size == 9 and net.subnet(big).size == 16  # 16 px at r = 224, round(16 * 128 / 224)
    with torch.no_grad():
        assert net.subnet(big).eval()(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_kernel_transforms_start_at_the_centre_crop_and_are_shared_by_the_subnet() -> None:
    torch.manual_seed(0)
    net = SPACE.build_supernet((1, 12, 12), 3, C=2, N=1)
    blk = net.stages[0][0]
    w7 = blk.dw_weight[:6]
    torch.testing.assert_close(blk.kernel(3, 6), w7[:, :, 2:5, 2:5])  # identity transforms
    with torch.no_grad():
        blk.transforms["5"].add_(0.1 * torch.randn(25, 25))
    assert not torch.allclose(blk.kernel(3, 6), w7[:, :, 2:5, 2:5])
    g = [0] * 45 + [24]
    x = torch.randn(2, 1, 12, 12)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.subnet(g).eval()(x), net(x, torch.from_numpy(SPACE.one_hot(g))))


@pytest.mark.slow
@pytest.mark.skipif(_ofa_table() is None, reason="MODNAS_MBV3_TABLE does not name the OFA table")
def test_one_search_covers_cpu_profiles_and_the_tables_gpus_with_a_zero_shot_device() -> None:
    from modnas_ops.config import load_config
    from modnas_ops.search import SearchConfig, run_search

    rng = np.random.default_rng(1)
    archs = SPACE.anchors() + [SPACE.canonical(SPACE.sample(rng)) for _ in range(10)]
    rows = []
    for dev, scale in (("cpu-a", 1.0), ("cpu-b", 3.0)):  # latency grows with the expand ratios and resolution
        for i, g in enumerate(archs):
            f = SPACE.features(torch.from_numpy(SPACE.one_hot_batch([g])))[0].numpy()
            lat = scale * (1.0 + f[60:120] @ np.tile([0.03, 0.04, 0.06], 20) + 0.02 * f[120:145].argmax())
            rows.append({"space": "mbv3", "arch": SPACE.to_string(g), "device": dev, "latency_ms": lat,
                         "role": "anchor" if i < 10 else "sample"})  # fmt: skip
    items = {
        "mode": "supernet", "space": "mbv3", "epochs": 1, "steps_per_epoch": 1, "num_rays": 3, "archive": "true",
        "architect.finite_differences": "false", "supernet.dataset": "patterns", "supernet.C": 2, "supernet.N": 1,
        "supernet.network_options": '{"resolution": 12}', "supernet.pretrain_steps": 4,
        "supernet.freeze_weights": "true",
        "supernet.warmup_epochs": 0, "supernet.table_devices": "true", "supernet.predictor_epochs": 3,
        "supernet.predictor_batch_size": 256, "supernet.predictor_max_archs": 100, "supernet.dense_gradients": "false",
        "supernet.reference_archs": 4, "supernet.eval_batches": 1,
    }  # fmt: skip
    cfg = load_config(SearchConfig, None, [f"{k}={v}" for k, v in items.items()])
    res = run_search(cfg, progress=False, profile_rows=rows)
    split = {d.name: d.split for d in res.devices}
    assert len(split) == 2 + 9 and split["titan_rtx_64"] == "test" and split["cpu-a"] == "train"
    assert set(res.fronts["device"]) == set(split)
    for d in split:
        assert np.isfinite(res.metrics[f"hv/{d}"])
    gpu = res.fronts[res.fronts["device"] == "v100_1"]
    assert gpu["latency_measured"].dtype == bool  # table latencies replace predictions where the table has the arch

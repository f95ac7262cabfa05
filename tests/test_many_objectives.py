"""M = 2..4 objectives end to end: the objectives of a search are error plus every hardware metric its
predictor was fitted on. A profiling campaign that measures energy (a fake RAPL package counter at constant
power, read through the real RaplMeter) makes a supernet search with three objectives; an M = 3 fake world
with a known optimum per ray is found; preference grids, hypervolumes and fronts follow M."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from modnas_ops.architect import Architect, DeviceBatch, annealed_entropy_weight
from modnas_ops.config import load_config
from modnas_ops.hypernetwork import create_hypernetwork
from modnas_ops.pareto import das_dennis, hypervolume, preference_rays
from modnas_ops.sampling import create_sampler
from modnas_ops.search import SearchConfig, run_search
from modnas_ops.spaces import get_search_space

WATTS = 15.0  # the fake package's constant power


@pytest.fixture
def energy_profile(tmp_path, monkeypatch) -> list[dict]:
    """A real campaign of the toy space on two CPU configs, with energy from a fake RAPL counter that
    integrates a constant 15 W (so energy per call = 15 W x measured time per call)."""
    from profiling import energy
    from profiling.campaign import run_campaign
    from profiling.config import CampaignConfig

    d = tmp_path / "powercap" / "intel-rapl:0"
    d.mkdir(parents=True)
    (d / "name").write_text("package-0\n")
    (d / "energy_uj").write_text("0\n")
    (d / "max_energy_range_uj").write_text(f"{2**48}\n")
    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path / "powercap")
    monkeypatch.setattr(energy.RaplDomain, "read_uj", lambda self: int(time.perf_counter() * WATTS * 1e6))
    cfg = load_config(
        CampaignConfig,
        None,
        [
            "space=toy", "C=4", "N=2", "devices=[cpu-ort-t1-b1,cpu-ort-t1-b32]", "num_archs=8", "rounds=20",
            "max_seconds=5", "energy_seconds=0.02", f"output={tmp_path / 'profile.csv'}",
        ],
    )  # fmt: skip
    rows = run_campaign(cfg, progress=False).rows
    assert all(r["energy_source"] == "rapl" and float(r["energy_mj"]) > 0 for r in rows)
    return rows


def test_supernet_search_on_a_profile_with_energy_has_three_objectives(energy_profile) -> None:
    from modnas_ops.data import load_digits_splits

    cfg = load_config(
        SearchConfig,
        None,
        [
            "mode=supernet", "space=toy", "epochs=2", "steps_per_epoch=3", "num_rays=6", "supernet.C=4",
            "supernet.N=2", "supernet.batch_size=32", "supernet.predictor_epochs=20", "supernet.reference_archs=6",
            "supernet.eval_batches=1", "supernet.warmup_epochs=1", "architect.prefs_per_device=2",
        ],
    )  # fmt: skip
    res = run_search(cfg, progress=False, data=load_digits_splits(seed=0), profile_rows=energy_profile)
    assert res.objectives == ("error", "latency_ms", "energy_mj")
    assert res.hypernetwork.num_objectives == 3
    f = res.fronts
    assert {"pref_0", "pref_1", "pref_2", "pred_energy_mj", "true_energy_mj"} <= set(f.columns)
    np.testing.assert_allclose(f[["pref_0", "pref_1", "pref_2"]].to_numpy().sum(1), 1.0)
    assert (f["true_energy_mj"] > 0).all()
    hv = [res.metrics[f"hv/{dev}"] for dev in ("cpu-ort-t1-b1", "cpu-ort-t1-b32")]
    # the profile is timed for real: under load one device's front can fall outside its reference box (hv 0)
    assert np.all(np.isfinite(hv)) and min(hv) >= 0 and max(hv) > 0
    # a measured architecture is judged by its measured energy
    measured = {(r["device"], r["arch"]): float(r["energy_mj"]) for r in energy_profile}
    rows = zip(f["device"], f["arch"], f["true_energy_mj"], strict=True)
    hits = [(d, a, e) for d, a, e in rows if (d, a) in measured]
    assert hits and all(e == pytest.approx(measured[d, a]) for d, a, e in hits)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_preference_grids_and_hypervolume_follow_m(m: int) -> None:
    rays = preference_rays(12, m)
    assert rays.shape == (12, m) and np.allclose(rays.sum(1), 1.0) and (rays >= 0).all()
    grid = das_dennis(3, m)
    assert np.allclose(grid.sum(1), 1.0)
    point = np.full((1, m), 0.5)
    assert hypervolume(point, np.ones(m)) == pytest.approx(0.5**m)


class ThreeCostPredictor(nn.Module):
    """Two additive hardware metrics per device: (B, D, K), (B, A) -> (B, 2)."""

    metrics = ("latency_ms", "energy_mj")

    def __init__(self, shape: tuple[int, int], seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lat = nn.Parameter(torch.rand(shape, generator=g))
        self.energy = nn.Parameter(torch.rand(shape, generator=g))
        self.extra = nn.Parameter(torch.rand(shape, generator=g))

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        lat = (arch * (self.lat + embedding[:, :1, None] * self.extra)).sum((1, 2))
        return torch.stack([lat, (arch * self.energy).sum((1, 2))], dim=1)


@pytest.mark.parametrize("arch_seed", [0, 1])
@pytest.mark.parametrize("space_name", ["nb201", "toy"])
def test_three_objective_fake_world_optimum_is_found_per_ray(space_name: str, arch_seed: int) -> None:
    space = get_search_space(space_name)
    mask = torch.from_numpy(space.mask)
    emb = torch.rand(2, space.num_anchors, generator=torch.Generator().manual_seed(13))
    emb[:, 0] = torch.tensor([0.0, 1.0])
    rays = torch.tensor([[0.7, 0.15, 0.15], [0.15, 0.7, 0.15], [0.15, 0.15, 0.7]])

    def costs(err: torch.Tensor, pred: ThreeCostPredictor, t: int, r: torch.Tensor) -> torch.Tensor:
        lat = pred.lat + emb[t, 0] * pred.extra
        return (r[0] * err + r[1] * lat + r[2] * pred.energy).masked_fill(~mask, torch.inf)  # (D, K)

    for seed in range(1000):  # a world with one clear answer: every per-ray optimum wins each decision by 0.03
        err = torch.rand(space.shape, generator=torch.Generator().manual_seed(seed))
        pred = ThreeCostPredictor(space.shape, seed + 1000).requires_grad_(False)
        gaps = [float(costs(err, pred, t, r).sort(-1).values[:, :2].diff(dim=-1).min()) for t in range(2) for r in rays]
        if min(gaps) >= 0.03:
            break
    else:
        raise AssertionError("no well-separated world found")
    d = float(space.num_decisions)
    devices = DeviceBatch(("dev0", "dev1"), emb, torch.zeros(2, 3), torch.full((2, 3), d))
    torch.manual_seed(arch_seed)
    h = create_hypernetwork("kernel", shape=space.shape, num_objectives=3, embedding_dim=space.num_anchors,
                            mask=space.mask.tolist())  # fmt: skip
    arch = Architect(h, create_sampler("reinmax"), lambda a, batch=None: (a * err).sum((1, 2)), pred,
                     torch.optim.Adam(h.parameters(), lr=0.01), prefs_per_device=8, seed=arch_seed)  # fmt: skip
    steps = 400
    for step in range(steps):
        arch.entropy_weight = annealed_entropy_weight(0.05, 0.75, step / steps)
        arch.hypernet_step(devices)
    for t in range(2):
        for r in rays:
            assert torch.equal(arch.argmax_architectures(r[None], emb[t])[0], costs(err, pred, t, r).argmin(-1)), (t, r)


@pytest.mark.parametrize(("m", "panels"), [(2, 1), (3, 3), (4, 6)])
def test_front_figure_has_a_panel_per_pair_of_objectives(m: int, panels: int) -> None:
    import pandas as pd

    from modnas_ops.plots import front_figure

    objectives = ("error", "latency_ms", "energy_mj", "memory_mb")[:m]
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({f"{k}_{o}": rng.uniform(1, 2, 6) for o in objectives for k in ("pred", "true")})
    rows["on_front"] = [True, False] * 3
    rows["true_latency_ms"] = 0.024  # a constant axis (the tiny-net case) is padded, not zoomed into noise
    fig = front_figure(rows, "dev", {"hv": 0.5}, objectives)
    axes = fig.get_axes()
    assert len(axes) == panels
    assert {(a.get_ylabel(), a.get_xlabel()) for a in axes} >= {("error (%)", "latency (ms)")}
    if m == 4:
        assert ("latency (ms)", "peak memory (MiB)") in {(a.get_ylabel(), a.get_xlabel()) for a in axes}
    lm = front_figure(rows, "dev", {"hv": 0.5}, objectives, error_unit="nats per token")
    assert lm.get_axes()[0].get_ylabel() == "error (nats per token)"
    lo, hi = axes[0].get_xlim()
    assert hi - lo > 0.002

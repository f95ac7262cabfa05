"""Search loop on fake worlds with known answers: a synthetic NB201 table (additive accuracy and latency,
exact fake predictor) for benchmark mode, a synthetic profiling table + digits for supernet mode; query
budget counting, metrics, fronts, checkpoint resume after a kill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modnas_ops.benchmarks import MODNAS_MAX_ERROR, BenchmarkTable, evaluate_front, modnas_table_normaliser, true_front
from modnas_ops.config import ConfigError, load_config
from modnas_ops.errors import UserError
from modnas_ops.pareto import preference_rays
from modnas_ops.search import SearchConfig, available_modes, config_fingerprint, run_search
from modnas_ops.spaces import get_search_space

SPACE = get_search_space("nb201")
E, K = SPACE.shape


def _op_costs(seed: int) -> np.ndarray:
    """(E, K) latency cost per op: none 0, skip tiny, conv1x1 < pool < conv3x3, scaled per edge."""
    rng = np.random.default_rng(seed)
    base = np.array([0.0, 0.05, 1.0, 3.0, 0.4])
    return base[None, :] * rng.uniform(0.5, 1.5, size=(E, 1)) + rng.uniform(0, 0.1, size=(E, K))


DEVICES = {"dev_a": 0, "dev_b": 1, "dev_c": 2, "dev_test": 3}


@pytest.fixture(scope="module")
def world() -> tuple[BenchmarkTable, dict[str, np.ndarray]]:
    return make_world()


def make_world() -> tuple[BenchmarkTable, dict[str, np.ndarray]]:
    """A synthetic NB201 table: error additive in the ops (convs help, 'none' hurts; the all-'none' cell at
    90 %), latency additive with per-device op costs."""
    genotypes = np.asarray([SPACE.from_benchmark_index(i) for i in range(SPACE.num_architectures)], dtype=np.int64)
    onehot = SPACE.one_hot_batch([tuple(g) for g in genotypes]).reshape(len(genotypes), -1)
    gain = np.array([-4.0, 0.5, 1.5, 2.5, 1.0])[None, :] * np.linspace(1.0, 2.0, E)[:, None]  # (E, K)
    err = np.clip(30.0 - onehot @ gain.reshape(-1), 5.0, 90.0)
    err[np.all(genotypes == 0, axis=1)] = 90.0
    costs = {d: _op_costs(s) for d, s in DEVICES.items()}
    latency = {d: 1.0 + onehot @ c.reshape(-1) for d, c in costs.items()}
    table = BenchmarkTable(
        path=Path("synthetic.csv"),
        space=SPACE,
        archs=tuple(SPACE.to_string(g) for g in genotypes),
        genotypes=genotypes,
        accuracy={"cifar10": 100.0 - err},
        latency_ms=latency,
        train_devices=("dev_a", "dev_b", "dev_c"),
        test_devices=("dev_test",),
        anchor_indices=tuple(SPACE.benchmark_index(g) for g in SPACE.anchors()),
    )
    return table, costs


class ExactPredictor(nn.Module):
    """The MetaPredictor contract with the synthetic world's exact additive latency: the device is
    recognised by its embedding; output in anchor-normalised units."""

    metrics = ("latency_ms",)

    def __init__(self, table: BenchmarkTable, costs: dict[str, np.ndarray]) -> None:
        super().__init__()
        names = list(costs)
        self.register_buffer("emb", torch.tensor(np.stack([table.device_embedding(d) for d in names])))
        self.register_buffer("cost", torch.tensor(np.stack([costs[d] for d in names]), dtype=torch.float32))
        a = np.stack([table.anchor_latency_ms(d) for d in names])
        self.register_buffer("amin", torch.tensor(a.min(1), dtype=torch.float32))
        self.register_buffer("amax", torch.tensor(a.max(1), dtype=torch.float32))
        self.scale = nn.Parameter(torch.ones(()))  # a parameter, to check the predictor stays frozen

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        j = torch.cdist(embedding, self.emb).argmin(1)  # (B,)
        lat = 1.0 + (arch * self.cost[j]).sum(dim=(1, 2)) * self.scale
        return ((lat - self.amin[j]) / (self.amax[j] - self.amin[j]))[:, None]


def _bench_cfg(tmp_path: Path | None = None, **over: object) -> SearchConfig:
    items = {
        "mode": "benchmark",
        "epochs": 3,
        "steps_per_epoch": 30,
        "benchmark.query_budget": 150,
        "benchmark.initial_queries": 100,
        "benchmark.query_rounds": 1,
        "benchmark.surrogate_models": 1,
        "benchmark.surrogate_hidden": 32,
        "benchmark.surrogate_epochs": 100,
        "hypernet.lr": 0.05,
        "architect.prefs_per_device": 8,
        **({"checkpoint_dir": str(tmp_path)} if tmp_path else {}),
        **over,
    }
    return load_config(SearchConfig, None, [f"{k}={v}" for k, v in items.items()])


@pytest.fixture(scope="module")
def bench_result(world):
    table, costs = world
    history = []
    res = run_search(_bench_cfg(), on_epoch=lambda e, m: history.append(m), progress=False, table=table,
                     predictor=ExactPredictor(table, costs))  # fmt: skip
    return res, history


def test_benchmark_mode_counts_queries_and_reports_hv(world, bench_result) -> None:
    table, _ = world
    res, history = bench_result
    assert res.metrics["num_queries"] == 150 and res.metrics["query_budget"] == 150
    assert res.supernet is None and res.error_model is not None
    assert len(history) == 3
    for d in table.devices:
        hv, best, ratio = (res.metrics[f"{k}/{d}"] for k in ("hv", "hv_true", "hv_ratio"))
        assert best == pytest.approx(true_front(table, d).hv)
        assert ratio == pytest.approx(hv / best)
        assert 0 < ratio <= 1 + 1e-9
    assert {"hv_ratio_min/train", "hv_ratio_mean/train", "hv_ratio_min/test"} <= set(res.metrics)
    ratios = [res.metrics[f"hv_ratio/{d}"] for d in table.train_devices]
    assert res.metrics["hv_ratio_min/train"] == min(ratios)
    for d in table.devices:  # the per-ray optima of the search's own models, judged the same way
        assert 0 < res.metrics[f"model_optimum_hv_ratio/{d}"] <= 1 + 1e-9
        assert 0 < res.metrics[f"predictor_optimum_hv_ratio/{d}"] <= 1 + 1e-9
    assert "model_optimum_hv_ratio_min/test" in res.metrics


def test_benchmark_mode_beats_random_architectures(world, bench_result) -> None:
    """On additive objectives the found fronts are far better than 24 random architectures."""
    table, _ = world
    res, _ = bench_result
    rng = np.random.default_rng(0)
    for d in table.devices:
        random_ratio = np.mean(
            [evaluate_front(table, d, rng.choice(len(table), 24)).hv / true_front(table, d).hv for _ in range(10)]
        )
        assert res.metrics[f"hv_ratio/{d}"] > max(0.9, random_ratio + 0.05), d


def test_benchmark_fronts_hold_true_values(world, bench_result) -> None:
    table, _ = world
    res, _ = bench_result
    f = res.fronts
    assert len(f) == len(table.devices) * 24
    columns = {"device", "split", "ray", "pref_0", "pref_1", "arch", "nb201_index", "on_front"}
    columns |= {f"{kind}_{o}" for kind in ("pred", "true") for o in ("error", "latency_ms")}
    assert columns <= set(f.columns)
    np.testing.assert_allclose(f["true_error"], table.error()[f["nb201_index"]])
    for d, g in f.groupby("device"):
        np.testing.assert_allclose(g["true_latency_ms"], table.latency(d)[g["nb201_index"]])
        np.testing.assert_allclose(g[["pref_0", "pref_1"]].to_numpy(), preference_rays(24, 2))
        for arch, idx in zip(g["arch"], g["nb201_index"], strict=True):
            assert SPACE.benchmark_index(SPACE.from_string(arch)) == idx
    assert set(f.loc[f["device"] == "dev_test", "split"]) == {"test"}


def test_predictor_stays_frozen(world) -> None:
    table, costs = world
    pred = ExactPredictor(table, costs)
    run_search(_bench_cfg(epochs=1, steps_per_epoch=5), progress=False, table=table, predictor=pred)
    assert not pred.scale.requires_grad and pred.scale.grad is None and float(pred.scale) == 1.0


def _kill_after(epoch_to_kill: int, seen: list[dict]):
    """An ``on_epoch`` callback recording each epoch's metrics and killing the search after ``epoch_to_kill``."""

    def on_epoch(epoch: int, metrics: dict) -> None:
        seen.append(metrics)
        if epoch == epoch_to_kill:
            raise _Kill

    return on_epoch


class _Kill(Exception):
    pass


def test_benchmark_resume_after_kill_matches_uninterrupted_run(world, tmp_path) -> None:
    table, costs = world
    cfg = _bench_cfg(tmp_path, epochs=3, steps_per_epoch=5)

    with pytest.raises(_Kill):
        run_search(
            cfg,
            on_epoch=_kill_after(1, []),
            progress=False,
            table=table,
            predictor=ExactPredictor(table, costs),
        )
    epochs_seen = []
    resumed = run_search(cfg, on_epoch=lambda e, m: epochs_seen.append(e), progress=False, table=table,
                         predictor=ExactPredictor(table, costs))  # fmt: skip
    assert epochs_seen == [2]
    assert resumed.metrics["num_queries"] == 150  # no budget spent twice
    fresh = run_search(_bench_cfg(None, epochs=3, steps_per_epoch=5), progress=False, table=table,
                       predictor=ExactPredictor(table, costs))  # fmt: skip
    for p, q in zip(resumed.hypernetwork.parameters(), fresh.hypernetwork.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert resumed.metrics["hv/dev_a"] == pytest.approx(fresh.metrics["hv/dev_a"])


def _profile_rows(world) -> list[dict]:
    """A synthetic profiling table: anchors + 30 archs on two CPU 'devices' of the synthetic world."""
    _, costs = world
    rng = np.random.default_rng(1)
    archs = [tuple(g) for g in SPACE.anchors()] + [SPACE.sample(rng) for _ in range(30)]
    rows = []
    for dev, src in (("cpu-a", "dev_a"), ("cpu-b", "dev_b")):
        for i, g in enumerate(archs):
            lat = 1.0 + float((SPACE.one_hot(g) * costs[src]).sum())
            rows.append({"space": "nb201", "arch": SPACE.to_string(g), "device": dev, "latency_ms": lat,
                         "role": "anchor" if i < 10 else "sample"})  # fmt: skip
    return rows


def _supernet_cfg(tmp_path: Path | None = None, **over: object) -> SearchConfig:
    items = {
        "mode": "supernet",
        "epochs": 3,
        "steps_per_epoch": 2,
        "num_rays": 4,
        "supernet.C": 2,
        "supernet.N": 1,
        "supernet.batch_size": 32,
        "supernet.predictor_epochs": 5,
        "supernet.reference_archs": 4,
        "supernet.eval_batches": 1,
        "supernet.warmup_epochs": 1,
        "architect.prefs_per_device": 1,
        **({"checkpoint_dir": str(tmp_path)} if tmp_path else {}),
        **over,
    }
    return load_config(SearchConfig, None, [f"{k}={v}" for k, v in items.items()])


def test_supernet_mode_runs_resumes_and_reports(world, tmp_path) -> None:
    from modnas_ops.data import load_digits_splits

    data = load_digits_splits(seed=0)
    rows = _profile_rows(world)
    cfg = _supernet_cfg(tmp_path)
    seen: list[dict] = []

    with pytest.raises(_Kill):
        run_search(cfg, on_epoch=_kill_after(1, seen), progress=False, data=data, profile_rows=rows)
    assert "hypernet_loss" not in seen[0] and "hypernet_loss" in seen[1]  # epoch 0 is weight warm-up
    assert seen[0]["weight_loss"] > 0
    resumed = run_search(cfg, progress=False, data=data, profile_rows=rows)
    fresh = run_search(_supernet_cfg(None), progress=False, data=data, profile_rows=rows)
    for p, q in zip(resumed.hypernetwork.parameters(), fresh.hypernetwork.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    for d in ("cpu-a", "cpu-b"):
        assert np.isfinite(resumed.metrics[f"hv/{d}"]) and resumed.metrics[f"hv/{d}"] >= 0
        assert resumed.metrics[f"hv/{d}"] == pytest.approx(fresh.metrics[f"hv/{d}"])
        assert f"hv_reference/{d}" in resumed.metrics
    assert resumed.supernet is not None and resumed.supernet.C == 2
    f = resumed.fronts
    assert len(f) == 2 * 4 and {"true_error", "true_latency_ms", "latency_measured"} <= set(f.columns)
    assert ((f["true_error"] >= 0) & (f["true_error"] <= 100)).all()


def test_fingerprint_and_config_validation() -> None:
    a = _bench_cfg()
    assert config_fingerprint(a) == config_fingerprint(_bench_cfg(threads=2, checkpoint_dir="x"))
    assert config_fingerprint(a) != config_fingerprint(_bench_cfg(seed=1))
    assert {"benchmark", "supernet"} <= set(available_modes())
    with pytest.raises(ValueError, match="mode"):
        load_config(SearchConfig, None, ["mode=other"])
    with pytest.raises(ValueError, match="unknown search space"):
        load_config(SearchConfig, None, ["space=nope"])
    with pytest.raises(ValueError, match="steps_per_epoch"):
        load_config(SearchConfig, None, ["steps_per_epoch=0"])


# ---- accuracy surrogate and query oracle ------------------------------------------------------------------


def test_surrogate_reproduces_queried_errors_and_generalises(world, tmp_path) -> None:
    from modnas_ops.surrogate import ErrorSurrogate

    table, _ = world
    x = torch.from_numpy(SPACE.one_hot_batch([tuple(g) for g in table.genotypes]))
    err = torch.as_tensor(table.error(), dtype=torch.float32)
    rng = np.random.default_rng(0)
    q = rng.choice(len(x), 300, replace=False)
    s = ErrorSurrogate(SPACE.shape, num_models=2, hidden=64).fit(x[q], err[q], epochs=300)
    with torch.no_grad():
        pred = s(x)
    torch.testing.assert_close(pred[q], err[q], rtol=0.02, atol=0)  # the residual kernel interpolates
    rest = np.setdiff1d(np.arange(len(x)), q)[:3000]
    rank = np.corrcoef(np.argsort(np.argsort(pred[rest].numpy())), np.argsort(np.argsort(err[rest].numpy())))
    assert rank[0, 1] > 0.9  # additive truth: unqueried archs ranked well
    a = x[:4].clone().requires_grad_()
    s(a).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0  # differentiable w.r.t. the architecture
    s.save(tmp_path / "s.pt")
    s2 = ErrorSurrogate.load(tmp_path / "s.pt")
    with torch.no_grad():
        torch.testing.assert_close(s2(x[:50]), pred[:50])


def test_query_oracle_counts_unique_queries_and_enforces_the_budget() -> None:
    from modnas_ops.surrogate import BudgetExceeded, QueryOracle

    o = QueryOracle(np.arange(10.0), budget=4)
    np.testing.assert_array_equal(o.query([3, 3, 5]), [3.0, 3.0, 5.0])
    assert o.num_queries == 2 and o.remaining == 2
    o.query([5, 3])  # repeats are free
    assert o.num_queries == 2
    with pytest.raises(BudgetExceeded, match="exceeds the budget"):
        o.query([0, 1, 2])
    assert o.num_queries == 2
    np.testing.assert_array_equal(o.queried, [3, 5])
    with pytest.raises(ValueError, match="rows must lie"):
        o.query([10])


def test_pareto_relevant_ranks_by_best_front_over_devices() -> None:
    from modnas_ops.surrogate import pareto_relevant

    err = np.array([1.0, 2.0, 3.0, 2.5, 4.0])
    cost_a = np.array([5.0, 3.0, 1.0, 4.0, 6.0])  # fronts: {0, 1, 2}, {3}, {4}
    cost_b = np.array([5.0, 6.0, 7.0, 1.0, 8.0])  # fronts: {0, 3}, {1}, {2, 4}
    # best ranks (0, 0, 0, 0, 2); row 0 is at rank 0 on both devices, rows 1-3 on one; row 4 is beyond
    np.testing.assert_array_equal(pareto_relevant(err, [cost_a, cost_b], max_fronts=2), [0, 1, 2, 3])
    np.testing.assert_array_equal(pareto_relevant(err, [cost_a, cost_b], max_fronts=3), [0, 1, 2, 3, 4])
    assert 0 not in pareto_relevant(err, [cost_a], max_fronts=2, exclude=np.array([0]))


# ---- supernet pieces ---------------------------------------------------------------------------------------


def test_dense_forward_matches_values_and_reaches_unselected_ops() -> None:
    from modnas_ops.spaces.nb201.supernet import Supernet

    torch.manual_seed(0)
    net = Supernet(SPACE, C=2, N=1, in_channels=1, num_classes=3).train()
    x = torch.randn(4, 1, 8, 8)
    g = (3, 2, 1, 3, 2, 3)  # every node reaches the output
    w = torch.tensor(SPACE.one_hot(g), requires_grad=True)
    torch.testing.assert_close(net(x, w, dense=True), net(x, w), rtol=0, atol=0)
    net(x, w, dense=True).square().sum().backward()
    unselected = torch.ones(E, K, dtype=torch.bool)
    unselected[torch.arange(E), torch.tensor(g)] = False
    unselected[:, 0] = False  # 'none' outputs zeros: its gradient is zero on any path
    assert (w.grad[unselected] != 0).all()


def test_pretrain_supernet_save_load(tmp_path) -> None:
    from modnas_ops.data import load_digits_splits
    from modnas_ops.spaces.nb201.supernet import Supernet
    from modnas_ops.supernet_training import PretrainConfig, load_supernet, pretrain_supernet, save_supernet

    data = load_digits_splits(seed=0)
    torch.manual_seed(0)
    net = Supernet(SPACE, C=2, N=1, in_channels=1, num_classes=10)
    hist = pretrain_supernet(net, data.train, data.valid, PretrainConfig(epochs=2, steps_per_epoch=15,
                             batch_size=32, eval_archs=3), progress=False)  # fmt: skip
    assert len(hist) == 2 and hist[1]["train_loss"] < hist[0]["train_loss"]
    assert 0 <= hist[-1]["valid_error_min"] <= hist[-1]["valid_error_mean"] <= 100
    path = save_supernet(net, tmp_path / "sn.pt")
    net2 = load_supernet(path)
    x = data.valid.tensors[0][:8]
    w = torch.tensor(SPACE.one_hot((3, 3, 3, 3, 3, 3)))
    net.eval(), net2.eval()
    torch.testing.assert_close(net2(x, w), net(x, w))
    with pytest.raises(UserError, match="missing.pt: no such supernet file"):
        load_supernet(tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="corrupt.pt: not a readable supernet file"):
        load_supernet(tmp_path / "corrupt.pt")
    torch.save(
        {
            "format": 2,
            "space": "nb201",
            "build_args": {"input_shape": [1], "num_classes": 10, "C": 2},
            "state_dict": {},
        },
        tmp_path / "foreign.pt",
    )
    with pytest.raises(UserError, match="foreign.pt: weights do not fit"):
        load_supernet(tmp_path / "foreign.pt")


def test_reference_normaliser_bounds_and_degenerate_objectives() -> None:
    from modnas_ops.objectives import reference_normaliser

    ref = np.array([[10.0, 1.0], [20.0, 3.0], [95.0, 0.5]])  # the 95 % row is dropped (MODNAS rule)
    n = reference_normaliser(ref, np.array([[5.0, 2.0]]))
    assert n.lo == (10.0, 1.0) and n.hi == (20.0, 3.0)
    flat = reference_normaliser(np.array([[30.0, 1.0], [30.0, 2.0]]), np.array([[10.0, 1.5]]))
    assert flat.lo == (10.0, 1.0) and flat.hi == (30.0, 2.0)  # error bounds from reference + found
    single = reference_normaliser(np.array([[30.0, 1.0]]), np.array([[30.0, 1.0]]))
    assert single.hi[0] > single.lo[0] and single.hi[1] > single.lo[1]


def test_predictor_optimum_with_an_exact_predictor_is_the_rays_optimum_of_the_table(world, bench_result) -> None:
    # with exact latencies and the true error, the diagnostic is the brute-force 24-ray optimum of the table
    table, _ = world
    res, _ = bench_result
    rays = preference_rays(_bench_cfg().num_rays, 2)
    error = table.error("cifar10")
    for d in table.devices:
        norm = modnas_table_normaliser(table, d)
        z = norm(np.column_stack([error, table.latency(d)]))  # (N, 2)
        z[error >= MODNAS_MAX_ERROR] = np.inf
        picks = [int(np.argmin(z @ r)) for r in rays]
        expected = evaluate_front(table, d, picks).hv / true_front(table, d).hv
        assert res.metrics[f"predictor_optimum_hv_ratio/{d}"] == pytest.approx(expected, rel=1e-6)


def test_frozen_weights_train_only_during_the_warm_up(world) -> None:
    from modnas_ops.data import load_digits_splits

    seen: list[dict] = []
    cfg = _supernet_cfg(None, **{"supernet.freeze_weights": "true", "supernet.warmup_epochs": 1})
    run_search(cfg, on_epoch=lambda e, m: seen.append(m), progress=False, data=load_digits_splits(seed=0),
               profile_rows=_profile_rows(world))  # fmt: skip
    assert "weight_loss" in seen[0] and "hypernet_loss" not in seen[0]  # warm-up: weights only
    assert all("weight_loss" not in m and "hypernet_loss" in m for m in seen[1:])  # then the hypernetwork only


def test_surrogate_error_term_is_fitted_on_the_frozen_supernet_and_resumes(world, tmp_path) -> None:
    from modnas_ops.data import load_digits_splits
    from modnas_ops.surrogate import ErrorSurrogate

    data, rows = load_digits_splits(seed=0), _profile_rows(world)
    over = {"supernet.freeze_weights": "true", "supernet.warmup_epochs": 1, "supernet.error_term": "surrogate",
            "supernet.surrogate_archs": 24, "supernet.surrogate_epochs": 20}  # fmt: skip
    seen: list[dict] = []

    with pytest.raises(_Kill):
        run_search(_supernet_cfg(tmp_path, **over), on_epoch=_kill_after(1, seen), progress=False, data=data,
                   profile_rows=rows)  # fmt: skip
    assert "surrogate_holdout_tau" not in seen[0]  # warm-up: the weights still move, nothing fitted
    assert -1.0 <= seen[1]["surrogate_holdout_tau"] <= 1.0 and seen[1]["time/surrogate_judge_s"] > 0
    res = run_search(_supernet_cfg(tmp_path, **over), progress=False, data=data, profile_rows=rows)
    surrogate = res.error_model
    assert isinstance(surrogate, ErrorSurrogate) and len(surrogate.queried) == 24  # restored, not refitted
    obj = res.objective
    g = [obj.space.sample(np.random.default_rng(3)) for _ in range(4)]
    arch = torch.from_numpy(obj.space.one_hot_batch(g)).requires_grad_(True)  # (4, E, K)
    term = obj.error_term(arch)  # the surrogate's error, differentiable in the architecture
    assert torch.equal(term, surrogate(arch))
    (grad,) = torch.autograd.grad(term.sum(), arch)
    assert bool(grad.abs().sum() > 0)
    with pytest.raises(ConfigError, match="supernet.error_term"):  # the supernet's errors must stay fixed
        _supernet_cfg(None, **{"supernet.error_term": "surrogate"})
    with pytest.raises(ConfigError, match="supernet.error_term"):
        _supernet_cfg(None, **{"supernet.error_term": "oracle"})


def test_sandwich_pretraining_trains_the_smallest_and_largest_every_step(monkeypatch) -> None:
    from modnas_ops.data import get_dataset
    from modnas_ops.supernet_training import PretrainConfig, pretrain_supernet

    space = get_search_space("gpt2")
    data = get_dataset("pydoc-bytes", seed=0)
    torch.manual_seed(0)
    net = space.build_supernet(data.input_shape, data.num_classes, C=4, N=1)
    seen: list[tuple[int, ...]] = []
    forward = type(net).forward

    def spy(self, x, w, *a, **kw):
        if self.training and torch.is_grad_enabled():
            seen.append(space.decode(w))
        return forward(self, x, w, *a, **kw)

    monkeypatch.setattr(type(net), "forward", spy)
    cfg = PretrainConfig(epochs=1, steps_per_epoch=3, batch_size=4, eval_archs=1, sampling="sandwich",
                         sandwich_random=2)  # fmt: skip
    hist = pretrain_supernet(net, data.train, data.valid, cfg, progress=False, task=data.task)
    small, large = space.smallest_and_largest()
    assert len(seen) == 3 * 4 and np.isfinite(hist[0]["train_loss"])
    for step in range(3):  # largest and smallest first, then 2 uniform ones, on one batch
        assert [space.canonical(g) for g in seen[4 * step : 4 * step + 2]] == [small, large]
    with pytest.raises(ValueError, match="sampling"):
        PretrainConfig(sampling="fair")
    with pytest.raises(ConfigError, match="supernet.pretrain_sampling"):  # NB201's ops have no size order
        load_config(SearchConfig, None, ["space=nb201", "supernet.pretrain_sampling=sandwich"])


def test_weight_optimizer_drives_pretraining_and_the_search_weight_steps(world) -> None:
    from modnas_ops.data import get_dataset, load_digits_splits
    from modnas_ops.supernet_training import PretrainConfig, pretrain_supernet

    space = get_search_space("gpt2")
    data = get_dataset("pydoc-bytes", seed=0)
    torch.manual_seed(0)
    net = space.build_supernet(data.input_shape, data.num_classes, C=4, N=1)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    lr = 1e-3
    cfg = PretrainConfig(epochs=1, steps_per_epoch=1, batch_size=4, eval_archs=1, lr=lr, weight_decay=0.0,
                         grad_clip=0.0, optimizer="adamw")  # fmt: skip
    pretrain_supernet(net, data.train, data.valid, cfg, progress=False, task=data.task)
    moved = torch.cat([(p.detach() - before[k]).abs().flatten() for k, p in net.named_parameters()])
    moved = moved[moved > 0]  # the sampled subnet's slices; Adam's first step: lr * |g| / (|g| + eps)
    assert len(moved) > 100 and float(moved.max()) <= lr * (1 + 1e-3)
    assert float(((moved - lr).abs() <= 1e-3 * lr).float().mean()) > 0.8
    with pytest.raises(ValueError, match="optimizer"):
        PretrainConfig(optimizer="lamb")
    with pytest.raises(ConfigError, match="supernet.weight_optimizer: unknown weight optimizer 'lamb'"):
        load_config(SearchConfig, None, ["mode=supernet", "supernet.weight_optimizer=lamb"])
    over = {"supernet.weight_optimizer": "adamw", "supernet.weight_lr": 0.003, "epochs": 2}
    res = run_search(_supernet_cfg(None, **over), progress=False, data=load_digits_splits(seed=0),
                     profile_rows=_profile_rows(world))  # fmt: skip
    assert type(res.objective.weight_optimizer) is torch.optim.AdamW
    assert res.objective.weight_optimizer.state  # it took the search's weight steps
    assert all(np.isfinite(res.metrics[f"hv/{d}"]) for d in ("cpu-a", "cpu-b"))


def test_pretrain_steps_run_once_and_a_resume_does_not_repeat_them(world, tmp_path, monkeypatch) -> None:
    import modnas_ops.supernet_training as st
    from modnas_ops.data import load_digits_splits

    calls: list[int] = []
    real = st.pretrain_supernet

    def counting(net, train, valid, cfg, *a, **kw):
        calls.append(cfg.epochs * cfg.steps_per_epoch)
        return real(net, train, valid, cfg, *a, **kw)

    monkeypatch.setattr(st, "pretrain_supernet", counting)
    data, rows = load_digits_splits(seed=0), _profile_rows(world)
    cfg = _supernet_cfg(tmp_path, **{"supernet.pretrain_steps": 8, "supernet.freeze_weights": "true",
                                     "supernet.warmup_epochs": 0})  # fmt: skip
    seen: list[dict] = []

    with pytest.raises(_Kill):
        run_search(cfg, on_epoch=_kill_after(0, seen), progress=False, data=data, profile_rows=rows)
    assert calls == [8] and "pretrain_loss" in seen[0] and "weight_loss" not in seen[0]
    run_search(cfg, progress=False, data=data, profile_rows=rows)
    assert calls == [8]  # resumed from the checkpoint: the pre-trained weights are in it


def test_archive_fronts_hold_every_evaluated_architecture_judged_at_the_end(world) -> None:
    from modnas_ops.data import load_digits_splits

    data, rows = load_digits_splits(seed=0), _profile_rows(world)
    seen: list[dict] = []
    plain = run_search(_supernet_cfg(None), progress=False, data=data, profile_rows=rows)
    archived = run_search(_supernet_cfg(None, archive="true"), on_epoch=lambda e, m: seen.append(m), progress=False,
                          data=data, profile_rows=rows)  # fmt: skip
    for d in ("cpu-a", "cpu-b"):
        last = set(plain.fronts.loc[plain.fronts["device"] == d, "arch"])
        mine = archived.fronts[archived.fronts["device"] == d]
        assert last <= set(mine["arch"]) and mine["arch"].is_unique  # the last rays' archs, each once
        assert set(mine["epoch"]) <= {0, 1, 2} and {"pref_0", "pref_1"} <= set(mine.columns)
        assert archived.metrics[f"hv/{d}"] >= plain.metrics[f"hv/{d}"] - 1e-9  # a superset dominates more
        ref = archived.reference[d]
        assert ref.shape == (4, 2) and np.all(np.isfinite(ref))


def test_refinement_adds_the_front_neighbours_and_keeps_or_dominates_the_front(world) -> None:
    from modnas_ops.data import load_digits_splits

    data, rows = load_digits_splits(seed=0), _profile_rows(world)
    base = run_search(_supernet_cfg(None, archive="true"), progress=False, data=data, profile_rows=rows)
    refined = run_search(_supernet_cfg(None, archive="true", refine_rounds=1), progress=False, data=data,
                         profile_rows=rows)  # fmt: skip
    for d in ("cpu-a", "cpu-b"):
        front = base.fronts[(base.fronts["device"] == d) & base.fronts["on_front"]]
        mine = refined.fronts[refined.fronts["device"] == d]
        want = {
            SPACE.to_string(SPACE.canonical(n)) for a in front["arch"] for n in SPACE.neighbours(SPACE.from_string(a))
        }
        assert want <= set(mine["arch"]) and set(mine.loc[mine["source"] == "neighbour", "arch"]) <= want
        cols = ["true_error", "true_latency_ms"]
        new_front = mine.loc[mine["on_front"], cols].to_numpy()
        for old in front[cols].to_numpy():  # each old front point is kept or dominated (same judged values)
            assert np.any(np.all(new_front <= old + 1e-9, axis=1))
    with pytest.raises(UserError, match="refine_rounds"):
        _supernet_cfg(None, refine_rounds=1)  # needs the archive

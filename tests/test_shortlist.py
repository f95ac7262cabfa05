"""Fronts confirmed by measurement (modnas_ops/shortlist.py): the generator's k most probable genotypes
(exact against brute force), the confirmed front on the synthetic NB201 world (every architecture measured and
every error known: exactly the true front), a wrong predictor corrected by measurement, the cap, the metrics,
predicted layers with adaptive picks, the optimistic correction and farthest-point thinning (exact answers),
the search's units, and supernet mode with an injected measurement."""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pytest
import torch

from modnas_ops.config import FieldError
from modnas_ops.objectives.base import SearchDevice
from modnas_ops.predictor import denormalise
from modnas_ops.sampling import top_k_genotypes
from modnas_ops.search import run_search
from modnas_ops.shortlist import ShortlistConfig, _optimistic, confirm_fronts, farthest_points
from modnas_ops.spaces import get_search_space
from tests.test_search import SPACE, ExactPredictor, _bench_cfg, _profile_rows, _supernet_cfg, make_world


@pytest.fixture(scope="module")
def world():
    return make_world()


def test_top_k_genotypes_is_the_brute_force_order() -> None:
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(4, 3, generator=g, dtype=torch.float64), -1)
    lp[1, 2] = -torch.inf  # an invalid choice never appears
    every = [c for c in itertools.product(range(3), repeat=4) if c[1] != 2]
    score = {c: float(sum(lp[e, c[e]] for e in range(4))) for c in every}
    want = sorted(every, key=lambda c: -score[c])
    got = top_k_genotypes(lp, 10)
    assert got == want[:10]
    assert top_k_genotypes(lp, 100) == want  # asking for more than exist: all of them


def test_top_k_genotypes_are_distinct_canonical_architectures() -> None:
    space = get_search_space("gpt2")  # slots past n_layer are inactive: many genotypes, one architecture
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(space.shape, generator=g, dtype=torch.float64)
    lp = torch.log_softmax(logits.masked_fill(~torch.as_tensor(space.mask), -torch.inf), -1)
    got = top_k_genotypes(lp, 6, space)
    assert len(got) == 6 == len(set(got)) and all(space.canonical(x) == x for x in got)
    assert got[0] == space.canonical(tuple(int(i) for i in lp.argmax(-1)))


def test_config_validation() -> None:
    with pytest.raises(FieldError, match="pool"):
        ShortlistConfig(k=4, pool=2)
    with pytest.raises(FieldError, match="front"):
        ShortlistConfig(k=1, front="best")
    with pytest.raises(FieldError, match="max_per_device"):
        ShortlistConfig(k=1, max_per_device=-1)
    with pytest.raises(FieldError, match="select"):
        ShortlistConfig(k=1, select="best")
    with pytest.raises(FieldError, match="adaptive"):
        ShortlistConfig(k=1, max_per_device=4, adaptive=5)
    with pytest.raises(FieldError, match="optimism"):
        ShortlistConfig(k=1, optimism=-0.5)


def test_scaled_is_the_search_units_of_raw_values() -> None:
    """Raw values (ms) back in the units the architect scalarises: anchor-normalised, then min-max by lo, hi."""
    anchors = {"latency_ms": np.linspace(2.0, 12.0, 10)}
    dev = SearchDevice("d", "train", anchors).with_bounds([5.0, 0.2], [45.0, 1.2])
    y = np.array([0.2, 0.7, 1.2])  # anchor-normalised latencies
    raw = np.column_stack([[5.0, 25.0, 45.0], denormalise(y, anchors["latency_ms"])])  # (3, 2): error %, ms
    assert np.allclose(dev.scaled(raw, ["latency_ms"]), [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])


def test_farthest_points_takes_the_extremes_then_the_middle() -> None:
    x = np.array([0.0, 0.1, 0.45, 0.5, 1.0])
    z = np.column_stack([x, 1.0 - x])  # (5, 2) along a front, no ties
    assert farthest_points(z, 3) == [0, 4, 3]  # 0.5 is farther from both ends than 0.45
    assert farthest_points(z, 4) == [0, 4, 3, 1]  # then 0.1 (0.1 from 0) before 0.45 (0.05 from 0.5)
    assert farthest_points(z, 9) == list(range(5))


class _Recorded:
    """What :func:`_optimistic` asks of an objective: predictions and the device's measurements."""

    def __init__(self, predicted: np.ndarray, measured: np.ndarray) -> None:
        self.p, self.m = predicted, measured

    def measured_values(self, dev, genotypes):
        return self.m[:, None]

    def estimate(self, dev, genotypes, measured=True):
        return np.column_stack([np.zeros(len(self.p)), self.p])


def test_optimistic_correction_is_median_ratio_less_robust_spreads() -> None:
    pred = np.array([1.0, 2.0, 4.0])
    est = np.array([[5.0, 10.0], [6.0, 3.0]])  # (N, M): error, predicted ms
    # every measurement twice the prediction: no spread, so every optimism gives exactly twice
    for optimism in (0.0, 1.0, 3.0):
        got = _optimistic(_Recorded(pred, 2.0 * pred), None, [(0,)] * 3, est, optimism)
        assert np.allclose(got, [[5.0, 20.0], [6.0, 6.0]])
    # ratios 1, 2, 4: median log 2, MAD log 2 -> times exp(log 2 * (1 - 1.4826 * optimism)); errors untouched
    got = _optimistic(_Recorded(pred, pred * np.array([1.0, 2.0, 4.0])), None, [(0,)] * 3, est, 1.0)
    assert np.allclose(got, est * [1.0, np.exp(np.log(2.0) * (1.0 - 1.4826))])
    # fewer than two usable pairs (a zero-millisecond measurement is not one): no correction
    got = _optimistic(_Recorded(pred, np.array([0.0, np.nan, 3.0])), None, [(0,)] * 3, est, 1.0)
    assert np.array_equal(got, est)


def test_k_curve_entries_parse_or_name_the_bad_one(capsys) -> None:
    from projects.bench_search import _curve_points

    p = argparse.ArgumentParser(prog="bench_search")
    assert _curve_points(p, "0, 8:4,16,48:48") == [(0, 0), (8, 4), (16, 8), (48, 48)]
    with pytest.raises(SystemExit):
        _curve_points(p, "8:9")
    assert "'8:9'" in capsys.readouterr().err


class SkewedPredictor(ExactPredictor):
    """The exact predictor with dev_b's conv3x3 cost halved: wrong on dev_b, exact elsewhere."""

    def __init__(self, table, costs) -> None:
        costs = dict(costs)
        costs["dev_b"] = costs["dev_b"] * np.array([1.0, 1.0, 1.0, 0.5, 1.0])
        super().__init__(table, costs)


@pytest.fixture
def errors_known(monkeypatch):
    """The search's error estimate is the table's true error (a perfect accuracy model), so only the
    shortlist decides what the confirmed front misses."""
    from modnas_ops.objectives.benchmark import BenchmarkObjective

    def true_error(self, genotypes):
        return self.true_error[[self.space.benchmark_index(g) for g in genotypes]]

    monkeypatch.setattr(BenchmarkObjective, "estimated_error", true_error)


@pytest.mark.slow  # every one of the 15,625 architectures measured on 4 devices (~7 s)
def test_everything_measured_and_known_gives_exactly_the_true_front(world, errors_known) -> None:
    table, costs = world
    n = SPACE.num_architectures
    res = run_search(_bench_cfg(num_rays=3, **{"shortlist.k": n}), progress=False, table=table,
                     predictor=SkewedPredictor(table, costs))  # fmt: skip
    for d in table.devices:
        assert res.metrics[f"hv_ratio/{d}"] == pytest.approx(1.0, abs=1e-12)
        assert res.metrics[f"measurements/{d}"] == n  # every architecture, once
    assert "hv_ratio_zero_shot/dev_test" in res.metrics and "hv_ratio_unconfirmed/dev_a" in res.metrics
    assert "hv_ratio_zero_shot_min/test" in res.metrics and "hv_ratio_min/train" in res.metrics
    rows = res.fronts[res.fronts["device"] == "dev_b"]
    assert np.allclose(rows["measured_latency_ms"], rows["true_latency_ms"])  # measured = the table's


def test_measurement_corrects_a_wrong_predictor_within_the_cap(world, errors_known) -> None:
    table, costs = world
    cfg = _bench_cfg(**{"shortlist.k": 4, "shortlist.pool": 16, "shortlist.max_per_device": 30})
    res = run_search(cfg, progress=False, table=table, predictor=SkewedPredictor(table, costs))
    m = res.metrics
    for d in table.devices:
        before = m[f"hv_ratio_{'zero_shot' if table.split(d) == 'test' else 'unconfirmed'}/{d}"]
        assert m[f"hv_ratio/{d}"] >= before - 1e-12  # the searched front is among the candidates
        assert 0 < m[f"measurements/{d}"] <= m[f"shortlist/{d}"] <= 30
    assert m["hv_ratio/dev_b"] > m["hv_ratio_unconfirmed/dev_b"] + 1e-3  # the skewed device gains
    front = res.fronts[res.fronts["on_front"]]
    assert (front["source"] == "shortlist").all() and front["measured_latency_ms"].notna().all()
    # the k vs cost curve re-confirms the same search: larger shortlists, no fewer candidates
    sizes = []
    for k in (1, 2, 4):
        _, after, confirmed = confirm_fronts(
            res.objective, res.hypernetwork, res.rays, torch.device("cpu"), ShortlistConfig(k=k, pool=16),
            res.scalarise, res.unconfirmed_fronts,
        )  # fmt: skip
        assert confirmed == list(table.devices)
        sizes.append(after["shortlist/dev_b"])
    assert sizes == sorted(sizes)


def test_layers_with_adaptive_picks_stay_within_the_cap_and_beat_layers_alone(world, errors_known) -> None:
    table, costs = world
    over = {"shortlist.k": 1, "shortlist.pool": 64, "shortlist.select": "layers", "shortlist.max_per_device": 10}
    res = run_search(_bench_cfg(**over, **{"shortlist.adaptive": 5}), progress=False, table=table,
                     predictor=SkewedPredictor(table, costs))  # fmt: skip
    m = res.metrics
    for d in table.devices:
        before = m[f"hv_ratio_{'zero_shot' if table.split(d) == 'test' else 'unconfirmed'}/{d}"]
        assert m[f"hv_ratio/{d}"] >= before - 1e-12
        assert 0 < m[f"measurements/{d}"] <= m[f"shortlist/{d}"] <= 10
    saved = res.objective.forget_measurements()  # the same search confirmed afresh, no adaptive picks
    plain = ShortlistConfig(k=1, pool=64, select="layers", max_per_device=10)
    _, after, _ = confirm_fronts(res.objective, res.hypernetwork, res.rays, torch.device("cpu"), plain,
                                 res.scalarise, res.unconfirmed_fronts)  # fmt: skip
    res.objective.restore_measurements(saved)
    assert all(after[f"measurements/{d}"] <= 10 for d in table.devices)
    assert m["hv_ratio/dev_b"] > after["hv_ratio/dev_b"]  # the skewed device: measuring one at a time helps
    assert sum(m[f"hv_ratio/{d}"] for d in table.devices) >= sum(after[f"hv_ratio/{d}"] for d in table.devices)


def test_ray_rule_keeps_one_measured_best_per_ray(world) -> None:
    table, costs = world
    res = run_search(_bench_cfg(**{"shortlist.k": 2, "shortlist.front": "rays"}), progress=False, table=table,
                     predictor=SkewedPredictor(table, costs))  # fmt: skip
    rows = res.fronts[res.fronts["device"] == "dev_b"]
    assert len(rows) == res.rays.shape[0] and list(rows["ray"]) == list(range(len(rows)))
    assert np.allclose(rows[["pref_0", "pref_1"]].to_numpy(), res.rays)


def test_supernet_mode_uses_the_injected_measurement(world) -> None:
    from modnas_ops.data import load_digits_splits

    calls: list[tuple[str, int]] = []

    def measure(objective, device, genotypes):
        calls.append((device.name, len(genotypes)))
        if device.name == "cpu-b":
            return None  # nothing measures there: its front stays predicted
        out = np.full((len(genotypes), len(objective.metrics)), np.nan)
        out[:, 0] = [7.0 + 0.01 * i for i in range(len(genotypes))]
        return out

    data, rows = load_digits_splits(seed=0), _profile_rows(world)
    cfg = _supernet_cfg(None, archive="true", **{"shortlist.k": 1})
    res = run_search(cfg, progress=False, data=data, profile_rows=rows, measure=measure)
    assert {name for name, _ in calls} == {"cpu-a", "cpu-b"}
    a = res.fronts[res.fronts["device"] == "cpu-a"]
    profiled = {r["arch"] for r in rows if r["device"] == "cpu-a"}
    fresh = a[~a["arch"].isin(profiled)]
    assert len(fresh) and np.all((fresh["measured_latency_ms"] >= 7.0) & (fresh["measured_latency_ms"] < 8.0))
    assert np.allclose(fresh["true_latency_ms"], fresh["measured_latency_ms"])  # judged with the measurement
    assert res.metrics["measurements/cpu-b"] == 0.0 and "hv_unconfirmed/cpu-a" in res.metrics
    assert "hv_unconfirmed/cpu-b" not in res.metrics and "measured_latency_ms" in res.fronts

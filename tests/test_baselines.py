"""Baselines infrastructure: budget accounting, cache, history/HV, registry, evaluators (tiny fake spaces)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pytest

from modnas_ops.baselines import (
    Budget,
    BudgetedEvaluator,
    BudgetExhausted,
    History,
    HypervolumeTracker,
    MeasuredEvaluator,
    available_baselines,
    evaluations_to_reach,
    get_baseline,
    hypervolume_curve,
    sample_new,
)
from modnas_ops.pareto import Normaliser, pareto_mask
from modnas_ops.spaces import Decision, Genotype, SearchSpace


class ToySpace(SearchSpace):
    """E edges x K ops, not registered (so other tests' registry sweeps never see it)."""

    name = "toy"

    def __init__(self, num_edges: int, num_ops: int) -> None:
        self.decisions = tuple(Decision(f"e{i}", tuple(f"op{k}" for k in range(num_ops))) for i in range(num_edges))

    def to_string(self, genotype: Sequence[int]) -> str:
        return "-".join(map(str, self.validate(genotype)))

    def from_string(self, arch: str) -> Genotype:
        return self.validate(tuple(int(x) for x in arch.split("-")))

    def anchors(self) -> list[Genotype]:
        return []


class SumEvaluator:
    """error = sum (K-1-g)^2, latency = sum g: every op sum is on the front (balanced genotypes win).

    Counts the genotypes it is asked for, to check that the budget layer never re-evaluates.
    """

    objective_names = ("error", "latency_ms")
    num_objectives = 2

    def __init__(self, num_ops: int) -> None:
        self.K = num_ops
        self.calls: list[Genotype] = []

    def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        self.calls.extend(tuple(g) for g in genotypes)
        G = np.asarray(genotypes, dtype=np.float64).reshape(len(genotypes), -1)  # (n, E)
        return np.stack([((self.K - 1 - G) ** 2).sum(1), G.sum(1)], axis=1)


class HammingEvaluator:
    """Objective m = Hamming distance to target m; the front is the 'box' between the targets."""

    def __init__(self, targets: Sequence[Genotype]) -> None:
        self.targets = np.asarray(targets)  # (M, E)
        self.num_objectives = len(targets)
        self.objective_names = tuple(f"distance_{m}" for m in range(len(targets)))
        self.calls: list[Genotype] = []

    def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        self.calls.extend(tuple(g) for g in genotypes)
        G = np.asarray(genotypes).reshape(len(genotypes), -1)  # (n, E)
        return np.stack([(G != t).sum(1) for t in self.targets], axis=1).astype(np.float64)


def brute_force_front(space: SearchSpace, evaluator) -> set[Genotype]:
    genotypes = list(space.all_genotypes())
    mask = pareto_mask(evaluator.evaluate(genotypes))
    return {g for g, m in zip(genotypes, mask, strict=True) if m}


# ---- budget + cache ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_evaluations": 0}, "max_evaluations must be >= 1"),
        ({"max_evaluations": 2.5}, "must be an integer"),
        ({"max_evaluations": 5, "max_seconds": 0.0}, "max_seconds must be a positive"),
        ({"max_evaluations": 5, "max_seconds": float("inf")}, "max_seconds must be a positive"),
    ],
)
def test_budget_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Budget(**kwargs)


def test_cache_hits_and_repeats_in_a_batch_are_free() -> None:
    space, raw = ToySpace(3, 3), SumEvaluator(3)
    ev = BudgetedEvaluator(raw, 10, space)
    a, b = (0, 1, 2), (2, 2, 2)
    F = ev.evaluate([a, b, a])
    np.testing.assert_array_equal(F, [[5.0, 3.0], [0.0, 6.0], [5.0, 3.0]])
    assert ev.num_evaluations == 2 and raw.calls == [a, b]
    np.testing.assert_array_equal(ev.evaluate([b]), [[0.0, 6.0]])
    assert ev.num_evaluations == 2 and ev.remaining == 8 and raw.calls == [a, b]
    assert ev.is_known(a) and not ev.is_known((0, 0, 0))


def test_budget_is_never_exceeded_and_known_archs_stay_free() -> None:
    space, raw = ToySpace(3, 3), SumEvaluator(3)
    ev = BudgetedEvaluator(raw, Budget(3), space)
    gs = [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1)]
    with pytest.raises(BudgetExhausted) as info:
        ev.evaluate(gs)
    assert info.value.reason == "evaluations"
    assert ev.num_evaluations == 3 and raw.calls == gs[:3]
    assert ev.archive()[0] == gs[:3]
    np.testing.assert_array_equal(ev.evaluate(gs[:2]), raw.evaluate(gs[:2]))  # known: no raise, no cost
    with pytest.raises(BudgetExhausted):
        ev.evaluate([gs[4]])
    assert ev.num_evaluations == 3


def test_time_budget_stops_between_architectures() -> None:
    class Slow(SumEvaluator):
        def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
            time.sleep(0.05 * len(genotypes))
            return super().evaluate(genotypes)

    space = ToySpace(3, 3)
    ev = BudgetedEvaluator(Slow(3), Budget(100, max_seconds=0.2), space)
    with pytest.raises(BudgetExhausted) as info:
        ev.evaluate(list(space.all_genotypes()))
    assert info.value.reason == "time"
    assert 1 <= ev.num_evaluations <= 5  # each takes >= 0.05 s; checked before each one


def test_stop_when_sees_each_new_batch() -> None:
    space = ToySpace(3, 3)
    seen: list[int] = []

    def stop(F: np.ndarray) -> bool:
        seen.append(len(F))
        return bool(np.any(F[:, 1] == 0))  # stop once (0, 0, 0) (latency 0) is evaluated

    ev = BudgetedEvaluator(SumEvaluator(3), 20, space, stop_when=stop)
    ev.evaluate([(1, 1, 1), (1, 1, 1), (2, 0, 0)])
    with pytest.raises(BudgetExhausted) as info:
        ev.evaluate([(0, 0, 0), (0, 0, 1)])
    assert info.value.reason == "target" and seen == [2, 2] and ev.num_evaluations == 4


def test_bad_evaluator_output_is_named() -> None:
    class WrongShape(SumEvaluator):
        def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
            return np.zeros((len(genotypes), 3))

    class NaN(SumEvaluator):
        def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
            return np.full((len(genotypes), 2), np.nan)

    space = ToySpace(3, 3)
    with pytest.raises(ValueError, match=r"shape \(1, 3\).*expected \(1, 2\)"):
        BudgetedEvaluator(WrongShape(3), 5, space).evaluate([(0, 0, 0)])
    with pytest.raises(ValueError, match="non-finite objective for 0-1-2"):
        BudgetedEvaluator(NaN(3), 5, space).evaluate([(0, 1, 2)])
    with pytest.raises(ValueError, match="out of range"):
        BudgetedEvaluator(SumEvaluator(3), 5, space).evaluate([(0, 1, 3)])


def test_sample_new_draws_distinct_unknown_genotypes_until_the_space_is_empty() -> None:
    space = ToySpace(2, 3)
    rng = np.random.default_rng(0)
    known = {(0, 0), (1, 1)}
    drawn = sample_new(space, rng, known, 100)
    assert len(drawn) == 7 and len(set(drawn)) == 7 and not set(drawn) & known
    assert sample_new(space, rng, known | set(drawn), 3) == []


# ---- history and hypervolume ---------------------------------------------------------------------


def test_hypervolume_tracker_exact_values() -> None:
    norm = Normaliser((0.0, 0.0), (1.0, 1.0))
    tracker = HypervolumeTracker(norm)
    assert tracker.add(np.array([0.5, 0.5])) == pytest.approx(0.25)
    assert tracker.add(np.array([0.25, 0.75])) == pytest.approx(0.3125)
    assert tracker.add(np.array([0.6, 0.6])) == pytest.approx(0.3125)  # dominated
    assert tracker.add(np.array([1.2, 0.1])) == pytest.approx(0.3125)  # outside the reference box
    assert tracker.add(np.array([0.5, 0.5])) == pytest.approx(0.3125)  # duplicate
    assert tracker.add(np.array([0.0, 0.0])) == pytest.approx(1.0)
    assert len(tracker.front) == 1
    curve = hypervolume_curve(np.array([[0.5, 0.5], [0.25, 0.75], [0.0, 0.0]]), norm)
    np.testing.assert_allclose(curve, [0.25, 0.3125, 1.0])
    assert evaluations_to_reach(curve, 0.3) == 2
    assert evaluations_to_reach(curve, 1.0) == 3
    assert evaluations_to_reach(curve, 1.01) is None


def test_history_front_rows_and_curve() -> None:
    space, raw = ToySpace(3, 3), SumEvaluator(3)
    h = get_baseline("random").run(space, raw, 27, seed=3)
    assert isinstance(h, History) and h.num_evaluations == 27 and h.stop_reason == "evaluations"
    front_genotypes, front_F = h.front()
    assert set(front_genotypes) == brute_force_front(space, raw)
    assert len(front_F) == len(front_genotypes)
    rows = h.rows(space)
    assert [r["step"] for r in rows] == list(range(1, 28))
    assert sum(r["on_front"] for r in rows) == len(front_genotypes)
    assert rows[0]["arch"] == space.to_string(h.genotypes[0])
    assert np.all(np.diff(h.wall_s) >= 0) and np.all(h.eval_s >= 0)
    norm = Normaliser((0.0, 0.0), (13.0, 7.0))
    curve = h.hv_curve(norm)
    assert np.all(np.diff(curve) >= 0)
    assert curve[-1] == pytest.approx(h.hypervolume(norm))


def test_common_normaliser_spans_the_extra_points_too() -> None:
    from modnas_ops.baselines import common_normaliser

    space, raw = ToySpace(3, 3), SumEvaluator(3)
    h = get_baseline("random").run(space, raw, 9, seed=0)
    base = common_normaliser([h])
    lo, hi = np.asarray(base.lo), np.asarray(base.hi)
    extra = np.array([[lo[0] - 1.0, hi[1] + 2.0]])  # a point outside the histories' box, e.g. a MODNAS front
    both = common_normaliser([h], extra=extra)
    assert both.lo[0] == lo[0] - 1.0 and both.hi[1] == hi[1] + 2.0
    assert both.hi[0] == hi[0] and both.lo[1] == lo[1]
    assert common_normaliser([h], extra=np.zeros((0, 2))).lo == base.lo


# ---- registry --------------------------------------------------------------------------------------


def test_registry_lists_all_methods_and_rejects_bad_names_and_parameters() -> None:
    assert set(available_baselines()) >= {"random", "local", "nsga2", "linas", "motpe", "agemoea", "unsga3"}
    with pytest.raises(ValueError, match="unknown baseline 'bogus'; available: .*nsga2"):
        get_baseline("bogus")
    with pytest.raises(ValueError, match="baseline 'nsga2'.*populaton_size"):
        get_baseline("nsga2", populaton_size=10)
    with pytest.raises(ValueError, match="mutation_prob must lie in"):
        get_baseline("nsga2", mutation_prob=1.5)
    with pytest.raises(ValueError, match="unknown predictor 'gp'"):
        get_baseline("linas", predictors=("gp",))


@pytest.mark.parametrize("name", ["unsga3", "agemoea"])
def test_many_objective_methods_refuse_two_objectives(name: str) -> None:
    if name == "agemoea":
        pytest.importorskip("numba")
    with pytest.raises(ValueError, match=f"'{name}' needs at least 3 objectives"):
        get_baseline(name).run(ToySpace(3, 3), SumEvaluator(3), 10, seed=0)


def test_agemoea_without_numba_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    with pytest.raises(ValueError, match="AGE-MOEA needs numba"):
        get_baseline("agemoea")


# ---- evaluators ------------------------------------------------------------------------------------


def test_measured_evaluator_composes_callables_in_order() -> None:
    ev = MeasuredEvaluator(
        error_fn=lambda g: 10.0 * g[0], latency_fn=lambda g: float(sum(g)), extra={"energy_mj": lambda g: 0.5}
    )
    assert ev.objective_names == ("error", "latency_ms", "energy_mj") and ev.num_objectives == 3
    np.testing.assert_array_equal(ev.evaluate([(1, 2), (0, 0)]), [[10.0, 3.0, 0.5], [0.0, 0.0, 0.5]])
    with pytest.raises(ValueError, match="latency_ms of \\(1, 2\\) is inf"):
        MeasuredEvaluator(lambda g: 1.0, lambda g: float("inf")).evaluate([(1, 2)])
    with pytest.raises(ValueError, match="distinct"):
        MeasuredEvaluator(lambda g: 1.0, lambda g: 1.0, extra={"error": lambda g: 1.0})


def test_table_evaluator_reads_the_nb201_table(nb201_table_path) -> None:
    from modnas_ops.baselines import TableEvaluator
    from modnas_ops.benchmarks import load_table, true_front

    table = load_table(nb201_table_path)
    device = table.devices[0]
    ev = TableEvaluator(table, device)
    assert ev.objective_names == ("error", "latency_ms")
    rows = [0, 1234, 15624]
    genotypes = [table.space.from_benchmark_index(i) for i in rows]
    expected = np.stack([table.error()[rows], table.latency(device)[rows]], axis=1)
    np.testing.assert_array_equal(ev.evaluate(genotypes), expected)
    assert ev.true_hypervolume() == pytest.approx(true_front(table, device).hv)
    multi = TableEvaluator(table, table.devices[:2], dataset="cifar100")
    assert multi.objective_names == ("error", *(f"latency_ms/{d}" for d in table.devices[:2]))
    np.testing.assert_array_equal(multi.evaluate(genotypes)[:, 0], table.error("cifar100")[rows])
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        TableEvaluator(table, device, dataset="svhn")
    with pytest.raises(ValueError, match="unknown device 'toaster'"):
        TableEvaluator(table, "toaster")

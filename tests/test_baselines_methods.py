"""Two-objective baselines on tiny fake spaces with known Pareto fronts: exact coverage, budget, no repeats,
seeds. The checks are shared with tests/test_baselines_many.py (M = 3 methods)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from modnas_ops.baselines import Baseline, get_baseline
from modnas_ops.spaces import Genotype

from .test_baselines import SumEvaluator, ToySpace, brute_force_front

# Small populations keep these tests fast; the defaults are the papers' (population 50).
PARAMS: dict[str, dict[str, Any]] = {
    "random": {},
    "local": {"num_initial": 5},
    "nsga2": {"population_size": 20},
    "linas": {"population_size": 20, "predicted_evaluations": 400},
    "motpe": {},
    "agemoea": {"population_size": 20},
    "unsga3": {"population_size": 20},
}
TWO_OBJECTIVE = ["random", "local", "nsga2", "linas", "motpe"]


def make(name: str) -> Baseline:
    if name == "agemoea":
        pytest.importorskip("numba", reason="pymoo's AGE-MOEA needs numba")
    return get_baseline(name, **PARAMS[name])


class SumEvaluator3(SumEvaluator):
    """SumEvaluator plus a third objective: distance of edge 0 from op 1."""

    objective_names = ("error", "latency_ms", "energy_mj")
    num_objectives = 3

    def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        F = super().evaluate(genotypes)
        G = np.asarray(genotypes).reshape(len(genotypes), -1)
        return np.concatenate([F, np.abs(G[:, :1] - 1.0)], axis=1)


def check_exact_coverage(name: str, evaluator: Callable[[int], SumEvaluator]) -> None:
    """A budget larger than the space: every arch evaluated once, stop reason 'space', exact front."""
    space, raw = ToySpace(3, 3), evaluator(3)  # 27 architectures
    h = make(name).run(space, raw, 40, seed=0)
    assert h.stop_reason == "space"
    assert h.num_evaluations == 27 and len(set(h.genotypes)) == 27
    assert sorted(raw.calls) == sorted(space.all_genotypes())  # the raw evaluator saw each arch once
    assert set(h.front()[0]) == brute_force_front(space, raw)


def check_exact_budget(name: str, evaluator: Callable[[int], SumEvaluator]) -> None:
    """47 evaluations (not a multiple of any population), none repeated, in the order evaluated."""
    space, raw = ToySpace(5, 4), evaluator(4)  # 1024 architectures
    h = make(name).run(space, raw, 47, seed=1)
    assert h.stop_reason == "evaluations"
    assert h.num_evaluations == 47 and len(raw.calls) == 47 and len(set(raw.calls)) == 47
    assert list(h.genotypes) == raw.calls


def check_seeds(name: str, evaluator: Callable[[int], SumEvaluator]) -> None:
    space, raw = ToySpace(5, 4), evaluator(4)
    first = make(name).run(space, raw, 45, seed=7)
    again = make(name).run(space, raw, 45, seed=7)
    other = make(name).run(space, raw, 45, seed=8)
    assert first.genotypes == again.genotypes
    np.testing.assert_array_equal(first.objectives, again.objectives)
    assert first.genotypes != other.genotypes


@pytest.mark.parametrize("name", TWO_OBJECTIVE)
def test_budget_larger_than_space_evaluates_each_arch_once_and_recovers_exact_front(name: str) -> None:
    check_exact_coverage(name, SumEvaluator)


@pytest.mark.parametrize("name", TWO_OBJECTIVE)
def test_budget_is_spent_exactly_without_repeats(name: str) -> None:
    check_exact_budget(name, SumEvaluator)


@pytest.mark.parametrize("name", TWO_OBJECTIVE)
def test_same_seed_same_history_other_seed_other_history(name: str) -> None:
    check_seeds(name, SumEvaluator)

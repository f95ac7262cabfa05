"""Many-objective baselines (AGE-MOEA, U-NSGA-III; M >= 3) on tiny fake spaces with known fronts."""

from __future__ import annotations

import pytest

from .test_baselines_methods import SumEvaluator3, check_exact_budget, check_exact_coverage, check_seeds
from .test_baselines_search import check_finds_front

MANY_OBJECTIVE = ["agemoea", "unsga3"]  # agemoea is skipped where numba is missing


@pytest.mark.slow  # ~5 s: evaluates the whole space
@pytest.mark.parametrize("name", MANY_OBJECTIVE)
def test_budget_larger_than_space_evaluates_each_arch_once_and_recovers_exact_front(name: str) -> None:
    check_exact_coverage(name, SumEvaluator3)


@pytest.mark.parametrize("name", MANY_OBJECTIVE)
def test_budget_is_spent_exactly_without_repeats(name: str) -> None:
    check_exact_budget(name, SumEvaluator3)


@pytest.mark.parametrize("name", MANY_OBJECTIVE)
def test_same_seed_same_history_other_seed_other_history(name: str) -> None:
    check_seeds(name, SumEvaluator3)


@pytest.mark.parametrize("name", MANY_OBJECTIVE)
def test_finds_the_three_objective_hamming_front_within_budget(name: str) -> None:
    check_finds_front(name, 3, 200)

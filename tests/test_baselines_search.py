"""Guided baselines find a needle-like Pareto front far faster than random search could."""

from __future__ import annotations

import pytest

from .test_baselines import HammingEvaluator, ToySpace, brute_force_front
from .test_baselines_methods import make

# Objective m = Hamming distance to target m; targets differ on 2 edges, so the front is the 4 (M = 2) or
# 5 (M = 3) genotypes "between" them out of 4096: random search finds one with probability ~1e-3 per
# evaluation, a guided method all of them within the budget.
TARGETS = [(0, 1, 2, 3, 0, 1), (0, 1, 2, 0, 3, 1), (3, 1, 2, 3, 0, 1)]
CASES = [("local", 2, 150), ("nsga2", 2, 150), ("linas", 2, 150), ("motpe", 2, 150), ("local", 3, 200)]


def check_finds_front(name: str, num_objectives: int, budget: int) -> None:
    space = ToySpace(6, 4)
    raw = HammingEvaluator(TARGETS[:num_objectives])
    front = brute_force_front(space, raw)
    assert len(front) == 2 + num_objectives
    h = make(name).run(space, raw, budget, seed=0)
    assert h.num_evaluations <= budget
    assert front <= set(h.genotypes)
    assert set(h.front()[0]) == front


@pytest.mark.parametrize(("name", "num_objectives", "budget"), CASES)
def test_guided_methods_find_the_hamming_front_within_budget(name: str, num_objectives: int, budget: int) -> None:
    check_finds_front(name, num_objectives, budget)


def test_random_search_does_not_find_it_with_the_same_budget() -> None:
    """The control: the problem above is not solvable by luck within the budget."""
    space = ToySpace(6, 4)
    raw = HammingEvaluator(TARGETS[:2])
    h = make("random").run(space, raw, 150, seed=0)
    assert not brute_force_front(space, raw) <= set(h.genotypes)

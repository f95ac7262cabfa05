"""Pareto local search (Paquete et al.) over ``space.neighbours`` with random restarts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pareto import pareto_mask
from ..spaces import Genotype, SearchSpace
from .base import Baseline, register_baseline, sample_new, unique_new
from .budget import BudgetedEvaluator, BudgetExhausted


@register_baseline
@dataclass
class ParetoLocalSearch(Baseline):
    """Start from ``num_initial`` random architectures; repeatedly pick an unexplored member of the
    archive's Pareto front (uniformly) and evaluate all its unevaluated neighbours. When every front member
    is explored, restart: evaluate the neighbourhood of a new random architecture."""

    name = "local"
    num_initial: int = 10

    def __post_init__(self) -> None:
        if self.num_initial < 1:
            raise ValueError(f"local: num_initial must be >= 1, got {self.num_initial}")

    def search(self, space: SearchSpace, evaluator: BudgetedEvaluator, seed: int) -> None:
        rng = np.random.default_rng(seed)
        start = sample_new(space, rng, evaluator.known, self.num_initial)
        if not start:
            raise BudgetExhausted("space")
        evaluator.evaluate(start)
        explored: set[Genotype] = set()
        while True:
            genotypes, F = evaluator.archive()
            mask = pareto_mask(F)
            candidates = [g for g, m in zip(genotypes, mask, strict=True) if m and g not in explored]
            if candidates:
                centre = candidates[int(rng.integers(len(candidates)))]
            else:
                restart = sample_new(space, rng, evaluator.known, 1)
                if not restart:
                    raise BudgetExhausted("space")
                centre = restart[0]
                evaluator.evaluate([centre])
            explored.add(centre)
            neighbours = unique_new(space.neighbours(centre), evaluator.known)
            order = rng.permutation(len(neighbours))
            evaluator.evaluate([neighbours[int(i)] for i in order])

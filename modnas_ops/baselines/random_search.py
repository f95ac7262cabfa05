"""Random search: architectures uniformly at random, without repeats."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spaces import SearchSpace
from .base import Baseline, register_baseline, sample_new
from .budget import BudgetedEvaluator, BudgetExhausted


@register_baseline
@dataclass
class RandomSearch(Baseline):
    """Uniform sampling without replacement; ``batch_size`` architectures are drawn per request."""

    name = "random"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"random: batch_size must be >= 1, got {self.batch_size}")

    def search(self, space: SearchSpace, evaluator: BudgetedEvaluator, seed: int) -> None:
        rng = np.random.default_rng(seed)
        while True:
            batch = sample_new(space, rng, evaluator.known, min(self.batch_size, max(evaluator.remaining, 1)))
            if not batch:
                raise BudgetExhausted("space")
            evaluator.evaluate(batch)

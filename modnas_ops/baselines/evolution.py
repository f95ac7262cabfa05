"""Evolutionary baselines through pymoo's ask-and-tell interface: NSGA-II, AGE-MOEA, U-NSGA-III.

Integer encoding: one variable per decision in ``0..num_choices[d] - 1``; SBX crossover and polynomial mutation
act on floats and are rounded back to integers (pymoo's recipe for integer variables). Duplicates are eliminated against
the population *and* against every architecture evaluated so far, so each offspring costs one evaluation;
when mating cannot produce enough new offspring (a nearly exhausted space), the batch is topped up with
random unevaluated architectures.
"""

from __future__ import annotations

import abc
import importlib.util
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymoo.core.algorithm import Algorithm
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.evaluator import Evaluator as PymooEvaluator
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.problems.static import StaticProblem

from ..spaces import Genotype, SearchSpace
from .base import Baseline, register_baseline, sample_new
from .budget import BudgetedEvaluator, BudgetExhausted


class IntegerProblem(Problem):
    """The search space as a pymoo problem: D integer variables, decision d in ``0..num_choices[d] - 1``;
    evaluation happens outside."""

    def __init__(self, space: SearchSpace, num_objectives: int) -> None:
        xu = np.asarray(space.num_choices) - 1  # (D,)
        super().__init__(n_var=space.num_decisions, n_obj=num_objectives, xl=np.zeros_like(xu), xu=xu, vtype=int)


def to_genotypes(X: np.ndarray, space: SearchSpace) -> list[Genotype]:
    """Rows of a pymoo decision matrix (N, D) as canonical genotypes (one key per architecture)."""
    G = np.rint(np.asarray(X, dtype=np.float64)).astype(np.int64)  # (N, D)
    return [space.canonical(row) for row in G.tolist()]


class KnownDuplicates(DuplicateElimination):
    """Marks repeats (same canonical architecture) within a population, against ``other`` populations, and
    against an archive."""

    def __init__(self, known: Any, space: SearchSpace) -> None:
        super().__init__()
        self.known = known
        self.space = space

    def _do(self, pop: Population, other: Population | None, is_duplicate: np.ndarray) -> np.ndarray:
        keys = to_genotypes(pop.get("X"), self.space)
        if other is None:
            seen: set[Genotype] = set()
            for i, k in enumerate(keys):
                if k in seen or k in self.known:
                    is_duplicate[i] = True
                seen.add(k)
        else:
            others = set(to_genotypes(other.get("X"), self.space))
            for i, k in enumerate(keys):
                if k in others:
                    is_duplicate[i] = True
        return is_duplicate


@dataclass
class PymooBaseline(Baseline):
    """Shared ask-and-tell loop; subclasses build the pymoo algorithm."""

    population_size: int = 50
    crossover_prob: float = 0.9
    mutation_prob: float = 0.02  # per variable
    crossover_eta: float = 15.0
    mutation_eta: float = 20.0

    def __post_init__(self) -> None:
        if self.population_size < 2:
            raise ValueError(f"{self.name}: population_size must be >= 2, got {self.population_size}")
        for field in ("crossover_prob", "mutation_prob"):
            p = getattr(self, field)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{self.name}: {field} must lie in [0, 1], got {p}")
        for field in ("crossover_eta", "mutation_eta"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{self.name}: {field} must be positive, got {getattr(self, field)}")

    def operators(self) -> dict[str, Any]:
        return {
            "crossover": SBX(prob=self.crossover_prob, eta=self.crossover_eta, vtype=float, repair=RoundingRepair()),
            "mutation": PM(
                prob=1.0,
                prob_var=self.mutation_prob,
                eta=self.mutation_eta,
                vtype=float,
                repair=RoundingRepair(),
            ),
        }

    @abc.abstractmethod
    def make_algorithm(
        self, num_objectives: int, initial: np.ndarray, duplicates: DuplicateElimination | bool
    ) -> Algorithm:
        """The pymoo algorithm, starting from ``initial`` (N, E) genotypes."""

    def search(self, space: SearchSpace, evaluator: BudgetedEvaluator, seed: int) -> None:
        rng = np.random.default_rng(seed)
        problem = IntegerProblem(space, evaluator.num_objectives)
        initial = sample_new(space, rng, evaluator.known, self.population_size)
        if not initial:
            raise BudgetExhausted("space")
        algorithm = self.make_algorithm(
            evaluator.num_objectives, np.asarray(initial, dtype=np.int64), KnownDuplicates(evaluator.known, space)
        )
        algorithm.setup(problem, seed=seed, termination=NoTermination(), verbose=False)
        batch_size = len(initial)  # the initial population, then n_offsprings per generation
        while True:
            pop = algorithm.ask()
            pop = Population.empty() if pop is None else pop
            genotypes = to_genotypes(pop.get("X"), space) if len(pop) else []
            missing = batch_size - len(genotypes)
            if missing > 0:
                extra = sample_new(space, rng, set(evaluator.known) | set(genotypes), missing)
                if extra:
                    pop = Population.merge(pop, Population.new(X=np.asarray(extra, dtype=np.int64)))
                    genotypes += extra
                algorithm.termination.force_termination = False
            if not genotypes:
                raise BudgetExhausted("space")
            pop.set("X", np.asarray(genotypes, dtype=np.int64))
            F = evaluator.evaluate(genotypes)  # (n, M)
            PymooEvaluator().eval(StaticProblem(problem, F=F), pop)
            algorithm.tell(infills=pop)
            batch_size = int(algorithm.n_offsprings)


@register_baseline
@dataclass
class NSGA2Baseline(PymooBaseline):
    """NSGA-II (Deb et al. 2002); defaults as in LINAS: population 50, crossover 0.9, mutation 0.02."""

    name = "nsga2"

    def make_algorithm(
        self, num_objectives: int, initial: np.ndarray, duplicates: DuplicateElimination | bool
    ) -> Algorithm:
        from pymoo.algorithms.moo.nsga2 import NSGA2

        return NSGA2(
            pop_size=self.population_size,
            sampling=initial,
            eliminate_duplicates=duplicates,
            **self.operators(),
        )


@register_baseline
@dataclass
class AGEMOEABaseline(PymooBaseline):
    """AGE-MOEA (Panichella 2019), for M >= 3 objectives."""

    name = "agemoea"
    min_objectives = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if importlib.util.find_spec("numba") is None:
            raise ValueError("agemoea: pymoo's AGE-MOEA needs numba, which is not installed (pip install numba)")

    def make_algorithm(
        self, num_objectives: int, initial: np.ndarray, duplicates: DuplicateElimination | bool
    ) -> Algorithm:
        from pymoo.algorithms.moo.age import AGEMOEA

        return AGEMOEA(
            pop_size=self.population_size,
            sampling=initial,
            eliminate_duplicates=duplicates,
            **self.operators(),
        )


def reference_directions(num_objectives: int, max_points: int) -> np.ndarray:
    """Das-Dennis directions (pymoo) of the finest lattice with at most ``max_points`` points."""
    from pymoo.util.ref_dirs import get_reference_directions

    p = 1
    while math.comb(p + 1 + num_objectives - 1, num_objectives - 1) <= max_points:
        p += 1
    return get_reference_directions("das-dennis", num_objectives, n_partitions=p)


@register_baseline
@dataclass
class UNSGA3Baseline(PymooBaseline):
    """U-NSGA-III (Seada & Deb 2016), for M >= 3 objectives; Das-Dennis directions fit the population."""

    name = "unsga3"
    min_objectives = 3

    def make_algorithm(
        self, num_objectives: int, initial: np.ndarray, duplicates: DuplicateElimination | bool
    ) -> Algorithm:
        from pymoo.algorithms.moo.unsga3 import UNSGA3

        ref_dirs = reference_directions(num_objectives, self.population_size)
        return UNSGA3(
            ref_dirs,
            pop_size=self.population_size,
            sampling=initial,
            eliminate_duplicates=duplicates,
            **self.operators(),
        )

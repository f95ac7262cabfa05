"""LINAS (Cummings et al. 2022): lightweight iterative NAS with per-objective predictors.

Measure a random initial population; then repeat: fit one cheap regressor per objective on one-hot
features of *all* measured architectures, run NSGA-II on the predictors for
``predicted_evaluations / population_size`` generations (thousands of predicted evaluations), and measure
the best ``population_size`` architectures that have not been measured yet (ranked by non-dominated
sorting of the predictions, ties broken by crowding distance). Known architectures are never re-measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pymoo.core.problem import Problem
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.optimize import minimize
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from ..pareto import non_dominated_sort
from ..spaces import Genotype, SearchSpace
from .base import register_baseline, sample_new, unique_new
from .budget import BudgetedEvaluator, BudgetExhausted
from .evolution import KnownDuplicates, NSGA2Baseline, to_genotypes

# Mating rounds per generation of the inner search before it settles for fewer unique offspring (pymoo's
# default of 100 makes a converged population on a small space spend most of its time in duplicate checks).
INNER_MATING_TRIES = 10

PREDICTORS: dict[str, Callable[[], RegressorMixin]] = {
    "ridge": lambda: Ridge(alpha=1.0),
    "svr": lambda: SVR(kernel="rbf", C=10.0, epsilon=0.05, gamma="scale"),
}


def make_predictor(name: str) -> RegressorMixin:
    """A regressor with standardised targets (``ridge`` or ``svr``)."""
    try:
        factory = PREDICTORS[name]
    except KeyError:
        raise ValueError(f"linas: unknown predictor {name!r}; available: {', '.join(sorted(PREDICTORS))}") from None
    return TransformedTargetRegressor(regressor=factory(), transformer=StandardScaler())


def features(space: SearchSpace, genotypes: list[Genotype] | np.ndarray) -> np.ndarray:
    """(N, F) predictor features of the one-hot encodings (:func:`one_hot_features`)."""
    from ..predictor_baselines import one_hot_features

    return one_hot_features(space, genotypes)


class PredictedProblem(Problem):
    """Integer problem whose objectives are the predictors' outputs; remembers every point it evaluated."""

    def __init__(self, space: SearchSpace, models: list[RegressorMixin]) -> None:
        xu = np.asarray(space.num_choices) - 1  # (D,)
        super().__init__(n_var=space.num_decisions, n_obj=len(models), xl=np.zeros_like(xu), xu=xu, vtype=int)
        self.space = space
        self.models = models
        self.seen_X: list[np.ndarray] = []
        self.seen_F: list[np.ndarray] = []

    def _evaluate(self, X: np.ndarray, out: dict, *args, **kwargs) -> None:
        G = np.rint(X).astype(np.int64)  # (N, E)
        feats = features(self.space, G)
        F = np.stack([m.predict(feats) for m in self.models], axis=1)  # (N, M)
        self.seen_X.append(G)
        self.seen_F.append(F)
        out["F"] = F


def select_best(F: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` best rows of ``F`` (N, M): whole non-dominated fronts, then crowding distance."""
    chosen: list[int] = []
    for front in non_dominated_sort(F):
        if len(chosen) + len(front) <= n:
            chosen.extend(int(i) for i in front)
        else:
            crowd = calc_crowding_distance(F[front])
            order = np.argsort(-crowd, kind="stable")
            chosen.extend(int(front[i]) for i in order[: n - len(chosen)])
        if len(chosen) >= n:
            break
    return np.asarray(chosen, dtype=np.int64)


@register_baseline
@dataclass
class LINAS(NSGA2Baseline):
    """LINAS with NSGA-II (population 50, crossover 0.9, mutation 0.02) on the predictors.

    ``predictors``: one name per objective, or one for all; empty means ``svr`` for the first objective
    (error) and ``ridge`` for the others (latency, energy).
    """

    name = "linas"
    predicted_evaluations: int = 5000
    predictors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.predicted_evaluations < self.population_size:
            raise ValueError(
                f"linas: predicted_evaluations ({self.predicted_evaluations}) must be >= population_size "
                f"({self.population_size})"
            )
        self.predictors = tuple(self.predictors)
        for p in self.predictors:
            make_predictor(p)

    def predictor_names(self, num_objectives: int) -> tuple[str, ...]:
        if not self.predictors:
            return ("svr",) + ("ridge",) * (num_objectives - 1)
        if len(self.predictors) == 1:
            return self.predictors * num_objectives
        if len(self.predictors) != num_objectives:
            raise ValueError(f"linas: {len(self.predictors)} predictors for {num_objectives} objectives; give 1 or M")
        return self.predictors

    def search(self, space: SearchSpace, evaluator: BudgetedEvaluator, seed: int) -> None:
        rng = np.random.default_rng(seed)
        names = self.predictor_names(evaluator.num_objectives)
        initial = sample_new(space, rng, evaluator.known, self.population_size)
        if not initial:
            raise BudgetExhausted("space")
        evaluator.evaluate(initial)
        while True:
            genotypes, F = evaluator.archive()  # (n, M)
            X = features(space, genotypes)
            models = [make_predictor(name).fit(X, F[:, m]) for m, name in enumerate(names)]
            batch = self.propose(space, models, genotypes, F, evaluator, rng)
            if len(batch) < self.population_size:
                batch += sample_new(space, rng, set(evaluator.known) | set(batch), self.population_size - len(batch))
            if not batch:
                raise BudgetExhausted("space")
            evaluator.evaluate(batch)

    def propose(
        self,
        space: SearchSpace,
        models: list[RegressorMixin],
        genotypes: list[Genotype],
        F: np.ndarray,
        evaluator: BudgetedEvaluator,
        rng: np.random.Generator,
    ) -> list[Genotype]:
        """Best unmeasured architectures found by NSGA-II on the predictors."""
        problem = PredictedProblem(space, models)
        start = np.asarray([genotypes[i] for i in select_best(F, self.population_size)], dtype=np.int64)
        algorithm = self.make_algorithm(len(models), start, KnownDuplicates((), space))
        algorithm.mating.n_max_iterations = INNER_MATING_TRIES
        minimize(
            problem,
            algorithm,
            ("n_gen", math.ceil(self.predicted_evaluations / self.population_size)),
            seed=int(rng.integers(2**31)),
            verbose=False,
        )
        seen_G = to_genotypes(np.concatenate(problem.seen_X), space)
        seen_F = np.concatenate(problem.seen_F)  # (S, M)
        first: dict[Genotype, int] = {}
        for i, g in enumerate(seen_G):
            first.setdefault(g, i)
        new = unique_new(seen_G, evaluator.known)
        if not new:
            return []
        idx = np.asarray([first[g] for g in new])
        best = select_best(seen_F[idx], min(self.population_size, len(new)))
        return [new[int(i)] for i in best]

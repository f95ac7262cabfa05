"""MOTPE (Ozaki et al. 2020) via optuna: a multi-objective study with one categorical parameter per edge."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from ..spaces import Genotype, SearchSpace
from .base import Baseline, register_baseline, sample_new, unique_new
from .budget import BudgetedEvaluator, BudgetExhausted


@register_baseline
@dataclass
class MOTPE(Baseline):
    """optuna's ``TPESampler`` on a multi-objective study (all directions minimise).

    A suggestion of an already evaluated architecture is told as a failed trial (TPE ignores it, so the
    known point is not counted twice) and a random unevaluated neighbour of it (one edge changed; a random
    unevaluated architecture if none is left) is enqueued as the next trial. Without this, TPE keeps
    proposing known architectures once it concentrates, and most asks are wasted.
    """

    name = "motpe"
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False

    def __post_init__(self) -> None:
        for field in ("n_startup_trials", "n_ei_candidates"):
            if getattr(self, field) < 1:
                raise ValueError(f"motpe: {field} must be >= 1, got {getattr(self, field)}")

    def search(self, space: SearchSpace, evaluator: BudgetedEvaluator, seed: int) -> None:
        rng = np.random.default_rng(seed)
        keys = [f"decision_{d}" for d in range(space.num_decisions)]
        distributions = {
            k: CategoricalDistribution(list(range(n))) for k, n in zip(keys, space.num_choices, strict=True)
        }
        sampler = optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=self.n_startup_trials,
            n_ei_candidates=self.n_ei_candidates,
            multivariate=self.multivariate,
        )
        optuna_log = logging.getLogger("optuna")
        level = optuna_log.level
        optuna_log.setLevel(logging.WARNING)  # optuna logs every trial at INFO
        try:
            study = optuna.create_study(directions=["minimize"] * evaluator.num_objectives, sampler=sampler)
            while True:
                trial = study.ask(distributions)
                g = tuple(int(trial.params[k]) for k in keys)
                if evaluator.is_known(g):
                    study.tell(trial, state=TrialState.FAIL)
                    study.enqueue_trial(dict(zip(keys, self.replacement(space, g, evaluator, rng), strict=True)))
                    continue
                f = evaluator.evaluate([g])[0]  # (M,)
                study.tell(trial, [float(v) for v in f])
        finally:
            optuna_log.setLevel(level)

    @staticmethod
    def replacement(
        space: SearchSpace, genotype: Genotype, evaluator: BudgetedEvaluator, rng: np.random.Generator
    ) -> Genotype:
        """A random unevaluated neighbour of ``genotype``, else a random unevaluated architecture."""
        options = unique_new(space.neighbours(genotype), evaluator.known)
        if options:
            return options[int(rng.integers(len(options)))]
        fresh = sample_new(space, rng, evaluator.known, 1)
        if not fresh:
            raise BudgetExhausted("space")
        return fresh[0]

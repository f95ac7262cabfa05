"""The common interface of black-box multi-objective baselines, their registry, and shared helpers."""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any, ClassVar

import numpy as np

from ..registry import Registry
from ..spaces import Genotype, SearchSpace
from .budget import Budget, BudgetedEvaluator, BudgetExhausted
from .evaluators import Evaluator
from .history import History

log = logging.getLogger(__name__)

BASELINES: Registry[type[Baseline]] = Registry("baseline")
_MAX_ENUMERATION = 2_000_000  # spaces up to this size are enumerated when rejection sampling stalls


class Baseline(abc.ABC):
    """A black-box search over genotypes that minimises all objectives of an evaluator.

    Subclasses are dataclasses of their hyper-parameters and implement :meth:`search`, which keeps asking
    the budgeted evaluator for objectives until it raises :class:`BudgetExhausted`.
    """

    name: ClassVar[str]
    min_objectives: ClassVar[int] = 2

    def run(
        self,
        space: SearchSpace,
        evaluator: Evaluator,
        budget: Budget | int,
        seed: int,
        progress: bool = False,
        stop_when: Callable[[np.ndarray], bool] | None = None,
    ) -> History:
        """Search with at most ``budget`` true evaluations; the same seed gives the same history.

        ``stop_when`` (see :class:`BudgetedEvaluator`) may end the run early, e.g. at a hypervolume target.
        """
        if evaluator.num_objectives < self.min_objectives:
            raise ValueError(
                f"baseline {self.name!r} needs at least {self.min_objectives} objectives, "
                f"the evaluator has {evaluator.num_objectives} ({', '.join(evaluator.objective_names)})"
            )
        tracked = BudgetedEvaluator(evaluator, budget, space, progress=progress, stop_when=stop_when)
        stop_reason = "finished"
        try:
            self.search(space, tracked, int(seed))
        except BudgetExhausted as e:
            # A spent budget wins over an exhausted space when both hold.
            stop_reason = "evaluations" if tracked.remaining <= 0 else e.reason
        log.info(
            "%s (seed %d): %d evaluations, stopped by %s",
            self.name,
            seed,
            tracked.num_evaluations,
            stop_reason,
        )
        return tracked.history(self.name, int(seed), stop_reason)

    @abc.abstractmethod
    def search(self, space: SearchSpace, evaluator: BudgetedEvaluator, seed: int) -> None:
        """Evaluate architectures through ``evaluator`` until the budget runs out."""

    def params(self) -> dict[str, Any]:
        """Hyper-parameters (for logging)."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


def register_baseline(cls: type[Baseline]) -> type[Baseline]:
    """Class decorator: make ``cls`` available to :func:`get_baseline` under ``cls.name``."""
    return BASELINES.register(cls.name)(cls)


def available_baselines() -> list[str]:
    return BASELINES.names()


def baseline_class(name: str) -> type[Baseline]:
    return BASELINES.get(name)


def get_baseline(name: str, **kwargs: Any) -> Baseline:
    """Instantiate a registered baseline with its hyper-parameters (unknown ones raise ValueError)."""
    cls: Callable[..., Baseline] = baseline_class(name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"baseline {name!r}: {e}") from None


# ---- shared helpers -------------------------------------------------------------------------------


def sample_new(space: SearchSpace, rng: np.random.Generator, known: Collection[Genotype], n: int) -> list[Genotype]:
    """Up to ``n`` distinct canonical genotypes, at random among those not in ``known``.

    Rejection sampling first; when that stalls (a nearly exhausted space) the unknown genotypes are
    enumerated. Fewer than ``n`` come back only when fewer remain.
    """
    out: list[Genotype] = []
    chosen: set[Genotype] = set()
    tries = 0
    while len(out) < n and tries < 20 * n + 100:
        g = space.canonical(space.sample(rng))
        tries += 1
        if g not in known and g not in chosen:
            chosen.add(g)
            out.append(g)
    if len(out) < n and space.num_architectures <= _MAX_ENUMERATION:
        rest = [g for g in space.canonical_genotypes() if g not in known and g not in chosen]
        take = rng.permutation(len(rest))[: n - len(out)]
        out.extend(rest[int(i)] for i in take)
    return out


def unique_new(genotypes: Iterable[Genotype], known: Collection[Genotype]) -> list[Genotype]:
    """``genotypes`` without repeats and without those in ``known``, first occurrence order kept."""
    seen: set[Genotype] = set()
    out = []
    for g in genotypes:
        if g not in known and g not in seen:
            seen.add(g)
            out.append(g)
    return out

"""One budget accounting for every baseline: a cache in front of an evaluator that counts true evaluations.

Requests for architectures already evaluated are answered from the cache and cost nothing; each new
architecture costs one evaluation. The budget is a number of true evaluations and, optionally, wall time;
it is never exceeded: the evaluator raises :class:`BudgetExhausted` instead of evaluating past it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..spaces import Genotype, SearchSpace
from .evaluators import Evaluator
from .history import History


@dataclass(frozen=True)
class Budget:
    """At most ``max_evaluations`` true evaluations and (if set) ``max_seconds`` of wall time."""

    max_evaluations: int
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_evaluations, bool) or int(self.max_evaluations) != self.max_evaluations:
            raise ValueError(f"budget: max_evaluations must be an integer, got {self.max_evaluations!r}")
        if self.max_evaluations < 1:
            raise ValueError(f"budget: max_evaluations must be >= 1, got {self.max_evaluations}")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError(f"budget: max_seconds must be a positive number, got {self.max_seconds!r}")


class BudgetExhausted(Exception):
    """Raised by :class:`BudgetedEvaluator` when a new evaluation would exceed the budget.

    ``reason`` is "evaluations", "time", "space" (every architecture is evaluated) or "target" (the
    ``stop_when`` condition held).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BudgetedEvaluator:
    """Cache + budget + history around an :class:`Evaluator`; itself an :class:`Evaluator`.

    ``evaluate`` returns (n, M) objectives for all requested genotypes, in order. New genotypes are
    evaluated in request order until the budget is spent; if any requested genotype is left
    unevaluated, :class:`BudgetExhausted` is raised (the ones evaluated before are recorded).
    ``stop_when(F_new)``, if given, sees the objectives of each batch of new evaluations; when it returns
    True the search stops (reason "target") after that batch, e.g. once a hypervolume target is reached.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        budget: Budget | int,
        space: SearchSpace,
        progress: bool = False,
        stop_when: Callable[[np.ndarray], bool] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.budget = budget if isinstance(budget, Budget) else Budget(int(budget))
        self.space = space
        self.num_objectives = int(evaluator.num_objectives)
        self.objective_names = tuple(evaluator.objective_names)
        self._cache: dict[Genotype, np.ndarray] = {}
        self._order: list[Genotype] = []
        self._wall_s: list[float] = []
        self._eval_s: list[float] = []
        self._stop_when = stop_when
        self._start = time.perf_counter()
        self._bar = tqdm(total=self.budget.max_evaluations, disable=not progress, leave=False, unit="eval")

    # ---- accounting ------------------------------------------------------------------------
    @property
    def num_evaluations(self) -> int:
        """True evaluations so far (cache hits are not counted)."""
        return len(self._order)

    @property
    def remaining(self) -> int:
        """True evaluations left in the budget."""
        return self.budget.max_evaluations - len(self._order)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._start

    @property
    def known(self) -> Collection[Genotype]:
        """Live view of the genotypes evaluated so far."""
        return self._cache.keys()

    def is_known(self, genotype: Sequence[int]) -> bool:
        return self.space.canonical(genotype) in self._cache

    @property
    def space_exhausted(self) -> bool:
        return len(self._cache) >= self.space.num_distinct_architectures

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(self, genotypes: Sequence[Sequence[int]]) -> np.ndarray:
        """(n, M) objectives of ``genotypes``; new architectures cost one evaluation each (genotypes with the
        same canonical form are one architecture)."""
        gs = [self.space.canonical(g) for g in genotypes]
        new: list[Genotype] = []
        seen: set[Genotype] = set()
        for g in gs:
            if g not in self._cache and g not in seen:
                seen.add(g)
                new.append(g)
        allowed = new[: max(self.remaining, 0)]
        reason = "evaluations" if len(allowed) < len(new) else None
        # With a time budget, evaluate one at a time so that the time check is per architecture.
        chunk = len(allowed) if self.budget.max_seconds is None else 1
        for i in range(0, len(allowed), max(chunk, 1)):
            if self.budget.max_seconds is not None and self.elapsed_s >= self.budget.max_seconds:
                reason = "time"
                break
            F_new = self._evaluate_new(allowed[i : i + chunk])
            if self._stop_when is not None and self._stop_when(F_new):
                reason = "target"
                break
        if reason is not None:
            self._bar.close()
            raise BudgetExhausted(reason)
        if self.space_exhausted:
            self._bar.close()
        if not gs:
            return np.zeros((0, self.num_objectives))
        return np.stack([self._cache[g] for g in gs])  # (n, M)

    def _evaluate_new(self, batch: list[Genotype]) -> np.ndarray:
        t0 = time.perf_counter()
        F = np.asarray(self.evaluator.evaluate(batch), dtype=np.float64)  # (b, M)
        t1 = time.perf_counter()
        if F.shape != (len(batch), self.num_objectives):
            raise ValueError(
                f"evaluator returned shape {F.shape} for {len(batch)} genotypes, "
                f"expected ({len(batch)}, {self.num_objectives})"
            )
        if not np.all(np.isfinite(F)):
            bad = batch[int(np.flatnonzero(~np.isfinite(F).all(axis=1))[0])]
            raise ValueError(f"evaluator returned a non-finite objective for {self.space.to_string(bad)}")
        per = (t1 - t0) / len(batch)
        for g, f in zip(batch, F, strict=True):
            self._cache[g] = f
            self._order.append(g)
            self._eval_s.append(per)
            self._wall_s.append(t1 - self._start)
        self._bar.update(len(batch))
        return F

    # ---- results ---------------------------------------------------------------------------
    def archive(self) -> tuple[list[Genotype], np.ndarray]:
        """All truly evaluated genotypes in evaluation order and their (n, M) objectives."""
        F = np.stack([self._cache[g] for g in self._order]) if self._order else np.zeros((0, self.num_objectives))
        return list(self._order), F

    def history(self, method: str, seed: int, stop_reason: str) -> History:
        self._bar.close()
        genotypes, F = self.archive()
        return History(
            method=method,
            seed=seed,
            space=self.space.name,
            objective_names=self.objective_names,
            genotypes=tuple(genotypes),
            objectives=F,
            wall_s=np.asarray(self._wall_s, dtype=np.float64),
            eval_s=np.asarray(self._eval_s, dtype=np.float64),
            stop_reason=stop_reason,
            total_wall_s=self.elapsed_s,
        )

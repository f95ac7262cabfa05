"""The record of one baseline run: every true evaluation in order, and hypervolume versus evaluations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..pareto import Normaliser, hypervolume, normalised_hypervolume, pareto_mask
from ..spaces import Genotype, SearchSpace


class HypervolumeTracker:
    """Running hypervolume of points added one at a time, after ``normaliser``, reference point ones(M).

    The HV is recomputed only when a point enters the running non-dominated set; points at or beyond the
    reference point in any objective never count.
    """

    def __init__(self, normaliser: Normaliser) -> None:
        self.normaliser = normaliser
        self.ref = np.ones(normaliser.num_objectives)
        self.front = np.zeros((0, normaliser.num_objectives))  # (P, M) normalised non-dominated points
        self.hv = 0.0

    def add(self, F: np.ndarray) -> float:
        """Add the rows of ``F`` ((n, M) or (M,), raw units) in order; returns the HV after the last one."""
        for p in np.atleast_2d(np.asarray(self.normaliser(F), dtype=np.float64)):
            if np.all(p < self.ref) and not np.any(np.all(self.front <= p, axis=1)):
                self.front = np.vstack([self.front[~np.all(p <= self.front, axis=1)], p])
                self.hv = float(hypervolume(self.front, self.ref))
        return self.hv


def hypervolume_curve(F: np.ndarray, normaliser: Normaliser) -> np.ndarray:
    """(n,) HV of the first i+1 rows of ``F`` (n, M) after ``normaliser``, reference point ones(M)."""
    tracker = HypervolumeTracker(normaliser)
    return np.asarray([tracker.add(f) for f in np.asarray(F, dtype=np.float64)], dtype=np.float64)


def evaluations_to_reach(curve: np.ndarray, target: float) -> int | None:
    """Number of evaluations after which ``curve`` first reaches ``target``; None if it never does."""
    hit = np.flatnonzero(np.asarray(curve) >= target)
    return int(hit[0]) + 1 if len(hit) else None


@dataclass(frozen=True)
class History:
    """All true evaluations of one run, in order (step i+1 = the (i+1)-th evaluation).

    ``wall_s[i]``: seconds since the run started when evaluation i finished (search overhead included);
    ``eval_s[i]``: seconds the evaluator itself spent on it.
    """

    method: str
    seed: int
    space: str
    objective_names: tuple[str, ...]
    genotypes: tuple[Genotype, ...]
    objectives: np.ndarray  # (n, M)
    wall_s: np.ndarray  # (n,)
    eval_s: np.ndarray  # (n,)
    stop_reason: str
    total_wall_s: float

    @property
    def num_evaluations(self) -> int:
        return len(self.genotypes)

    @property
    def num_objectives(self) -> int:
        return len(self.objective_names)

    def front_mask(self) -> np.ndarray:
        """(n,) bool: evaluations on the run's Pareto front."""
        if self.num_evaluations == 0:
            return np.zeros(0, dtype=bool)
        return np.asarray(pareto_mask(self.objectives), dtype=bool)

    def front(self) -> tuple[list[Genotype], np.ndarray]:
        """Pareto-optimal genotypes and their (P, M) objectives."""
        mask = self.front_mask()
        return [g for g, m in zip(self.genotypes, mask, strict=True) if m], self.objectives[mask]

    def hv_curve(self, normaliser: Normaliser) -> np.ndarray:
        """(n,) hypervolume after each evaluation (see :func:`hypervolume_curve`)."""
        return hypervolume_curve(self.objectives, normaliser)

    def hypervolume(self, normaliser: Normaliser) -> float:
        return normalised_hypervolume(self.objectives, normaliser)

    def rows(self, space: SearchSpace) -> list[dict[str, Any]]:
        """One dict per evaluation (step, arch, objectives, times, on_front) for CSV tables."""
        mask = self.front_mask()
        out = []
        for i, g in enumerate(self.genotypes):
            row: dict[str, Any] = {"method": self.method, "seed": self.seed, "step": i + 1}
            row["arch"] = space.to_string(g)
            values = zip(self.objective_names, self.objectives[i], strict=True)
            row.update({name: float(v) for name, v in values})
            row.update({"wall_s": float(self.wall_s[i]), "eval_s": float(self.eval_s[i]), "on_front": bool(mask[i])})
            out.append(row)
        return out

"""Pareto tools, all objectives MINIMISED: dominance, non-dominated sorting, hypervolume, normalisation,
preference rays.

Conventions: ``F`` is an (N, M) array of N points and M objectives. The hypervolume counts only the part of
each point's dominated box that lies below the reference point, so points at or beyond the reference point
(in any objective) contribute nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MODNAS_MAX_ERROR = 90.0  # percent: MODNAS drops architectures at or above this error before normalising


def _as_points(F: Any, what: str = "F") -> np.ndarray:
    """(N, M) float64 finite array, or ValueError naming what is wrong."""
    a = np.asarray(F, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what}: expected an (N, M) array (N points, M objectives), got shape {a.shape}")
    if a.shape[1] < 1:
        raise ValueError(f"{what}: needs at least one objective, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: all values must be finite (found NaN or inf)")
    return a


def pareto_mask(F: Any) -> np.ndarray:
    """(N,) bool: True for points no other point dominates (duplicates of a front point are all kept)."""
    a = _as_points(F)  # (N, M)
    mask = np.zeros(len(a), dtype=bool)
    if len(a):
        mask[non_dominated_sort(a)[0]] = True
    return mask


def non_dominated_sort(F: Any) -> list[np.ndarray]:
    """Fronts as index arrays (ascending): front 0 is non-dominated, front k is non-dominated once fronts
    0..k-1 are removed. Equal points share a front."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    a = _as_points(F)  # (N, M)
    if len(a) == 0:
        return []
    fronts = NonDominatedSorting().do(a)
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in fronts]


def _as_reference(ref: Any, num_objectives: int) -> np.ndarray:
    r = np.asarray(ref, dtype=np.float64)
    if r.shape != (num_objectives,):
        raise ValueError(f"reference point: expected shape ({num_objectives},), got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"reference point must be finite, got {r.tolist()}")
    return r


def hypervolume_2d(F: Any, ref: Any) -> float:
    """Exact 2-D hypervolume by a sweep over the points sorted by the first objective."""
    a = _as_points(F)  # (N, 2)
    if a.shape[1] != 2:
        raise ValueError(f"hypervolume_2d: expected 2 objectives, got {a.shape[1]}")
    r = _as_reference(ref, 2)
    a = a[np.all(a < r, axis=1)]
    if len(a) == 0:
        return 0.0
    a = a[np.lexsort((a[:, 1], a[:, 0]))]  # by f1, ties by f2
    # Slab i spans f2 in [f2_i, best f2 of the points before i) and f1 in [f1_i, ref1).
    best_before = np.minimum.accumulate(np.concatenate([[r[1]], a[:-1, 1]]))  # (N,)
    heights = np.maximum(best_before - a[:, 1], 0.0)
    return float(np.sum((r[0] - a[:, 0]) * heights))


def hypervolume(F: Any, ref: Any) -> float:
    """Hypervolume dominated by ``F`` and bounded by ``ref`` (exact: 2-D sweep; M >= 3 via pymoo).

    An empty set, or one with every point at or beyond ``ref``, has hypervolume 0.
    """
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    a = np.asarray(F, dtype=np.float64)
    if a.size == 0:
        a = a.reshape(0, len(r))
    a = _as_points(a)  # (N, M)
    m = a.shape[1]
    r = _as_reference(r, m)
    a = a[np.all(a < r, axis=1)]
    if len(a) == 0:
        return 0.0
    if m == 1:
        return float(r[0] - a[:, 0].min())
    if m == 2:
        return hypervolume_2d(a, r)
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=r)(a))


@dataclass(frozen=True)
class Normaliser:
    """Min-max normalisation per objective: ``(F - lo) / (hi - lo)``; the bounds map to 0 and 1."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]

    def __post_init__(self) -> None:
        lo = tuple(float(x) for x in np.asarray(self.lo, dtype=np.float64).reshape(-1))
        hi = tuple(float(x) for x in np.asarray(self.hi, dtype=np.float64).reshape(-1))
        if len(lo) != len(hi) or not lo:
            raise ValueError(f"Normaliser: lo and hi need one value per objective, got {len(lo)} and {len(hi)}")
        for j, (a, b) in enumerate(zip(lo, hi, strict=True)):
            if not (math.isfinite(a) and math.isfinite(b)):
                raise ValueError(f"Normaliser: objective {j} has non-finite bounds lo={a}, hi={b}")
            if not b > a:
                raise ValueError(f"Normaliser: objective {j} has hi={b} <= lo={a} (a constant cannot be normalised)")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def num_objectives(self) -> int:
        return len(self.lo)

    @property
    def reference_point(self) -> np.ndarray:
        """(M,) ones: the normalised image of ``hi``."""
        return np.ones(self.num_objectives)

    @classmethod
    def fit(cls, F: Any) -> Normaliser:
        """Bounds = per-objective min and max of ``F`` (N, M)."""
        a = _as_points(F)
        if len(a) == 0:
            raise ValueError("Normaliser.fit: no points")
        return cls(tuple(a.min(axis=0)), tuple(a.max(axis=0)))

    def _check(self, F: Any) -> np.ndarray:
        a = np.asarray(F, dtype=np.float64)
        if a.ndim not in (1, 2) or a.shape[-1] != self.num_objectives:
            raise ValueError(f"Normaliser: expected (..., {self.num_objectives}) values, got shape {a.shape}")
        return a

    def apply(self, F: Any) -> np.ndarray:
        """Normalised copy of ``F`` ((N, M) or (M,)), float64."""
        lo, hi = np.asarray(self.lo), np.asarray(self.hi)
        return (self._check(F) - lo) / (hi - lo)

    __call__ = apply

    def inverse(self, Z: Any) -> np.ndarray:
        """Original units of normalised values ``Z``."""
        lo, hi = np.asarray(self.lo), np.asarray(self.hi)
        return self._check(Z) * (hi - lo) + lo

    def to_dict(self) -> dict[str, list[float]]:
        return {"lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> Normaliser:
        missing = [k for k in ("lo", "hi") if k not in d]
        if missing:
            raise ValueError(f"Normaliser.from_dict: missing key {missing[0]!r}")
        return cls(tuple(d["lo"]), tuple(d["hi"]))


def modnas_normaliser(error: Any, *objectives: Any, max_error: float = MODNAS_MAX_ERROR) -> Normaliser:
    """MODNAS evaluation normaliser over a whole table: drop rows with ``error >= max_error`` (percent), then
    min-max each objective (error first) over the rows left. Hypervolumes use reference point ones(M)."""
    err = np.asarray(error, dtype=np.float64)
    if err.ndim != 1:
        raise ValueError(f"modnas_normaliser: error must be (N,), got shape {err.shape}")
    cols = [err]
    for j, obj in enumerate(objectives, start=1):
        o = np.asarray(obj, dtype=np.float64)
        if o.shape != err.shape:
            raise ValueError(f"modnas_normaliser: objective {j} has shape {o.shape}, error has {err.shape}")
        cols.append(o)
    F = np.stack(cols, axis=1)  # (N, M)
    keep = err < max_error
    if not keep.any():
        raise ValueError(f"modnas_normaliser: no row has error below max_error={max_error}")
    return Normaliser.fit(F[keep])


def normalised_hypervolume(F: Any, normaliser: Normaliser) -> float:
    """Hypervolume of ``normaliser(F)`` with reference point ones(M) (the MODNAS evaluation)."""
    a = _as_points(F)
    return hypervolume(normaliser(a), normaliser.reference_point)


def das_dennis(n_partitions: int, num_objectives: int) -> np.ndarray:
    """(C(p + M - 1, M - 1), M) simplex lattice: all points with coordinates k / p summing to 1."""
    p, m = int(n_partitions), int(num_objectives)
    if p < 1 or m < 1:
        raise ValueError(f"das_dennis: need n_partitions >= 1 and num_objectives >= 1, got {p} and {m}")

    def compositions(total: int, parts: int) -> list[list[int]]:
        if parts == 1:
            return [[total]]
        return [[k, *rest] for k in range(total, -1, -1) for rest in compositions(total - k, parts - 1)]

    return np.asarray(compositions(p, m), dtype=np.float64) / p


def _spread_subset(points: np.ndarray, n: int) -> np.ndarray:
    """Indices (ascending) of ``n`` well-spread rows: greedy farthest-point selection from the centroid."""
    centre = points.mean(axis=0)
    chosen = [int(np.argmin(np.linalg.norm(points - centre, axis=1)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < n:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return np.sort(np.asarray(chosen))


def preference_rays(n: int = 24, num_objectives: int = 2, min_angle: float = 1e-6) -> np.ndarray:
    """(n, M) preference vectors on the simplex (rows sum to 1, all entries > 0).

    M = 2: angles evenly spaced over [min_angle, pi/2 - min_angle], r ∝ (cos θ, sin θ) (MODNAS's test rays).
    M >= 3: interior Das-Dennis points of the smallest lattice with at least n of them; when that lattice
    has more, n of them are picked greedily to be far apart (deterministic).
    """
    n, m = int(n), int(num_objectives)
    if n < 1 or m < 2:
        raise ValueError(f"preference_rays: need n >= 1 and num_objectives >= 2, got n={n}, M={m}")
    if m == 2:
        if not 0 < min_angle < math.pi / 4:
            raise ValueError(f"preference_rays: min_angle must lie in (0, pi/4), got {min_angle}")
        theta = np.array([math.pi / 4]) if n == 1 else np.linspace(min_angle, math.pi / 2 - min_angle, n)
        rays = np.stack([np.cos(theta), np.sin(theta)], axis=1)  # (n, 2)
        return rays / rays.sum(axis=1, keepdims=True)
    p = m
    while math.comb(p - 1, m - 1) < n:
        p += 1
    # Interior points of the p-lattice = the (p - m)-lattice shifted by one step in every coordinate.
    inner = (das_dennis(p - m, m) * (p - m) + 1.0) / p if p > m else np.full((1, m), 1.0 / m)
    if len(inner) > n:
        inner = inner[_spread_subset(inner, n)]
    return inner

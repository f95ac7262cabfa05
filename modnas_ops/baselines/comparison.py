"""Comparing baseline runs: runs that stop at a hypervolume target, padded HV curves, summary rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..pareto import Normaliser, modnas_normaliser
from ..spaces import SearchSpace
from .base import Baseline
from .budget import Budget
from .evaluators import Evaluator
from .history import History, HypervolumeTracker, evaluations_to_reach


def run_to_target(
    baseline: Baseline,
    space: SearchSpace,
    evaluator: Evaluator,
    normaliser: Normaliser,
    target_hv: float,
    budget: Budget | int,
    seed: int,
    progress: bool = False,
) -> History:
    """Run ``baseline`` until its HV (under ``normaliser``, reference ones) reaches ``target_hv`` or the budget
    is spent. The run may overshoot by the rest of the batch in which the target was reached; use
    :func:`evaluations_to_reach` on the curve for the exact count."""
    tracker = HypervolumeTracker(normaliser)
    return baseline.run(
        space, evaluator, budget, seed, progress=progress, stop_when=lambda F: tracker.add(F) >= target_hv
    )


def pad_curves(curves: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """(S, L) curves of different lengths, each continued with its last value (a finished run keeps its HV)."""
    L = length if length is not None else max((len(c) for c in curves), default=0)
    out = np.zeros((len(curves), L))
    for i, c in enumerate(curves):
        c = np.asarray(c, dtype=np.float64)[:L]
        if len(c):
            out[i, : len(c)] = c
            out[i, len(c) :] = c[-1]
    return out


def summary_row(history: History, normaliser: Normaliser, target_hv: float | None = None) -> dict[str, Any]:
    """Final HV, evaluations, evaluations to ``target_hv`` (None if never reached), times, stop reason."""
    curve = history.hv_curve(normaliser)
    return {
        "method": history.method,
        "seed": history.seed,
        "evaluations": history.num_evaluations,
        "hv": float(curve[-1]) if len(curve) else 0.0,
        "evaluations_to_target": None if target_hv is None else evaluations_to_reach(curve, target_hv),
        "front_size": int(history.front_mask().sum()),
        "wall_s": history.total_wall_s,
        "evaluator_s": float(history.eval_s.sum()),
        "stop_reason": history.stop_reason,
    }


def common_normaliser(
    histories: Sequence[History], max_error: float = 90.0, extra: np.ndarray | None = None
) -> Normaliser | None:
    """MODNAS-style normaliser over every architecture any of ``histories`` evaluated, and the points ``extra``
    (n, M) (objective 0 is the error: rows at or above ``max_error`` are dropped, then min-max per objective);
    None when that leaves fewer than two distinct values in some objective (no hypervolume can be defined)."""
    F = [h.objectives for h in histories if h.num_evaluations] + ([extra] if extra is not None and len(extra) else [])
    if not F:
        return None
    allF = np.concatenate(F)  # (n, M)
    try:
        return modnas_normaliser(*(allF[:, m] for m in range(allF.shape[1])), max_error=max_error)
    except ValueError:
        return None


def aggregate_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Seeds of one method x device (rows of :func:`summary_row`) -> mean/std/min/max HV, mean evaluations,
    how many seeds reached the target and their mean evaluations to it, mean wall time."""
    if not rows:
        raise ValueError("aggregate_rows: no rows")
    hv = np.asarray([r["hv"] for r in rows], dtype=np.float64)
    reached = [r["evaluations_to_target"] for r in rows if r["evaluations_to_target"] is not None]
    return {
        "seeds": len(rows),
        "evaluations": float(np.mean([r["evaluations"] for r in rows])),
        "hv_mean": float(hv.mean()),
        "hv_std": float(hv.std()),
        "hv_min": float(hv.min()),
        "hv_max": float(hv.max()),
        "reached_target": f"{len(reached)}/{len(rows)}",
        "evaluations_to_target_mean": float(np.mean(reached)) if reached else None,
        "wall_s_mean": float(np.mean([r["wall_s"] for r in rows])),
    }

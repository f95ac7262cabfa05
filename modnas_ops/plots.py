"""Figures of a search (matplotlib's object API, no global pyplot state): one device's found architectures in
every pair of objectives — one panel for M = 2, the M (M - 1) / 2 pairwise panels for M >= 3."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

UNITS = {"latency_ms": "latency (ms)", "energy_mj": "energy (mJ)", "memory_mb": "peak memory (MiB)"}


def axis_label(objective: str, error_unit: str = "%") -> str:
    return f"error ({error_unit})" if objective == "error" else UNITS.get(objective, objective)


def front_figure(
    rows: Any,
    device: str,
    hv: Mapping[str, float],
    objectives: Sequence[str],
    reference: np.ndarray | None = None,
    error_unit: str = "%",
) -> Any:
    """Rows of one device (``pred_<o>``, ``true_<o>`` for every objective, ``on_front``): predicted points,
    judged (true / measured) points, and the judged front, in every pair of objectives; ``reference`` (R, M):
    the judged objectives of the reference architectures (the HV normalisation set), drawn behind them;
    ``error_unit``: the error's unit on its axis (the dataset task's, e.g. nats per token)."""
    from matplotlib.figure import Figure

    pairs = list(itertools.combinations(objectives, 2))  # (error, metric) pairs first
    cols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.9 * nrows), dpi=100)
    on = rows["on_front"].to_numpy(bool)
    for i, (y, x) in enumerate(pairs):
        ax = fig.add_subplot(nrows, cols, i + 1)
        xs = [rows[f"pred_{x}"], rows[f"true_{x}"]]
        if reference is not None and len(reference):
            jx, jy = objectives.index(x), objectives.index(y)
            ax.scatter(reference[:, jx], reference[:, jy], s=12, c="0.82", label=f"reference archs ({len(reference)})")
            xs.append(reference[:, jx])
        ax.scatter(rows[f"pred_{x}"], rows[f"pred_{y}"], s=14, marker="x", c="0.5", label="predicted")
        ax.scatter(rows[f"true_{x}"][~on], rows[f"true_{y}"][~on], s=16, c="tab:orange", label="off the front")
        front = rows[on].sort_values(f"true_{x}")
        style = "o-" if len(objectives) == 2 else "o"  # a 2-D projection of an M-D front is no staircase
        ax.plot(front[f"true_{x}"], front[f"true_{y}"], style, c="tab:blue", ms=4, label="found front")
        ax.set_xlabel(axis_label(x, error_unit))
        ax.set_ylabel(axis_label(y, error_unit))
        _readable_limits(ax, np.concatenate(xs), "x")
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(f"{device}: " + ", ".join(f"{k} {v:.4f}" for k, v in hv.items()), fontsize=9)
    fig.tight_layout()
    return fig


def fronts_overview_figure(
    fronts: Any,
    devices: Sequence[tuple[str, str]],
    objectives: Sequence[str],
    reference: Mapping[str, np.ndarray] | None = None,
    error_unit: str = "%",
) -> Any:
    """Every device's found front in one figure, one panel per device (error against the first hardware
    objective), over its reference architectures; ``devices``: (name, split), zero-shot ("test") ones marked."""
    from matplotlib.figure import Figure

    x = objectives[1]
    cols = min(4, len(devices))
    nrows = math.ceil(len(devices) / cols)
    fig = Figure(figsize=(3.6 * cols, 3.0 * nrows), dpi=90)
    for i, (name, split) in enumerate(devices):
        ax = fig.add_subplot(nrows, cols, i + 1)
        ref = (reference or {}).get(name)
        if ref is not None and len(ref):
            ax.scatter(ref[:, 1], ref[:, 0], s=8, c="0.82", label="reference")
        rows = fronts[(fronts["device"] == name) & fronts["on_front"]].sort_values(f"true_{x}")
        ax.plot(rows[f"true_{x}"], rows["true_error"], "o-" if len(objectives) == 2 else "o", c="tab:blue", ms=3,
                label="found front")  # fmt: skip
        ax.set_title(f"{name}{' (zero-shot)' if split == 'test' else ''}", fontsize=8,
                     color="tab:red" if split == "test" else "black")  # fmt: skip
        ax.set_xlabel(axis_label(x, error_unit), fontsize=7)
        ax.set_ylabel(axis_label("error", error_unit), fontsize=7)
        ax.tick_params(labelsize=6)
        if i == 0:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def hv_history_figure(history: Sequence[Mapping[str, float]], devices: Sequence[str], key: str = "hv") -> Any:
    """``<key>/<device>`` per epoch, one line per device (epochs from each record's ``epoch``, else its index)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.6), dpi=90)
    ax = fig.add_subplot(1, 1, 1)
    for d in devices:
        points = [(m.get("epoch", i), m[f"{key}/{d}"]) for i, m in enumerate(history) if f"{key}/{d}" in m]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", ms=3, label=d)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _readable_limits(ax: Any, values: np.ndarray, axis: str) -> None:
    """Pad a near-constant axis to +-5 % of its value, so matplotlib does not zoom into float noise."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-3 * max(abs(hi), 1e-12):
        pad = 0.05 * max(abs(hi), 1e-6)
        (ax.set_xlim if axis == "x" else ax.set_ylim)(lo - pad, hi + pad)


__all__ = ["axis_label", "front_figure", "fronts_overview_figure", "hv_history_figure"]

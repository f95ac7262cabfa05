"""Per-device latency baselines of the LINAS paper (Cummings et al. 2022) and the predictor metrics.

Baselines are scikit-learn regressors on flattened one-hot architectures (E * K features), fitted per
device on N measured architectures: ``ridge``, ``svr`` (RBF kernel) and ``stacked`` (ridge + SVR -> ridge,
``StackingRegressor``), plus ``gbm`` (histogram gradient boosting): not a LINAS baseline but a flexible
per-device model, used to estimate how much of a device's ranking is predictable at all. Targets are
standardised inside each model (``TransformedTargetRegressor``), so one set of hyper-parameters serves
devices whose latencies differ by orders of magnitude.

Metrics: :func:`kendall_tau`, :func:`spearman` (scipy; ties handled as tau-b / average ranks) and
:func:`mape` (percent); :func:`ranking_metrics` returns all three.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, StackingRegressor
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from threadpoolctl import threadpool_limits

from .spaces import SearchSpace

log = logging.getLogger(__name__)

TRAINING_SIZES = (100, 250, 500, 1000)  # architectures per device (LINAS-style learning curve)


# ---- metrics ----------------------------------------------------------------------------------------------


def _pair(pred: object, true: object) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"predictions ({p.shape[0]}) and targets ({t.shape[0]}) differ in length")
    if p.shape[0] < 2:
        raise ValueError(f"need at least 2 values to compare, got {p.shape[0]}")
    return p, t


def kendall_tau(pred: object, true: object) -> float:
    """Kendall tau-b between predictions and targets (nan when either is constant)."""
    p, t = _pair(pred, true)
    return float(stats.kendalltau(p, t).statistic)


def spearman(pred: object, true: object) -> float:
    """Spearman rank correlation (nan when either is constant)."""
    p, t = _pair(pred, true)
    return float(stats.spearmanr(p, t).statistic)


def mape(pred: object, true: object) -> float:
    """Mean absolute percentage error in percent (targets must be non-zero)."""
    p, t = _pair(pred, true)
    if np.any(t == 0):
        raise ValueError("mape: a target is zero")
    return float(np.mean(np.abs(p - t) / np.abs(t)) * 100.0)


def ranking_metrics(pred: object, true: object) -> dict[str, float]:
    """``{"kendall_tau", "spearman", "mape"}`` (MAPE in percent)."""
    return {"kendall_tau": kendall_tau(pred, true), "spearman": spearman(pred, true), "mape": mape(pred, true)}


# ---- baselines --------------------------------------------------------------------------------------------


def _ridge() -> RegressorMixin:
    return Ridge(alpha=1.0)


def _svr() -> RegressorMixin:
    return SVR(kernel="rbf", C=1.0, epsilon=0.05, gamma="scale")


def _standardised(model: RegressorMixin) -> RegressorMixin:
    return TransformedTargetRegressor(regressor=model, transformer=StandardScaler())


def _stacked() -> RegressorMixin:
    return StackingRegressor(estimators=[("ridge", _ridge()), ("svr", _svr())], final_estimator=Ridge(alpha=1.0), cv=5)


def _gbm() -> RegressorMixin:
    return HistGradientBoostingRegressor(max_iter=500, max_leaf_nodes=63, random_state=0)


BASELINES: dict[str, Callable[[], RegressorMixin]] = {"ridge": _ridge, "svr": _svr, "stacked": _stacked, "gbm": _gbm}


def available_baselines() -> list[str]:
    return sorted(BASELINES)


def create_baseline(name: str) -> RegressorMixin:
    """A fresh, unfitted baseline regressor (target standardised inside)."""
    try:
        make = BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; available: {', '.join(available_baselines())}") from None
    return _standardised(make())


def one_hot_features(space: SearchSpace, genotypes: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """(N, F) float32 predictor features of the one-hot encodings (:meth:`SearchSpace.features`: the flattened
    one-hots, or the space's table encoding, e.g. HELP's 160 for mbv3)."""
    onehot = space.one_hot_batch(np.asarray(genotypes, dtype=np.int64).tolist())  # (N, D, K)
    return space.features(torch.from_numpy(onehot)).numpy()


def fit_baseline(
    name: str, space: SearchSpace, genotypes: Sequence[Sequence[int]] | np.ndarray, y: np.ndarray
) -> RegressorMixin:
    """Fit baseline ``name`` on (genotypes (N, E), targets (N,))."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) != len(genotypes):
        raise ValueError(f"fit_baseline: {len(genotypes)} genotypes but {len(y)} targets")
    if len(y) < 10:
        raise ValueError(f"fit_baseline: need at least 10 architectures, got {len(y)}")
    model = create_baseline(name)
    # one OpenMP thread: gbm's default team spin-waits at every barrier and crawls (100x) when another process
    # holds a core of a small machine
    with threadpool_limits(limits=1):
        model.fit(one_hot_features(space, genotypes), y)
    return model


def predict_baseline(model: RegressorMixin, space: SearchSpace, genotypes: Sequence[Sequence[int]]) -> np.ndarray:
    """(N,) predictions of a fitted baseline."""
    with threadpool_limits(limits=1):
        return np.asarray(model.predict(one_hot_features(space, genotypes)), dtype=np.float64)


def learning_curve(
    space: SearchSpace,
    train_genotypes: np.ndarray,
    train_y: np.ndarray,
    test_genotypes: np.ndarray,
    test_y: np.ndarray,
    sizes: Sequence[int] = TRAINING_SIZES,
    names: Sequence[str] = ("ridge", "svr", "stacked"),
    seed: int = 0,
) -> list[dict[str, float | int | str]]:
    """Fit each baseline on the first ``n`` of a seeded permutation of the training archs, for each ``n`` in
    ``sizes`` (nested subsets), and score it on the test archs. One row per (baseline, n)."""
    order = np.random.default_rng(seed).permutation(len(train_y))
    rows: list[dict[str, float | int | str]] = []
    for n in sizes:
        if n > len(order):
            raise ValueError(f"learning_curve: {n} training archs requested, only {len(order)} available")
        idx = order[:n]
        for name in names:
            model = fit_baseline(name, space, train_genotypes[idx], train_y[idx])
            pred = predict_baseline(model, space, test_genotypes)
            rows.append({"baseline": name, "num_archs": int(n), **ranking_metrics(pred, test_y)})
    return rows

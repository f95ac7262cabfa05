"""Per-device latency baselines (ridge, SVR, stacked, gbm) and the ranking metrics, on a synthetic device."""

from __future__ import annotations

import numpy as np
import pytest

from modnas_ops.predictor_baselines import (
    available_baselines,
    create_baseline,
    fit_baseline,
    kendall_tau,
    learning_curve,
    mape,
    predict_baseline,
    ranking_metrics,
    spearman,
)
from modnas_ops.spaces import get_search_space

SPACE = get_search_space("nb201")
E, K = SPACE.shape


def _device(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random genotypes (n, E) and an additive latency in ms with 2 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    genotypes = rng.integers(0, K, size=(n, E))
    cost = np.random.default_rng(123).uniform(0.1, 2.0, size=(E, K))  # ms per (edge, op), same device
    latency = 1.0 + cost[np.arange(E), genotypes].sum(axis=1)  # (n,)
    return genotypes, latency * rng.lognormal(0.0, 0.02, size=n)


def test_ranking_metrics_exact_values():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 4, 3], [1, 2, 3, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert spearman([1, 2, 4, 3], [1, 2, 3, 4]) == pytest.approx(0.8)
    assert mape([110, 90], [100, 100]) == pytest.approx(10.0)
    assert ranking_metrics([1, 2], [2, 4]) == pytest.approx({"kendall_tau": 1.0, "spearman": 1.0, "mape": 50.0})
    with pytest.raises(ValueError, match="target is zero"):
        mape([1, 2], [0, 1])
    with pytest.raises(ValueError, match="differ in length"):
        kendall_tau([1, 2, 3], [1, 2])


@pytest.mark.parametrize("name", available_baselines())
def test_baseline_ranks_an_additive_device(name):
    g_train, y_train = _device(300, seed=0)
    g_test, y_test = _device(200, seed=1)
    model = fit_baseline(name, SPACE, g_train, y_train)
    pred = predict_baseline(model, SPACE, g_test)
    assert pred.shape == (200,)
    # an additive device is easy: every baseline must rank unseen archs well; a constant model gets nan / 0
    assert kendall_tau(pred, y_test) > 0.7


def test_unknown_baseline_and_too_few_archs():
    with pytest.raises(ValueError, match="unknown baseline 'xgb'; available: gbm, ridge, stacked, svr"):
        create_baseline("xgb")
    g, y = _device(5, seed=0)
    with pytest.raises(ValueError, match="at least 10"):
        fit_baseline("ridge", SPACE, g, y)


def test_learning_curve_rows_and_size_check():
    g_train, y_train = _device(120, seed=0)
    g_test, y_test = _device(50, seed=1)
    rows = learning_curve(SPACE, g_train, y_train, g_test, y_test, sizes=(20, 100), names=("ridge", "svr"))
    assert [(r["baseline"], r["num_archs"]) for r in rows] == [("ridge", 20), ("svr", 20), ("ridge", 100),
                                                               ("svr", 100)]  # fmt: skip
    ridge = {r["num_archs"]: r["kendall_tau"] for r in rows if r["baseline"] == "ridge"}
    assert ridge[100] > ridge[20] - 0.05  # more data does not make the additive fit worse
    with pytest.raises(ValueError, match="500 training archs requested, only 120"):
        learning_curve(SPACE, g_train, y_train, g_test, y_test, sizes=(500,), names=("ridge",))

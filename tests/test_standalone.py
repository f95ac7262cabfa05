"""Standalone training: a fixed recipe, deterministic, a cache that is reused and resumed."""

from __future__ import annotations

import pytest

from modnas_ops.data import load_pattern_splits
from modnas_ops.spaces import get_search_space
from modnas_ops.standalone import TrainRecipe, standalone_errors, train_standalone

SPACE = get_search_space("nb201")
NET = {"C": 4, "N": 1, "skeleton": "pointwise"}


@pytest.fixture(scope="module")
def data():
    return load_pattern_splits(seed=0, sizes=(600, 100, 300))


@pytest.mark.slow  # ~11 s: trains several architectures standalone
def test_architecture_decides_the_error_on_patterns(data) -> None:
    recipe = TrainRecipe(steps=150)
    skip = tuple([SPACE.ops.index("skip_connect")] * 6)
    conv = tuple([SPACE.ops.index("nor_conv_3x3")] * 6)
    err_skip, _ = train_standalone(SPACE, skip, data, NET, recipe)
    err_conv, net = train_standalone(SPACE, conv, data, NET, recipe)
    assert err_skip > 60 and err_conv < err_skip - 30  # no spatial conv: near chance (90 %)
    assert sum(p.numel() for p in net.parameters()) > 0
    again, _ = train_standalone(SPACE, conv, data, NET, recipe)
    assert again == err_conv  # deterministic in the recipe's seed


def test_cache_is_reused_and_extended(data, tmp_path) -> None:
    recipe = TrainRecipe(steps=20)
    cache = tmp_path / "ref.csv"
    gs = [SPACE.anchors()[0], SPACE.anchors()[1]]
    first = standalone_errors(SPACE, gs, data, NET, recipe, cache=cache, progress=False)
    assert len(first) == 2 and cache.read_text().count("\n") == 3
    calls = []
    import modnas_ops.standalone as st

    real = st.train_standalone

    def counting(*a, **k):
        calls.append(a[1])
        return real(*a, **k)

    st.train_standalone = counting
    try:
        again = standalone_errors(SPACE, [*gs, SPACE.anchors()[2]], data, NET, recipe, cache=cache, progress=False)
    finally:
        st.train_standalone = real
    assert len(calls) == 1 and calls[0] == SPACE.anchors()[2]  # only the new architecture is trained
    for k, (err, _) in first.items():
        assert again[k][0] == pytest.approx(err, abs=1e-4)  # read back from the cache
    with pytest.raises(ValueError, match="steps: must be >= 1"):
        TrainRecipe(steps=0)

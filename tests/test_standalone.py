"""Standalone training: a fixed recipe, deterministic, a cache that is reused and resumed."""

from __future__ import annotations

import copy

import pytest
import torch

from modnas_ops.config import ConfigError
from modnas_ops.data import load_pattern_splits
from modnas_ops.spaces import get_search_space
from modnas_ops.standalone import TrainRecipe, cache_key, standalone_errors, train, train_standalone, weight_optimizer

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


def test_weight_optimizers_are_configured_as_named() -> None:
    p = [torch.nn.Parameter(torch.zeros(3))]
    sgd = weight_optimizer(p, "sgd", 0.1, 0.9, 1e-4, nesterov=True)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert not weight_optimizer(p, "sgd", 0.1, 0.0, 0.0, nesterov=True).defaults["nesterov"]  # no momentum
    adamw = weight_optimizer(p, "adamw", 3e-3, 0.8, 0.01)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["betas"] == (0.8, 0.95)
    assert adamw.defaults["weight_decay"] == 0.01 and adamw.defaults["lr"] == 3e-3
    with pytest.raises(ValueError, match="sgd, adamw"):
        weight_optimizer(p, "adam", 0.1, 0.9, 0.0)
    with pytest.raises(ConfigError, match="optimizer: unknown weight optimizer 'adam'"):
        TrainRecipe(optimizer="adam")
    with pytest.raises(ConfigError, match="momentum: must be < 1"):
        TrainRecipe(optimizer="adamw", momentum=1.0)
    assert cache_key(SPACE, "patterns", NET, TrainRecipe()) != cache_key(
        SPACE, "patterns", NET, TrainRecipe(optimizer="adamw")
    )  # a cached SGD result is never read back as an AdamW one


def test_adamw_recipe_takes_adams_first_step(data) -> None:
    """Adam's first step moves each weight by lr * |g| / (|g| + eps), g its gradient on the first batch: an
    exact signature that SGD (a step of lr * g) does not have."""
    g = SPACE.anchors()[3]
    torch.manual_seed(0)
    net = SPACE.build_network(g, data.input_shape, data.num_classes, **NET)
    probe = copy.deepcopy(net).train()
    recipe = TrainRecipe(steps=1, batch_size=32, lr=1e-3, weight_decay=0.0, grad_clip=0.0, optimizer="adamw")
    x, y = data.train.tensors
    idx = torch.randint(len(x), (recipe.batch_size,), generator=torch.Generator().manual_seed(recipe.seed))
    data.task.loss(probe(x[idx]), y[idx]).backward()  # the gradient of train's first (and only) step
    train(net, data.train, recipe, torch.device("cpu"))
    for (name, p), q in zip(net.named_parameters(), probe.parameters(), strict=True):
        step = recipe.lr * q.grad.abs() / (q.grad.abs() + 1e-8)
        torch.testing.assert_close((p.detach() - q.detach()).abs(), step, atol=2e-7, rtol=1e-3, msg=name)

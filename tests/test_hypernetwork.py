"""MetaHypernetwork: shapes from the space, near-uniform start, uses every coordinate of r continuously,
depends on the device, can learn preference-dependent architectures, save/load, bad input."""

from __future__ import annotations

import pytest
import torch

from modnas_ops.hypernetwork import (
    available_hypernetworks,
    create_hypernetwork,
    load_hypernetwork,
    save_hypernetwork,
)
from modnas_ops.spaces import get_search_space

KINDS = ["kernel", "mlp"]


def _make(kind: str, m: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    return create_hypernetwork(
        kind, shape=get_search_space("nb201").shape, num_objectives=m, embedding_dim=10
    )


def _dirichlet(b: int, m: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(b, m).exponential_(generator=g)
    return x / x.sum(1, keepdim=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [2, 3, 4])
def test_shape_and_near_uniform_start(kind: str, m: int) -> None:
    space = get_search_space("nb201")
    h = _make(kind, m)
    out = h(_dirichlet(7, m), torch.rand(7, 10))
    assert out.shape == (7, *space.shape)
    probs = torch.softmax(out, -1)
    torch.testing.assert_close(probs, torch.full_like(probs, 1 / space.max_choices), atol=0.01, rtol=0)
    assert out.abs().max() > 0  # small noise, not exactly constant


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [3, 4])
def test_every_coordinate_of_r_matters(kind: str, m: int) -> None:
    """Moving mass between r[i] and r[j] (any pair, r[0] fixed when i, j > 0) changes the logits."""
    h = _make(kind, m)
    d = torch.rand(1, 10)
    base = torch.full((1, m), 1.0 / m)
    out0 = h(base, d)
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            r = base.clone()
            r[0, i] += 0.1
            r[0, j] -= 0.1
            assert (h(r, d) - out0).abs().max() > 1e-6, (i, j)


@pytest.mark.parametrize("kind", KINDS)
def test_continuous_in_r_and_depends_on_device(kind: str) -> None:
    h = _make(kind, 2)
    with torch.no_grad():
        for layer in [h.out]:
            layer.weight.normal_(0, 1.0)  # a "trained" output layer: large logits
    d = torch.rand(1, 10)
    ts = torch.linspace(0.01, 0.99, 981)
    r = torch.stack([ts, 1 - ts], 1)
    out = h(r, d.expand(len(ts), 10))  # (981, E, K)
    jumps = (out[1:] - out[:-1]).abs().amax(dim=(1, 2))
    total = (out[-1] - out[0]).abs().max()
    assert total > 0.5  # the logits do vary along the simplex ...
    assert jumps.max() < 0.05 * total  # ... without jumps (no buckets)
    other = h(r[:5], torch.rand(5, 10))
    assert (other - out[:5]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_learns_a_preference_dependent_architecture(kind: str) -> None:
    """Supervised fit: r[0] < 0.33 -> op 0, < 0.66 -> op 2, else op 4 on every edge; argmax then matches."""
    space = get_search_space("nb201")
    h = _make(kind, 2)
    opt = torch.optim.Adam(h.parameters(), lr=0.02)
    d = torch.rand(2, 10)

    def target(r: torch.Tensor) -> torch.Tensor:
        op = torch.where(r[:, 0] < 1 / 3, 0, torch.where(r[:, 0] < 2 / 3, 2, 4))
        return op[:, None].expand(-1, space.num_decisions)

    for step in range(300):
        r = _dirichlet(64, 2, seed=step)
        emb = d[torch.arange(64) % 2]
        loss = torch.nn.functional.cross_entropy(h(r, emb).flatten(0, 1), target(r).flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    r = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]])
    for dev in range(2):
        pred = h(r, d[dev].expand(3, 10)).argmax(-1)
        assert torch.equal(pred, target(r))


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_all_parameters(kind: str) -> None:
    h = _make(kind, 3)
    with torch.no_grad():
        h.out.weight.normal_(0, 0.1)
    out = h(_dirichlet(5, 3), torch.rand(5, 10))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in h.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_roundtrip(kind: str, tmp_path) -> None:
    h = _make(kind, 3)
    with torch.no_grad():
        h.out.weight.normal_(0, 0.1)
    path = tmp_path / "hpn.pt"
    save_hypernetwork(h, path)
    h2 = load_hypernetwork(path)
    assert type(h2) is type(h) and h2.hyperparameters() == h.hyperparameters()
    r, d = _dirichlet(4, 3), torch.rand(4, 10)
    torch.testing.assert_close(h2(r, d), h(r, d))
    assert [p.name for p in tmp_path.iterdir()] == ["hpn.pt"]  # no temp file left


def test_bad_input(tmp_path) -> None:
    h = _make("kernel", 2)
    with pytest.raises(ValueError, match=r"preference must be \(B, 2\)"):
        h(torch.ones(3, 3) / 3, torch.rand(3, 10))
    with pytest.raises(ValueError, match=r"embedding must be \(B, 10\)"):
        h(torch.ones(3, 2) / 2, torch.rand(3, 9))
    with pytest.raises(ValueError, match="batch sizes differ"):
        h(torch.ones(3, 2) / 2, torch.rand(2, 10))
    with pytest.raises(ValueError, match="unknown hypernetwork 'x'"):
        create_hypernetwork("x", shape=(6, 5))
    with pytest.raises(ValueError, match="num_objectives"):
        create_hypernetwork("kernel", shape=(6, 5), num_objectives=1, embedding_dim=10)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hypernetwork(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"x": 1}, bad)
    with pytest.raises(ValueError, match="not a saved hypernetwork"):
        load_hypernetwork(bad)
    assert set(KINDS) <= set(available_hypernetworks())

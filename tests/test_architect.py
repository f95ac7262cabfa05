"""Architect: every objective term reaches the hypernetwork, the predictor stays frozen, MGD steps, a known
optimum is found on additive fake objectives, weight steps on a tiny supernet, exact resume from state."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from modnas_ops.architect import (
    Architect,
    DeviceBatch,
    annealed_entropy_weight,
    cosine_similarity,
    flat_grad,
    write_flat_grad,
)
from modnas_ops.hypernetwork import create_hypernetwork
from modnas_ops.sampling import create_sampler
from modnas_ops.spaces import get_search_space

SPACE = get_search_space("nb201")
E, K = SPACE.shape


class FakePredictor(nn.Module):
    """latency(arch, d) = sum arch * (base + d[0] * extra): additive per edge, device-dependent; the
    MetaPredictor contract (B, E, K), (B, 10) -> (B, 1)."""

    metrics = ("latency_ms",)

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.base = nn.Parameter(torch.rand(E, K, generator=g))
        self.extra = nn.Parameter(torch.rand(E, K, generator=g))

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        cost = self.base + embedding[:, :1, None] * self.extra  # (B, E, K)
        return (arch * cost).sum(dim=(1, 2))[:, None]


class FakeError:
    """error(arch) = sum arch * C, additive per edge (C fixed)."""

    def __init__(self) -> None:
        self.cost = torch.rand(E, K, generator=torch.Generator().manual_seed(1))

    def __call__(self, arch: torch.Tensor, batch=None) -> torch.Tensor:
        return (arch * self.cost).sum(dim=(1, 2))


def _devices(n: int = 2) -> DeviceBatch:
    emb = torch.zeros(n, 10)
    emb[:, 0] = torch.linspace(0.0, 1.0, n)
    emb[:, 1:] = torch.rand(n, 9, generator=torch.Generator().manual_seed(2))
    lo = torch.zeros(n, 2)
    hi = torch.full((n, 2), float(E))
    return DeviceBatch(tuple(f"dev{i}" for i in range(n)), emb, lo, hi)


def _architect(mode: str = "mgd", lr: float = 0.05, cosine: float = 0.0, seed: int = 0, **kw) -> Architect:
    torch.manual_seed(seed)
    h = create_hypernetwork("kernel", shape=SPACE.shape, num_objectives=2, embedding_dim=10)
    opt = torch.optim.Adam(h.parameters(), lr=lr)
    return Architect(
        h,
        create_sampler("reinmax"),
        FakeError(),
        FakePredictor(),
        opt,
        combine_mode=mode,
        cosine_weight=cosine,
        seed=seed,
        **kw,
    )


def test_every_objective_term_sends_gradient_to_the_hypernetwork() -> None:
    arch = _architect(cosine=0.1, prefs_per_device=4)
    with torch.no_grad():
        arch.hypernetwork.out.weight.normal_(0, 0.5)  # away from the symmetric start
    devices = _devices()
    r = arch.sample_preferences(4)
    emb = devices.embeddings[1].expand(4, -1)
    _, a = arch.sample_architectures(r, emb)
    objs = arch.objectives(a, emb, devices.lo[1], devices.hi[1])
    terms = {
        "error": objs[:, 0].mean(),
        "latency": objs[:, 1].mean(),
        "cosine": -cosine_similarity(objs, r).mean(),
        "scalarised": (objs * r).sum(-1).mean(),
    }
    for name, term in terms.items():
        g = flat_grad(term, arch.params, retain_graph=True)
        assert torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_frozen_predictor_gets_no_gradient_or_update() -> None:
    arch = _architect(cosine=0.1)
    before = {k: v.clone() for k, v in arch.predictor.state_dict().items()}
    h_before = [p.detach().clone() for p in arch.hypernetwork.parameters()]
    for _ in range(3):
        stats = arch.hypernet_step(_devices(3))
    for name, p in arch.predictor.named_parameters():
        assert not p.requires_grad and p.grad is None, name
        assert torch.equal(p, before[name])
    assert not arch.predictor.training
    changed = [not torch.equal(a, b) for a, b in zip(h_before, arch.hypernetwork.parameters(), strict=True)]
    assert any(changed)
    assert sum(stats.weights.values()) == pytest.approx(1.0)
    assert set(stats.loss) == {"dev0", "dev1", "dev2"}


@pytest.mark.parametrize("batched", [True, False])
def test_mgd_direction_is_written_into_the_grads(batched: bool) -> None:
    """With SGD(lr=1) and mode 'mean' (no normalisation) the update equals minus the mean device gradient,
    and per-device gradients are those of each device's own loss (batched backward = one grad per device)."""
    torch.manual_seed(0)
    h = create_hypernetwork("mlp", shape=SPACE.shape, num_objectives=2, embedding_dim=10)
    arch = Architect(
        h,
        create_sampler("reinmax"),
        FakeError(),
        FakePredictor(),
        torch.optim.SGD(h.parameters(), lr=1.0),
        combine_mode="mean",
        normalize_grads=False,
        batched_grads=batched,
        seed=3,
    )
    devices = _devices(3)
    params = arch.params
    theta0 = torch.cat([p.detach().reshape(-1) for p in params])
    state = arch.state_dict()  # replay the same randomness to get the per-device gradients
    losses, _ = arch.device_losses(devices)
    expected = torch.stack([flat_grad(losses[t], params, retain_graph=True) for t in range(3)])
    torch.testing.assert_close(arch.per_device_gradients(losses), expected)
    arch.load_state_dict(state)
    arch.hypernet_step(devices)
    theta1 = torch.cat([p.detach().reshape(-1) for p in params])
    torch.testing.assert_close(theta1, theta0 - expected.mean(0))


def test_flat_grad_roundtrip() -> None:
    lin = nn.Linear(3, 2)
    flat = torch.arange(8, dtype=torch.float32)
    write_flat_grad(list(lin.parameters()), flat)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in lin.parameters()]), flat)
    with pytest.raises(ValueError, match="9 values for 8"):
        write_flat_grad(list(lin.parameters()), torch.zeros(9))


def _optimum(arch: Architect, devices: DeviceBatch, t: int, r: torch.Tensor) -> torch.Tensor:
    """Per-edge argmin of r . normalised cost: the exact optimum of additive objectives."""
    emb = devices.embeddings[t : t + 1]
    lat = arch.predictor.base + emb[0, 0] * arch.predictor.extra
    cost = r[0] * arch.error_term.cost / E + r[1] * lat / E  # (E, K) (lo = 0, hi = E)
    return cost.argmin(-1)


RAYS = (torch.tensor([0.85, 0.15]), torch.tensor([0.15, 0.85]))


def _well_separated_costs(arch: Architect, devices: DeviceBatch, margin: float = 0.005) -> None:
    """Redraw the fake cost tables (deterministically) until every (device, ray) optimum wins each edge by at
    least ``margin`` and the optima differ between preferences: a problem with one clear answer."""
    for seed in range(1000):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            arch.error_term.cost = torch.rand(E, K, generator=g)
            arch.predictor.base.copy_(torch.rand(E, K, generator=g))
            arch.predictor.extra.copy_(torch.rand(E, K, generator=g))
        gaps, optima = [], set()
        for t in range(len(devices.names)):
            for r in RAYS:
                emb = devices.embeddings[t]
                lat = arch.predictor.base + emb[0] * arch.predictor.extra
                cost = ((r[0] * arch.error_term.cost + r[1] * lat) / E).sort(-1).values
                gaps.append(float((cost[:, 1] - cost[:, 0]).min()))
                optima.add(tuple(_optimum(arch, devices, t, r).tolist()))
        if min(gaps) >= margin and len(optima) >= 3:
            return
    raise AssertionError("no well-separated cost tables found")


def _search_known_optimum(steps: int, seed: int, **kw) -> tuple[Architect, DeviceBatch]:
    """The product's recipe on the fake world: Adam at the configs' lr, 8 preferences per device, and the
    exploration bonus annealed as the search loop anneals it (weight 0.05 decayed to 0 at 75 %)."""
    arch = _architect(lr=0.01, prefs_per_device=8, seed=seed, **kw)
    devices = _devices(2)
    _well_separated_costs(arch, devices)
    for step in range(steps):
        arch.entropy_weight = annealed_entropy_weight(0.05, 0.75, step / steps)
        arch.hypernet_step(devices)
    return arch, devices


def _assert_optima(arch: Architect, devices: DeviceBatch) -> None:
    for t in range(2):
        for r in RAYS:
            got = arch.argmax_architectures(r[None], devices.embeddings[t])[0]
            assert torch.equal(got, _optimum(arch, devices, t, r)), (t, r)


# Several seeds: without the annealed bonus 3 of 10 seeds froze a wrong op (softmax exactly 1.0 in float32,
# zero gradient), and which seeds did depended on the CPU's float rounding (Intel vs AMD).
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["mgd", "mean"])
def test_finds_the_known_optimum_per_device_and_preference(mode: str, seed: int) -> None:
    _assert_optima(*_search_known_optimum(200, seed, mode=mode))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finite_differences_find_the_known_optimum(seed: int) -> None:
    _assert_optima(*_search_known_optimum(400, seed, finite_differences=True))


def test_a_saturated_edge_gets_no_gradient() -> None:
    """The failure the annealed bonus prevents: once softmax(logits) of an edge is exactly one-hot in
    float32, every gradient of that edge is exactly zero, whatever the objectives say."""
    arch = _architect(prefs_per_device=4)
    bias = arch.hypernetwork.out.bias
    with torch.no_grad():
        bias.view(E, K)[0, 0] = 200.0  # edge 0 saturated on op 0
    losses, _ = arch.device_losses(_devices(2))
    grad = torch.autograd.grad(losses.sum(), bias)[0].view(E, K)  # (E, K)
    assert torch.all(grad[0] == 0)
    assert torch.any(grad[1:] != 0)


def test_weight_step_trains_the_supernet_only() -> None:
    from modnas_ops.spaces.nb201.supernet import Supernet

    arch = _architect()
    torch.manual_seed(0)
    net = Supernet(SPACE, C=4, N=1, in_channels=1, num_classes=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(8, 1, 8, 8)
    y = torch.randint(0, 3, (8,))
    before = [p.detach().clone() for p in net.parameters()]
    loss = arch.weight_step(net, opt, x, y, _devices(2), num_archs=2)
    assert loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert all(p.grad is None for p in arch.hypernetwork.parameters())


def test_resume_from_state_is_exact() -> None:
    devices = _devices(2)
    a = _architect(seed=5)
    for _ in range(3):
        a.hypernet_step(devices)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    for _ in range(2):
        a.hypernet_step(devices)
    b = _architect(seed=99)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(2):
        b.hypernet_step(devices)
    for p, q in zip(a.hypernetwork.parameters(), b.hypernetwork.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_bad_configuration() -> None:
    h3 = create_hypernetwork("kernel", shape=SPACE.shape, num_objectives=3, embedding_dim=10)
    opt = torch.optim.Adam(h3.parameters())
    with pytest.raises(ValueError, match="takes 3 objectives"):
        Architect(h3, create_sampler("reinmax"), FakeError(), FakePredictor(), opt)
    with pytest.raises(ValueError, match="dirichlet_beta"):
        _architect(dirichlet_beta=(1.0, -1.0))
    with pytest.raises(ValueError, match="unknown scalarisation"):
        _architect(scalarisation="nope")
    with pytest.raises(ValueError, match="unknown combine mode"):
        _architect(mode="nope")
    with pytest.raises(ValueError, match="hi > lo"):
        DeviceBatch(("a",), torch.zeros(1, 10), torch.ones(1, 2), torch.ones(1, 2))


def test_finite_difference_gradient_is_the_exact_one_edge_change() -> None:
    from modnas_ops.architect import _FiniteDifferences

    torch.manual_seed(0)
    b = 3
    w = torch.randn(E * K, 2)
    q = torch.randn(E * K, E * K)

    def fn(a: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # non-linear, row-dependent objectives
        x = a.flatten(1)
        return torch.stack([(x @ q * x).sum(1), x @ w[:, 1]], 1) + rows[:, None].float()

    a = nn.functional.one_hot(torch.randint(0, K, (b, E)), K).float().requires_grad_()
    values = _FiniteDifferences.apply(a, fn, torch.ones(E, K, dtype=torch.bool))
    torch.testing.assert_close(values.detach(), fn(a.detach(), torch.arange(b)))
    g = torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]])
    (values * g).sum().backward()
    expected = torch.zeros(b, E, K)
    base = fn(a.detach(), torch.arange(b))
    for i in range(b):
        for e in range(E):
            for k in range(K):
                moved = a.detach().clone()
                moved[i, e] = 0
                moved[i, e, k] = 1
                expected[i, e, k] = ((fn(moved, torch.arange(b)) - base)[i] * g[i]).sum()
    torch.testing.assert_close(a.grad, expected, rtol=1e-5, atol=1e-4)

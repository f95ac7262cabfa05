"""The contract every registered search space meets (NB201, MobileNetV3, GPT-2 and the ragged test space
"toy"; a new space adds its small network settings to SMALL): supernet == subnet, ONNX == torch, masks honoured
by the hypernetwork, both samplers and finite differences, a search that finds a known optimum, a predictor
that ranks, a generator that round-trips, and baselines that cover the space by canonical architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modnas_ops.architect import Architect, DeviceBatch, annealed_entropy_weight
from modnas_ops.errors import UserError
from modnas_ops.hypernetwork import available_hypernetworks, create_hypernetwork
from modnas_ops.predictor import LATENCY, DeviceMeasurements, FitConfig, fit_meta_predictor
from modnas_ops.predictor_baselines import kendall_tau
from modnas_ops.sampling import available_samplers, create_sampler
from modnas_ops.spaces import MASKED_LOGIT, available_search_spaces, get_search_space

SPACES = available_search_spaces()
# (input shape, network hyper-parameters) small enough for 2 CPU cores
SMALL = {
    "nb201": ((1, 8, 8), {"C": 4, "N": 1}),
    "toy": ((1, 8, 8), {"C": 4, "N": 2}),
    "mbv3": ((1, 12, 12), {"C": 2, "N": 1}),
    "gpt2": ((6,), {"C": 4, "N": 1}),
}


@pytest.fixture(params=SPACES)
def space(request):
    return get_search_space(request.param)


def _genotypes(space, n: int, seed: int = 0) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    return list(dict.fromkeys(space.canonical(space.sample(rng)) for _ in range(4 * n)))[:n]


def _supernet(space, num_classes: int = 3):
    shape, hp = SMALL[space.name]
    torch.manual_seed(0)
    return space.build_supernet(shape, num_classes, **hp), shape, hp


def test_every_registered_space_has_small_settings() -> None:
    assert set(SPACES) <= set(SMALL), "add the new space's small network settings to SMALL"
    assert {"nb201", "toy", "mbv3", "gpt2"} <= set(SPACES)


def test_supernet_choice_equals_its_materialised_subnet(space) -> None:
    net, shape, _ = _supernet(space)
    x = space.example_input(shape, batch=4)
    for _ in range(2):  # train-mode steps move the BN running statistics away from their initial values
        net.train()(x, torch.from_numpy(space.one_hot(space.sample(np.random.default_rng(1)))))
    net.eval()
    for g in _genotypes(space, 5):
        w = torch.from_numpy(space.one_hot(g))
        with torch.no_grad():
            torch.testing.assert_close(net.subnet(g).eval()(x), net(x, w), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(net(x, w, dense=True), net(x, w), rtol=1e-5, atol=1e-5)


def test_a_space_ordered_by_size_has_its_smallest_and_largest_at_the_ends(space) -> None:
    """Sandwich pre-training trains these two every step: no sampled subnet has fewer parameters than the
    smallest or more than the largest; a space without an order says so."""
    if not space.ordered_by_size:
        with pytest.raises(UserError, match="sandwich"):
            space.smallest_and_largest()
        return
    net, _, _ = _supernet(space)
    size = {g: sum(p.numel() for p in net.subnet(g).parameters()) for g in _genotypes(space, 6)}
    small, large = space.smallest_and_largest()
    lo, hi = (sum(p.numel() for p in net.subnet(g).parameters()) for g in (small, large))
    assert lo < hi and all(lo <= n <= hi for n in size.values())


def test_dense_forward_sends_gradient_to_unselected_valid_choices_only(space) -> None:
    net, shape, _ = _supernet(space)
    x = space.example_input(shape, batch=4)
    g = _genotypes(space, 1, seed=3)[0]
    w = torch.tensor(space.one_hot(g), requires_grad=True)
    net.train()(x, w, dense=True).square().sum().backward()
    grad = w.grad.abs()  # (D, K)
    assert torch.all(grad[~torch.from_numpy(space.mask)] == 0)
    assert int((grad[torch.from_numpy(space.mask & (space.one_hot(g) == 0))] > 0).sum()) > 0


def test_fresh_network_and_onnx_export_match_torch(space) -> None:
    from profiling.export import assert_matches_torch, export_onnx

    shape, hp = SMALL[space.name]
    for g in _genotypes(space, 2, seed=4):
        torch.manual_seed(0)
        net = space.build_network(g, shape, 5, **hp).eval()
        x = space.example_input(shape, batch=2)
        out = net(x)  # (2, 5) logits of an image, or (2, T, 5) of every position
        assert out.shape[0] == 2 and out.shape[-1] == 5
        assert_matches_torch(net, x, export_onnx(net, x))


def test_supernet_file_round_trip(space, tmp_path) -> None:
    from modnas_ops.supernet_training import check_compatible, load_supernet, save_supernet

    net, shape, _ = _supernet(space)
    back = load_supernet(save_supernet(net, tmp_path / "s.pt")).eval()
    check_compatible(back, space.name, net.build_args)
    x = space.example_input(shape, batch=2)
    w = torch.from_numpy(space.one_hot(_genotypes(space, 1)[0]))
    torch.testing.assert_close(back(x, w), net.eval()(x, w))


# ---- masks -------------------------------------------------------------------------------------------------


def _hypernet(space, kind: str = "kernel", m: int = 2, **kw):
    torch.manual_seed(0)
    return create_hypernetwork(
        kind, shape=space.shape, num_objectives=m, embedding_dim=space.num_anchors, mask=space.mask.tolist(), **kw
    )


@pytest.mark.parametrize("kind", available_hypernetworks())
@pytest.mark.parametrize("sampler", available_samplers())
def test_masked_choices_are_never_sampled_or_argmaxed(space, kind: str, sampler: str) -> None:
    h = _hypernet(space, kind, init_std=3.0)  # far from uniform logits
    with torch.no_grad():
        h.out.bias.view(space.shape).masked_fill_(~torch.from_numpy(space.mask), 50.0)  # would win unmasked
    r = torch.full((64, 2), 0.5)
    d = torch.rand(64, space.num_anchors, generator=torch.Generator().manual_seed(0))
    logits = h(r, d)
    invalid = ~torch.from_numpy(space.mask)
    assert torch.all(logits[:, invalid] == MASKED_LOGIT)
    assert not torch.any(torch.nn.functional.one_hot(logits.argmax(-1), space.shape[1]).bool()[:, invalid])
    s = create_sampler(sampler)
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        a = s(logits, generator=gen)
        assert torch.all(a[:, invalid] == 0) and torch.all(a.sum(-1) == 1)


def test_finite_differences_never_encode_a_masked_choice(space) -> None:
    from modnas_ops.architect import _FiniteDifferences

    mask = torch.from_numpy(space.mask)
    seen = []

    def fn(a: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        seen.append(a.clone())
        return (a * torch.arange(a.shape[-1], dtype=a.dtype)).sum((1, 2))[:, None]

    a = torch.from_numpy(space.one_hot_batch(_genotypes(space, 3))).requires_grad_()
    _FiniteDifferences.apply(a, fn, mask).sum().backward()
    assert all(not torch.any(x[:, ~mask]) for x in seen)
    assert torch.all(a.grad[:, ~mask] == 0)


# ---- search on a fake world with a known optimum -------------------------------------------------------------


class AdditivePredictor(nn.Module):
    """latency = sum arch * (base + d[0] * extra) over the valid entries: (B, D, K), (B, A) -> (B, 1)."""

    metrics = (LATENCY,)

    def __init__(self, space, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.base = nn.Parameter(torch.rand(space.shape, generator=g))
        self.extra = nn.Parameter(torch.rand(space.shape, generator=g))

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return (arch * (self.base + embedding[:, :1, None] * self.extra)).sum(dim=(1, 2))[:, None]


def test_search_finds_the_known_optimum_of_an_additive_world(space) -> None:
    """Per-decision argmin over the VALID choices of r . (error, latency): the search's own recipe finds it
    (on every decision whose best choice is ahead of the second by more than 0.01, 1 % of the costs' scale)."""
    mask = torch.from_numpy(space.mask)
    err_cost = torch.rand(space.shape, generator=torch.Generator().manual_seed(7))
    pred = AdditivePredictor(space, seed=8)
    a = space.num_anchors
    emb = torch.rand(2, a, generator=torch.Generator().manual_seed(9))
    emb[:, 0] = torch.tensor([0.0, 1.0])
    d = space.num_decisions
    devices = DeviceBatch(("dev0", "dev1"), emb, torch.zeros(2, 2), torch.full((2, 2), float(d)))
    h = _hypernet(space, hidden=8)  # a small device MLP: the mbv3 output layer is (E * K) x code wide
    arch = Architect(
        h, create_sampler("reinmax"), lambda x, batch=None: (x * err_cost).sum((1, 2)), pred,
        torch.optim.Adam(h.parameters(), lr=0.01), prefs_per_device=8, seed=0,
    )  # fmt: skip
    steps = 300
    for step in range(steps):
        arch.entropy_weight = annealed_entropy_weight(0.05, 0.75, step / steps)
        arch.hypernet_step(devices)
    for t in range(2):
        for r in (torch.tensor([0.85, 0.15]), torch.tensor([0.15, 0.85])):
            lat = pred.base + emb[t, 0] * pred.extra
            cost = (r[0] * err_cost + r[1] * lat).masked_fill(~mask, torch.inf)  # (D, K)
            got = arch.argmax_architectures(r[None], emb[t])[0]
            top2 = cost.sort(-1).values[:, :2]  # (D, 2)
            clear = (top2[:, 1] - top2[:, 0] > 0.01) | ~torch.isfinite(top2[:, 1])  # near-ties (< 1 %) excluded
            assert clear.float().mean() > 0.75
            assert torch.equal(got[clear], cost.argmin(-1)[clear]), (t, r)


# ---- predictor, generator, baselines -------------------------------------------------------------------------


def _additive_devices(space, n_devices: int = 3) -> list[DeviceMeasurements]:
    rng = np.random.default_rng(0)
    genotypes = np.asarray(list(dict.fromkeys([*space.anchors(), *_genotypes(space, 120, seed=5)])))
    onehot = space.one_hot_batch([tuple(g) for g in genotypes]).reshape(len(genotypes), -1)
    out = []
    for i in range(n_devices):
        cost = rng.uniform(0.1, 1.0, onehot.shape[1]) * space.mask.reshape(-1)
        lat = 1.0 + onehot @ cost  # (N,) ms
        anchors = np.asarray([1.0 + space.one_hot(g).reshape(-1) @ cost for g in space.anchors()])
        out.append(DeviceMeasurements(f"dev{i}", genotypes, {LATENCY: lat}, {LATENCY: anchors}))
    return out


def test_predictor_fits_and_ranks_an_additive_world(space) -> None:
    devices = _additive_devices(space)
    fit = fit_meta_predictor(devices, FitConfig(epochs=150, batch_size=64, patience=150), space=space, progress=False)
    d = devices[0]
    pred = fit.model.predict_ms([tuple(g) for g in d.genotypes], d.anchor_values[LATENCY])
    assert kendall_tau(pred, d.values[LATENCY]) > 0.7


def test_generator_round_trip(space, tmp_path) -> None:
    from modnas_ops.devices import Device
    from modnas_ops.generator import ParetoGenerator, load_generator, save_generator

    h = _hypernet(space, init_std=1.0)
    lat = np.linspace(1.0, 3.0, space.num_anchors)
    gen = ParetoGenerator(h, space, devices=[Device("dev", tuple(lat))])
    df = gen.example_input(prefs_per_device=3)
    out = gen.predict(df)
    back = load_generator(save_generator(gen, tmp_path / "gen")).predict(df)
    assert list(out["arch"]) == list(back["arch"])
    for a in out["arch"]:
        assert space.to_string(space.from_string(a)) == a  # canonical strings


@pytest.mark.parametrize("method", ["random", "local", "nsga2"])
def test_baselines_cover_small_spaces_by_canonical_architecture(method: str) -> None:
    from modnas_ops.baselines import get_baseline

    toy = get_search_space("toy")

    class Evaluator:
        objective_names = ("error", "latency_ms")
        num_objectives = 2
        def __init__(self) -> None:
            self.calls: list[tuple[int, ...]] = []

        def evaluate(self, genotypes):
            self.calls.extend(genotypes)
            G = np.asarray(genotypes, dtype=np.float64).reshape(len(genotypes), -1)
            return np.stack([3.0 - G.sum(1), G.sum(1)], axis=1)

    ev = Evaluator()
    params = {"local": {"num_initial": 3}, "nsga2": {"population_size": 6}}.get(method, {})
    h = get_baseline(method, **params).run(toy, ev, 100, seed=0)
    assert h.stop_reason == "space" and h.num_evaluations == toy.num_distinct_architectures == 15
    assert sorted(ev.calls) == sorted(toy.canonical_genotypes())  # each architecture once, canonical

import io
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from modnas_ops.netcost import count_flops, count_params
from modnas_ops.spaces import available_search_spaces, get_search_space
from modnas_ops.spaces.nb201.supernet import (
    ONE_HOT_ATOL,
    DiscreteCell,
    MixedCell,
    Supernet,
    Zero,
    cell_topology,
    create_network,
    create_op,
    one_hot_selection,
)

SPACES = available_search_spaces()
SMALL = {"C": 4, "N": 1, "in_channels": 1, "num_classes": 10}
DIGITS_SHAPE = (3, 1, 8, 8)


@pytest.fixture(params=["nb201"])  # the NB201 cell supernet; every space: test_space_contract.py
def space(request):
    return get_search_space(request.param)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    # (torch.testing.assert_close costs ~3 s on first use: it imports torch.distributed.tensor)
    assert actual.shape == expected.shape
    err = float((actual - expected).detach().abs().max())
    assert err <= atol, f"max abs difference {err:.3g} > {atol}"


def _one_hot(space, genotype) -> torch.Tensor:
    return torch.from_numpy(space.one_hot(genotype))  # (E, K)


def _warmed_supernet(space, seed=0, **kwargs) -> Supernet:
    """A small supernet whose BN running stats are non-trivial (a few train-mode passes), then eval mode."""
    torch.manual_seed(seed)
    net = Supernet(space, **{**SMALL, **kwargs})
    net.train()
    with torch.no_grad():
        for _ in range(3):
            w = torch.softmax(torch.randn(space.shape), dim=-1)  # (E, K)
            net(torch.randn(16, *DIGITS_SHAPE[1:]) * 2 + 0.5, w)
    return net.eval()


def _genotypes(space, n=4, seed=0):
    rng = np.random.default_rng(seed)
    none = space.ops.index("none")
    return [
        *space.anchors()[:2],
        tuple([none] * space.num_decisions),
        *(space.sample(rng) for _ in range(n)),
    ]


def test_nb201_topology_parsed_from_edge_names():
    topo = cell_topology(get_search_space("nb201"))
    assert topo.num_nodes == 4 and topo.output_node == 3
    assert topo.edges == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert topo.incoming(3) == [(3, 0), (4, 1), (5, 2)]


def test_topology_rejects_non_dag_edge_names():
    class Fake:
        name = "fake"
        edges = ("1<-0", "stage2")

    with pytest.raises(ValueError, match="'stage2' is not of the form 'j<-i'"):
        cell_topology(Fake())
    Fake.edges = ("1<-0", "1<-2")
    with pytest.raises(ValueError, match="lower to a higher"):
        cell_topology(Fake())
    Fake.edges = ("2<-0",)
    with pytest.raises(ValueError, match=r"nodes \[1\] have no incoming edge"):
        cell_topology(Fake())


def test_unknown_op_names_the_op():
    with pytest.raises(ValueError, match="no cell operation 'sep_conv_5x5'"):
        create_op("sep_conv_5x5", 4, True)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("none", Zero),
        ("skip_connect", nn.Identity),
        ("avg_pool_3x3", nn.AvgPool2d),
    ],
)
def test_parameter_free_ops(name, kind):
    op = create_op(name, 4, affine=True)
    assert isinstance(op, kind) and count_params(op) == 0
    x = torch.randn(2, 4, 5, 5)
    y = op(x)
    assert y.shape == x.shape


def test_ops_match_nb201_semantics():
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(create_op("none", 4, True)(x), torch.zeros_like(x))
    assert torch.equal(create_op("skip_connect", 4, True)(x), x)
    # avg_pool_3x3 does not count padding: the corner averages its 2x2 in-image neighbourhood
    pooled = create_op("avg_pool_3x3", 4, True)(x)
    _assert_close(pooled[:, :, 0, 0], x[:, :, :2, :2].mean(dim=(2, 3)))
    for k in (1, 3):
        affine_op = create_op(f"nor_conv_{k}x{k}", 4, affine=True)
        conv = affine_op.op[1]
        assert conv.kernel_size == (k, k) and conv.bias is None and affine_op.op[2].affine
        plain_op = create_op(f"nor_conv_{k}x{k}", 4, affine=False)
        assert plain_op.op[1].bias is not None and not plain_op.op[2].affine
        assert plain_op(x).shape == x.shape


@pytest.mark.parametrize(("hw", "in_channels", "C", "N"), [(8, 1, 4, 1), (32, 3, 8, 2)])
def test_forward_shapes_soft_and_one_hot(space, hw, in_channels, C, N):
    net = Supernet(space, C=C, N=N, in_channels=in_channels, num_classes=7).eval()
    x = torch.randn(2, in_channels, hw, hw)
    soft = torch.softmax(torch.randn(space.shape), dim=-1)  # (E, K)
    with torch.no_grad():
        assert net(x, soft).shape == (2, 7)
        assert net(x, _one_hot(space, space.anchors()[0])).shape == (2, 7)


def test_forward_rejects_bad_shapes(space):
    net = Supernet(space, **SMALL)
    E, K = space.shape
    with pytest.raises(ValueError, match=rf"op_weights of shape \({E + 1}, {K}\)"):
        net(torch.randn(*DIGITS_SHAPE), torch.ones(E + 1, K))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(2, 1, 6, 6), torch.ones(E, K) / K)
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\)"):
        net(torch.randn(2, 3, 8, 8), torch.ones(E, K) / K)


def test_constructor_rejects_bad_sizes(space):
    with pytest.raises(ValueError, match="C must be a positive integer"):
        Supernet(space, C=0)
    with pytest.raises(ValueError, match="N must be a positive integer"):
        create_network(space, space.anchors()[0], N=-1)


def test_one_hot_selection():
    w = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert one_hot_selection(w) == (1, 0)
    soft = torch.softmax(torch.randn(2, 3), dim=-1)
    straight_through = w - soft.detach() + soft  # one-hot up to float rounding
    assert one_hot_selection(straight_through) == (1, 0)
    assert one_hot_selection(w + 10 * ONE_HOT_ATOL) is None
    assert one_hot_selection(torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])) is None
    assert one_hot_selection(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])) is None


def _count_calls(net: Supernet) -> dict[tuple[int, int], int]:
    """Forward-call counts of every op module, keyed by (edge, op); all cells together."""
    calls = dict.fromkeys(itertools.product(range(net.space.num_decisions), range(net.space.max_choices)), 0)

    def hook_for(key):
        def hook(module, inputs, output):
            calls[key] += 1

        return hook

    for cells in net.stages:
        for cell in cells:
            for e, ops in enumerate(cell.edges):
                for k, op in enumerate(ops):
                    op.register_forward_hook(hook_for((e, k)))
    return calls


def test_one_hot_runs_only_selected_ops(space):
    net = Supernet(space, **SMALL)
    num_cells = sum(len(cells) for cells in net.stages)
    calls = _count_calls(net)
    g = space.anchors()[0]
    soft = torch.softmax(torch.randn(space.shape, requires_grad=True), dim=-1)
    weights = _one_hot(space, g) - soft.detach() + soft  # straight-through, (E, K)
    net(torch.randn(*DIGITS_SHAPE), weights)
    expected = {(e, k): num_cells * (k == g[e]) for e, k in calls}
    assert calls == expected
    for key in calls:
        calls[key] = 0
    net(torch.randn(*DIGITS_SHAPE), soft)
    assert set(calls.values()) == {num_cells}


def test_gradient_reaches_op_weights(space):
    net = Supernet(space, **SMALL)
    x = torch.randn(*DIGITS_SHAPE)
    logits = torch.randn(space.shape, requires_grad=True)  # (E, K)
    hard = _one_hot(space, space.anchors()[0])
    for straight_through in (False, True):
        soft = torch.softmax(logits, dim=-1)
        weights = hard - soft.detach() + soft if straight_through else soft
        (grad,) = torch.autograd.grad(net(x, weights).square().sum(), logits)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    net.zero_grad()
    soft_w = torch.full(space.shape, 1.0 / space.max_choices, requires_grad=True)
    net(x, soft_w).sum().backward()
    none = space.ops.index("none")
    others = [k for k in range(space.max_choices) if k != none]
    assert (soft_w.grad[:, none] == 0).all()  # zeros contribute nothing
    assert (soft_w.grad[:, others] != 0).all()


def test_forward_mutates_only_bn_running_stats(space):
    net = Supernet(space, **SMALL)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    soft = torch.softmax(torch.randn(space.shape), dim=-1)
    with torch.no_grad():
        net.eval()(torch.randn(*DIGITS_SHAPE), soft)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with torch.no_grad():
        net.train()(torch.randn(*DIGITS_SHAPE), soft)
    changed = {k for k, v in net.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(
        k.rsplit(".", 1)[1] in {"running_mean", "running_var", "num_batches_tracked"} for k in changed
    )


def test_subnet_matches_supernet_one_hot(space):
    net = _warmed_supernet(space)
    x = torch.randn(*DIGITS_SHAPE)
    for g in _genotypes(space):
        sub = net.subnet(g)
        assert not sub.training
        with torch.no_grad():
            _assert_close(sub(x), net(x, _one_hot(space, g)))


def test_subnet_owns_copies_of_only_chosen_ops(space):
    net = _warmed_supernet(space)
    g = space.anchors()[0]
    sub = net.subnet(g)
    assert count_params(sub) < count_params(net)
    supernet_params = {p.data_ptr() for p in net.parameters()}
    assert all(p.data_ptr() not in supernet_params for p in sub.parameters())
    # same architecture as a fresh standalone network with the supernet's BN affinity
    fresh = create_network(space, g, affine=net.affine, **SMALL)
    assert {k: v.shape for k, v in sub.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}
    with torch.no_grad():
        for p in sub.parameters():
            p.add_(1.0)
    x = torch.randn(*DIGITS_SHAPE)
    with torch.no_grad():
        assert not torch.allclose(sub(x), net(x, _one_hot(space, g)))
        _assert_close(net.subnet(g)(x), net(x, _one_hot(space, g)))


def test_discrete_cell_drops_dead_nodes_and_none_edges():
    space = get_search_space("nb201")
    topo = cell_topology(space)
    ops = [nn.Identity() for _ in topo.edges]
    # kept: 1<-0, 2<-1 only; node 2 never reaches node 3, so the cell output is zeros and nothing is kept
    cell = DiscreteCell(topo, {0: ops[0], 2: ops[2]})
    assert len(cell.ops) == 0
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(cell(x), torch.zeros_like(x))
    # kept: 3<-1 only; node 1 has no kept input, so it is zeros and 3 = op(zeros)
    shift = nn.Conv2d(3, 3, 1)
    cell = DiscreteCell(topo, {4: shift})
    assert list(cell.ops) == ["4"]
    _assert_close(cell(x), shift(torch.zeros_like(x)))


def test_all_none_cell(space):
    net = _warmed_supernet(space)
    none = space.ops.index("none")
    g = tuple([none] * space.num_decisions)
    cell = net.stages[0][0]
    assert isinstance(cell, MixedCell)
    x = torch.randn(2, SMALL["C"], 8, 8)
    with torch.no_grad():
        assert torch.equal(cell(x, _one_hot(space, g), g), torch.zeros_like(x))
        assert torch.isfinite(net(torch.randn(*DIGITS_SHAPE), _one_hot(space, g))).all()
    sub = net.subnet(g)
    assert all(len(cell.ops) == 0 for cells in sub.stages for cell in cells)


def test_create_network_fresh_and_profilable(space):
    g = space.anchors()[0]
    net = create_network(space, g, C=8, N=2, in_channels=3, num_classes=10)
    assert net.genotype == g and net.arch == space.to_string(g)
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # affine=True networks (NB201's trained ones) have more params than affine=False ones
    assert count_params(net) > count_params(create_network(space, g, C=8, N=2, affine=False))


def test_count_flops_exact():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, (1, 3, 8, 8)) == 8 * 8 * 8 * 3 * 9
    assert count_flops(conv, (2, 3, 8, 8)) == 2 * 8 * 8 * 8 * 3 * 9
    grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
    assert count_flops(grouped, (1, 4, 8, 8)) == 8 * 8 * 8 * 2 * 9
    assert count_flops(nn.Linear(10, 5), (1, 10)) == 50
    assert count_params(nn.Linear(10, 5)) == 55
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()).train()
    assert count_flops(seq, (1, 3, 4, 4)) == 0
    assert seq.training and seq[0].training  # flags restored
    assert seq[0].num_batches_tracked == 0  # ran in eval mode: BN stats untouched


def test_count_flops_difference_is_the_cell_convs(space):
    C, N, hw = 4, 2, 8
    conv3 = space.ops.index("nor_conv_3x3")
    none = space.ops.index("none")
    full = create_network(space, [conv3] * space.num_decisions, C=C, N=N, in_channels=1)
    empty = create_network(space, [none] * space.num_decisions, C=C, N=N, in_channels=1)
    shape = (1, 1, hw, hw)
    expected = sum(N * space.num_decisions * (C * 2**s) ** 2 * 9 * (hw // 2**s) ** 2 for s in range(3))
    assert count_flops(full, shape) - count_flops(empty, shape) == expected
    assert count_params(full) - count_params(empty) == N * space.num_decisions * sum(
        (C * 2**s) ** 2 * 9 + 2 * C * 2**s for s in range(3)
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter warns that it is legacy
def test_subnet_exports_to_onnx(space):
    onnx = pytest.importorskip("onnx")
    net = _warmed_supernet(space)
    sub = net.subnet(space.anchors()[0])
    buffer = io.BytesIO()
    torch.onnx.export(sub, (torch.randn(*DIGITS_SHAPE),), buffer, dynamo=False, input_names=["x"])
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    assert any(node.op_type == "Conv" for node in model.graph.node)


def test_nb201_largest_network_matches_published_size():
    # NAS-Bench-201's README/API report {'flops': 220.11969, 'params': 1.531546} (millions) for the CIFAR-10
    # network with nor_conv_3x3 on every edge (C=16, N=5); its FLOP counter adds the classifier's 10 biases.
    space = get_search_space("nb201")
    net = create_network(space, [space.ops.index("nor_conv_3x3")] * space.num_decisions, C=16, N=5)
    assert count_params(net) == 1_531_546
    assert count_flops(net, (1, 3, 32, 32)) + 10 == 220_119_690


def test_pointwise_skeleton_leaves_all_spatial_computation_to_the_cells():
    space = get_search_space("nb201")
    skip = tuple([space.ops.index("skip_connect")] * space.num_decisions)
    net = space.build_network(skip, (1, 8, 8), 10, C=4, N=1, skeleton="pointwise")
    kernels = {m.kernel_size for m in net.modules() if isinstance(m, nn.Conv2d)}
    assert kernels == {(1, 1)}  # a skip-only cell: no spatial conv anywhere
    torch.manual_seed(0)
    sup = space.build_supernet((1, 8, 8), 10, C=4, N=1, skeleton="pointwise")
    assert sup.build_args["skeleton"] == "pointwise"
    x = torch.randn(3, 1, 8, 8)
    sup(x, torch.from_numpy(space.one_hot(skip)))  # moves BN statistics
    sup.eval()
    g = (3, 1, 2, 4, 3, 0)
    with torch.no_grad():
        torch.testing.assert_close(sup.subnet(g).eval()(x), sup(x, torch.from_numpy(space.one_hot(g))))
    with pytest.raises(ValueError, match="unknown NB201 macro skeleton 'wide'"):
        space.build_supernet((1, 8, 8), 10, skeleton="wide")

"""NAS-Bench-201 macro skeleton over a DAG-cell search space: weight-sharing supernet and subnets.

Macro skeleton (NB201's ``TinyNetwork``): stem conv3x3 -> C + BN; three stages of N cells at widths
C, 2C, 4C separated by residual reduction blocks (NB201's ``ResNetBasicblock``, stride 2); BN + ReLU,
global average pool, linear classifier. Resolution is halved twice, so input height and width must be
divisible by 4 (8x8 digits and 32x32 CIFAR both work).

Cells are DAGs read from the space's edge names ``"j<-i"`` (node 0 = cell input, highest node = cell
output, node j = sum of its incoming edges). Cell ops keep channels and resolution, exactly as NB201's:

- ``none``: zeros; ``skip_connect``: identity; ``avg_pool_3x3``: stride 1, pad 1, no padding counted;
- ``nor_conv_1x1`` / ``nor_conv_3x3``: ReLU -> Conv -> BN with NB201's convention ``bias = not affine``.

BN affinity follows NB201: its search models build cell ops with ``affine=False`` (BN cannot rescale the
mixed sum against the op weights), its trained benchmark networks with ``affine=True``. Hence
``Supernet(affine=False)`` and ``create_network(affine=True)`` by default; stem, reduction blocks and the
last BN are always affine. All BNs track running statistics.
"""

from __future__ import annotations

import copy
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UserError
from ..base import Genotype, SearchSpace

logger = logging.getLogger(__name__)

NUM_STAGES = 3
SKELETONS = ("nb201", "pointwise")
# Entries within this distance of 0 / 1 count as one-hot (straight-through samples
# ``hard - soft.detach() + soft`` are one-hot only up to float rounding).
ONE_HOT_ATOL = 1e-6

# ---- cell operations -----------------------------------------------------------------------------


class Zero(nn.Module):
    """NB201's ``none``: an all-zero output of the input's shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class ReLUConvBN(nn.Module):
    """ReLU -> Conv(k, stride, pad) -> BN, as NB201 (conv bias iff BN is not affine)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=not affine),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


OpFactory = Callable[[int, bool], nn.Module]  # (channels, affine) -> op keeping channels and resolution

_OPS: dict[str, OpFactory] = {
    "none": lambda c, affine: Zero(),
    "skip_connect": lambda c, affine: nn.Identity(),
    "nor_conv_1x1": lambda c, affine: ReLUConvBN(c, c, 1, 1, 0, affine),
    "nor_conv_3x3": lambda c, affine: ReLUConvBN(c, c, 3, 1, 1, affine),
    "avg_pool_3x3": lambda c, affine: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
}


def available_ops() -> list[str]:
    return sorted(_OPS)


def create_op(name: str, channels: int, affine: bool) -> nn.Module:
    """A fresh cell operation by name (stride 1, ``channels`` -> ``channels``)."""
    try:
        factory = _OPS[name]
    except KeyError:
        raise ValueError(f"no cell operation {name!r}; available: {', '.join(available_ops())}") from None
    return factory(channels, affine)


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block: two 3x3 ReLU-Conv-BN (first with stride 2) + avgpool/1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


# ---- cell topology -------------------------------------------------------------------------------

_EDGE_RE = re.compile(r"^\s*(\d+)\s*<-\s*(\d+)\s*$")


@dataclass(frozen=True)
class CellTopology:
    """DAG of a cell: ``edges[e] = (to_node, from_node)`` in the space's edge order; output = last node."""

    num_nodes: int
    edges: tuple[tuple[int, int], ...]

    @property
    def output_node(self) -> int:
        return self.num_nodes - 1

    def incoming(self, node: int) -> list[tuple[int, int]]:
        """``(edge index, from_node)`` of every edge into ``node``, in edge order."""
        return [(e, i) for e, (j, i) in enumerate(self.edges) if j == node]


def cell_topology(space: SearchSpace) -> CellTopology:
    """Parse the space's edge names ``"j<-i"`` (i < j, node 0 = input) into a :class:`CellTopology`."""
    edges: list[tuple[int, int]] = []
    for name in space.edges:
        m = _EDGE_RE.match(name)
        if m is None:
            raise ValueError(f"{space.name}: edge {name!r} is not of the form 'j<-i'; a DAG cell space is needed")
        j, i = int(m.group(1)), int(m.group(2))
        if not i < j:
            raise ValueError(f"{space.name}: edge {name!r} must go from a lower to a higher node")
        if (j, i) in edges:
            raise ValueError(f"{space.name}: edge {name!r} appears twice")
        edges.append((j, i))
    if not edges:
        raise ValueError(f"{space.name}: no edges")
    num_nodes = max(j for j, _ in edges) + 1
    missing = sorted(set(range(1, num_nodes)) - {j for j, _ in edges})
    if missing:
        raise ValueError(f"{space.name}: nodes {missing} have no incoming edge")
    return CellTopology(num_nodes=num_nodes, edges=tuple(edges))


def _check_ops(space: SearchSpace) -> None:
    unknown = [op for op in space.ops if op not in _OPS]
    if unknown:
        known = ", ".join(available_ops())
        raise ValueError(f"{space.name}: no cell operation for {unknown}; available: {known}")


# ---- cells ---------------------------------------------------------------------------------------


def _add(terms: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Sum of ``terms``; zeros shaped like ``like`` when there are none."""
    if not terms:
        return torch.zeros_like(like)
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


class MixedCell(nn.Module):
    """Every op on every edge; ``forward`` mixes them with op weights (E, K)."""

    def __init__(self, space: SearchSpace, topology: CellTopology, channels: int, affine: bool) -> None:
        super().__init__()
        self.topology = topology
        self.edges = nn.ModuleList(
            nn.ModuleList(create_op(op, channels, affine) for op in space.ops) for _ in topology.edges
        )
        self._incoming = [topology.incoming(j) for j in range(topology.num_nodes)]

    def forward(self, x: torch.Tensor, op_weights: torch.Tensor, selected: Sequence[int] | None = None) -> torch.Tensor:
        """``op_weights`` (E, K); with ``selected`` (one op index per edge) only those ops are run."""
        nodes = [x]
        for j in range(1, self.topology.num_nodes):
            terms = []
            for e, i in self._incoming[j]:
                h = nodes[i]
                ops = self.edges[e]
                if selected is None:
                    terms.append(_add([op_weights[e, k] * op(h) for k, op in enumerate(ops)], h))
                else:
                    k = selected[e]
                    terms.append(op_weights[e, k] * ops[k](h))
            nodes.append(_add(terms, x))
        return nodes[-1]


class DiscreteCell(nn.Module):
    """A cell of fixed ops: ``ops[e]`` for the kept (non-``none``) edges. Nodes that cannot reach the
    output are dropped with their ops; a node with no kept input is zeros."""

    def __init__(self, topology: CellTopology, ops: Mapping[int, nn.Module]) -> None:
        super().__init__()
        out = topology.output_node
        live = {out}
        for j in range(out, 0, -1):
            if j in live:
                live.update(i for e, i in topology.incoming(j) if e in ops)
        self._plan: list[tuple[int, list[tuple[str, int]]]] = [
            (j, [(str(e), i) for e, i in topology.incoming(j) if e in ops]) for j in sorted(live) if j > 0
        ]
        self.ops = nn.ModuleDict({key: ops[int(key)] for _, inputs in self._plan for key, _ in inputs})
        self.output_node = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = {0: x}
        for j, inputs in self._plan:
            nodes[j] = _add([self.ops[key](nodes[i]) for key, i in inputs], x)
        return nodes[self.output_node]


# ---- networks ------------------------------------------------------------------------------------


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _stage_widths(C: int) -> list[int]:
    return [C * 2**s for s in range(NUM_STAGES)]


class _CellNetwork(nn.Module):
    """Stem -> stages of cells separated by reduction blocks -> BN-ReLU -> pool -> linear."""

    def __init__(self, skeleton: _Skeleton, stages: Iterable[Iterable[nn.Module]]) -> None:
        super().__init__()
        self.stem = skeleton.stem
        self.stages = nn.ModuleList(nn.ModuleList(cells) for cells in stages)
        self.reductions = nn.ModuleList(skeleton.reductions)
        self.lastact = skeleton.lastact
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = skeleton.classifier

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(self.lastact(x))  # (B, 4C, 1, 1)
        return self.classifier(torch.flatten(x, 1))  # (B, classes)


@dataclass
class _Skeleton:
    """The non-cell parts of the macro skeleton."""

    stem: nn.Module
    reductions: list[nn.Module]
    lastact: nn.Module
    classifier: nn.Module

    @classmethod
    def fresh(cls, C: int, in_channels: int, num_classes: int, kind: str = "nb201") -> _Skeleton:
        """``nb201``: NB201's TinyNetwork (conv3x3 stem, residual conv3x3 reduction blocks). ``pointwise``: a
        1x1-conv stem and 2x2 average pooling + 1x1 conv reductions, so every spatial computation of the
        network happens in its cells and the cell decides what the network can see."""
        widths = _stage_widths(C)
        if kind == "nb201":
            stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
            reductions = [ResNetBasicBlock(a, b) for a, b in itertools.pairwise(widths)]
        elif kind == "pointwise":
            stem = nn.Sequential(nn.Conv2d(in_channels, C, 1, bias=False), nn.BatchNorm2d(C))
            reductions = [
                nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(a, b, 1, bias=False), nn.BatchNorm2d(b))
                for a, b in itertools.pairwise(widths)
            ]
        else:
            raise UserError(f"skeleton: unknown NB201 macro skeleton {kind!r}; available: {', '.join(SKELETONS)}")
        return cls(
            stem=stem,
            reductions=reductions,
            lastact=nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=False)),
            classifier=nn.Linear(widths[-1], num_classes),
        )


class SubNetwork(_CellNetwork):
    """A standalone network of one genotype (only its non-``none`` ops); ``forward(x) -> logits``."""

    def __init__(
        self,
        space: SearchSpace,
        genotype: Genotype,
        skeleton: _Skeleton,
        stages: Iterable[Iterable[DiscreteCell]],
    ) -> None:
        super().__init__(skeleton, stages)
        self.space_name = space.name
        self.genotype = genotype
        self.arch = space.to_string(genotype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, classes)."""
        x = self.stem(x)
        for s, cells in enumerate(self.stages):
            if s > 0:
                x = self.reductions[s - 1](x)
            for cell in cells:
                x = cell(x)
        return self._head(x)


class Supernet(_CellNetwork):
    """Weight-sharing supernet: every cell holds all K ops on each of its E edges.

    ``forward(x, op_weights)`` mixes the ops with the (E, K) weights, shared by all cells. When every
    row is one-hot in value (within ``ONE_HOT_ATOL``; e.g. straight-through ReinMax/GDAS samples) only
    the selected op of each edge runs, multiplied by its weight so gradients reach ``op_weights``
    (GDAS-style: unselected entries get no direct gradient; the sampler's relaxation spreads it).
    """

    def __init__(
        self,
        space: SearchSpace,
        C: int = 16,
        N: int = 5,
        in_channels: int = 3,
        num_classes: int = 10,
        affine: bool = False,
        skeleton: str = "nb201",
    ) -> None:
        _check_positive(C=C, N=N, in_channels=in_channels, num_classes=num_classes)
        _check_ops(space)
        topology = cell_topology(space)
        stages = [[MixedCell(space, topology, w, affine) for _ in range(N)] for w in _stage_widths(C)]
        super().__init__(_Skeleton.fresh(C, in_channels, num_classes, skeleton), stages)
        self.space = space
        self.topology = topology
        self.C, self.N, self.affine = C, N, affine
        self.in_channels, self.num_classes = in_channels, num_classes
        # keyword arguments of NB201Space.build_supernet that rebuild this net (the cells fix no resolution)
        self.build_args = {
            "input_shape": [in_channels], "num_classes": num_classes, "C": C, "N": N, "affine": affine,
            "skeleton": skeleton,
        }  # fmt: skip

    def forward(self, x: torch.Tensor, op_weights: torch.Tensor, dense: bool = False) -> torch.Tensor:
        """x (B, C_in, H, W), op_weights (E, K) -> logits (B, classes).

        ``dense``: compute every op of every edge, even for one-hot weights: the same values as the
        selected-only path (the other ops are weighted by exact zeros), but the straight-through gradient also
        reaches the unselected entries (<dL/d node, op(h)>), i.e. how switching an edge to each other op would
        change the loss. (The selected-only path gives them no gradient, so an edge set to ``none`` never
        hears from the error term while latency keeps pushing towards ``none``.)"""
        if tuple(op_weights.shape) != self.space.shape:
            raise ValueError(f"op_weights of shape {tuple(op_weights.shape)}, expected {self.space.shape} (E, K)")
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(
                f"input of shape {tuple(x.shape)}; expected (B, {self.in_channels}, H, W) with H and W divisible by 4"
            )
        w = op_weights.to(device=x.device, dtype=x.dtype)  # (E, K)
        selected = None if dense else one_hot_selection(w)
        x = self.stem(x)
        for s, cells in enumerate(self.stages):
            if s > 0:
                x = self.reductions[s - 1](x)
            for cell in cells:
                x = cell(x, w, selected)
        return self._head(x)

    def subnet(self, genotype: Sequence[int]) -> SubNetwork:
        """Standalone network of ``genotype`` from deep copies of this supernet's chosen modules
        (``none`` edges dropped). In eval mode it computes what ``self(x, one_hot(genotype))`` does."""
        g = self.space.validate(genotype)

        def cell_copy(cell: MixedCell) -> DiscreteCell:
            chosen = {e: cell.edges[e][k] for e, k in enumerate(g)}
            return DiscreteCell(
                self.topology, {e: copy.deepcopy(op) for e, op in chosen.items() if not isinstance(op, Zero)}
            )

        skeleton = _Skeleton(
            stem=copy.deepcopy(self.stem),
            reductions=list(copy.deepcopy(self.reductions)),
            lastact=copy.deepcopy(self.lastact),
            classifier=copy.deepcopy(self.classifier),
        )
        net = SubNetwork(self.space, g, skeleton, [[cell_copy(cell) for cell in cells] for cells in self.stages])
        return net.train(self.training)


def one_hot_selection(op_weights: torch.Tensor, atol: float = ONE_HOT_ATOL) -> tuple[int, ...] | None:
    """Selected op per edge if every row of (E, K) ``op_weights`` is one-hot within ``atol``, else None."""
    w = op_weights.detach()
    ones = (w - 1).abs() <= atol  # (E, K)
    zeros = w.abs() <= atol  # (E, K)
    if not bool(((ones | zeros).all(dim=-1) & (ones.sum(dim=-1) == 1)).all()):
        return None
    return tuple(int(k) for k in ones.to(torch.int8).argmax(dim=-1).tolist())


def create_network(
    space: SearchSpace,
    genotype: Sequence[int],
    C: int = 16,
    N: int = 5,
    in_channels: int = 3,
    num_classes: int = 10,
    affine: bool = True,
    skeleton: str = "nb201",
) -> SubNetwork:
    """A fresh standalone network of ``genotype`` (new weights), e.g. for profiling."""
    _check_positive(C=C, N=N, in_channels=in_channels, num_classes=num_classes)
    _check_ops(space)
    g = space.validate(genotype)
    topology = cell_topology(space)

    def fresh_cell(channels: int) -> DiscreteCell:
        ops = {e: create_op(space.ops[k], channels, affine) for e, k in enumerate(g)}
        return DiscreteCell(topology, {e: op for e, op in ops.items() if not isinstance(op, Zero)})

    stages = [[fresh_cell(w) for _ in range(N)] for w in _stage_widths(C)]
    return SubNetwork(space, g, _Skeleton.fresh(C, in_channels, num_classes, skeleton), stages)

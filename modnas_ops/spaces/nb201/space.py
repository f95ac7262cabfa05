"""NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell is a DAG over 4 nodes; each of the 6 edges j<-i (i < j) carries one of 5 operations.
Edge order (canonical string order): 1<-0 | 2<-0, 2<-1 | 3<-0, 3<-1, 3<-2.

NB201's architecture index is not a base-5 enumeration: the benchmark enumerated genotypes with
edge 1<-0 most significant (``CellStructure.gen_all``) and then shuffled that list with
``random.seed(88)``. We rebuild the same permutation so ``nb201_index`` agrees with the published
table without reading it (tests check all 15,625 rows).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import numpy as np
from torch import nn

from ..base import Decision, Genotype, SearchSpace, register_search_space

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to_node, from_node)
NB201_NUM_NODES = 4
# Anchor architectures (NB201 indices) of HELP / MODNAS: the device embedding is the min-max
# normalised latency of these 10 networks on the device.
NB201_ANCHOR_INDICES = (11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462)
_NB201_SHUFFLE_SEED = 88


@register_search_space
class NB201Space(SearchSpace):
    """6 cell edges (the decisions), each choosing one of the same 5 operations."""

    name = "nb201"
    benchmark_index_name = "nb201_index"
    edges = tuple(f"{j}<-{i}" for j, i in NB201_EDGES)
    ops = NB201_OPS
    decisions = tuple(Decision(e, NB201_OPS) for e in edges)

    def to_string(self, genotype: Sequence[int]) -> str:
        g = self.validate(genotype)
        nodes: list[list[str]] = [[] for _ in range(NB201_NUM_NODES - 1)]
        for (j, i), op in zip(NB201_EDGES, g, strict=False):
            nodes[j - 1].append(f"{self.ops[op]}~{i}")
        return "+".join("|" + "|".join(node) + "|" for node in nodes)

    def from_string(self, arch: str) -> Genotype:
        s = arch.strip()
        node_strs = s.split("+")
        if len(node_strs) != NB201_NUM_NODES - 1:
            raise ValueError(f"nb201: {arch!r} has {len(node_strs)} nodes, expected 3 '+'-separated nodes")
        g: list[int] = []
        for j, node in enumerate(node_strs, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise ValueError(f"nb201: node {j} of {arch!r} must be wrapped in '|'")
            parts = [p for p in node[1:-1].split("|")]
            if len(parts) != j:
                raise ValueError(f"nb201: node {j} of {arch!r} has {len(parts)} inputs, expected {j}")
            for i, part in enumerate(parts):
                op, sep, src = part.partition("~")
                if not sep or src != str(i):
                    raise ValueError(f"nb201: edge {part!r} of {arch!r} should read '<op>~{i}'")
                if op not in self.ops:
                    raise ValueError(f"nb201: unknown op {op!r} in {arch!r}; ops: {', '.join(self.ops)}")
                g.append(self.ops.index(op))
        return tuple(g)

    def constant_output(self, genotype: Sequence[int]) -> bool:
        """No path of non-``none`` edges from the cell input (node 0) to its output (node 3)."""
        g = self.validate(genotype)
        none = self.ops.index("none")
        reached = {0}
        for (j, i), op in zip(NB201_EDGES, g, strict=True):  # edges are ordered by target node
            if op != none and i in reached:
                reached.add(j)
        return NB201_NUM_NODES - 1 not in reached

    def decision_graph(self) -> np.ndarray:
        """The cell's line graph: node 0 the cell input, nodes 1..6 the edges' operations, node 7 the output;
        op (j<-i) connects to every op leaving node j, ops leaving node 0 to the input, ops entering the last
        node to the output (HELP's GCN input)."""
        n = len(NB201_EDGES) + 2
        adj = np.eye(n, dtype=np.float64)
        last = NB201_NUM_NODES - 1
        for e, (j, i) in enumerate(NB201_EDGES):
            if i == 0:
                adj[e + 1, 0] = 1.0
            if j == last:
                adj[n - 1, e + 1] = 1.0
            for f, (_, i2) in enumerate(NB201_EDGES):
                if i2 == j:
                    adj[f + 1, e + 1] = 1.0
        return ((adj + adj.T) > 0).astype(np.float64)

    # ---- networks ----------------------------------------------------------------------------------
    def build_supernet(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 16,
        N: int = 5,
        affine: bool = False,
        skeleton: str = "nb201",
    ) -> nn.Module:
        """The macro skeleton (``nb201``, or ``pointwise``: 1x1 stem, pooling reductions) with mixed-op cells
        (see :mod:`.supernet`); H and W divisible by 4."""
        from .supernet import Supernet

        return Supernet(
            self, C=C, N=N, in_channels=int(input_shape[0]), num_classes=num_classes, affine=affine, skeleton=skeleton
        )

    def build_network(
        self,
        genotype: Sequence[int],
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 16,
        N: int = 5,
        affine: bool = True,
        skeleton: str = "nb201",
    ) -> nn.Module:
        from .supernet import create_network

        return create_network(
            self, genotype, C=C, N=N, in_channels=int(input_shape[0]), num_classes=num_classes, affine=affine,
            skeleton=skeleton,
        )  # fmt: skip

    # ---- NB201's published index order ---------------------------------------------------
    def benchmark_index(self, genotype: Sequence[int]) -> int:
        """Index of the architecture in the NAS-Bench-201 benchmark (0..15624)."""
        return _nb201_position()[self.index(genotype)]

    def from_benchmark_index(self, index: int) -> Genotype:
        order = _nb201_order()
        if not 0 <= index < len(order):
            raise ValueError(f"nb201: NB201 index {index} out of range 0..{len(order) - 1}")
        return self.from_index(order[index])

    def anchors(self) -> list[Genotype]:
        return [self.from_benchmark_index(i) for i in NB201_ANCHOR_INDICES]


@functools.cache
def _nb201_order() -> tuple[int, ...]:
    """order[nb201_index] = base-5 index (edge 1<-0 most significant, as in gen_all)."""
    order = list(range(len(NB201_OPS) ** len(NB201_EDGES)))
    random.Random(_NB201_SHUFFLE_SEED).shuffle(order)
    return tuple(order)


@functools.cache
def _nb201_position() -> dict[int, int]:
    return {base5: i for i, base5 in enumerate(_nb201_order())}

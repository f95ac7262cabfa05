"""Search-space interface and registry.

A search space is a fixed list of D *decisions*, decision d choosing one of ``num_choices[d]`` options (a
cell edge's operation, a block's kernel size, a stage's depth, a layer's head count). An architecture (a
*genotype*) is a tuple of D choice indices. Decisions may have different numbers of choices: every tensor
over choices has the one layout (D, K_max) with a validity mask (D, K_max), and a masked entry is never
sampled, never argmax-ed and never encoded.

Every fact about a space lives in its registered class: the decisions, the string format, the mixed-radix
index, which choices do not matter (``canonical``), the anchors whose latencies embed a device, the networks
(``build_supernet`` / ``build_network`` / ``example_input``) and an optional benchmark index. Everything else
in the library asks the space.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..registry import Registry

Genotype = tuple[int, ...]

# Logit of a masked (invalid) choice: softmax gives it exactly 0 in float32, samplers never draw it, argmax
# never picks it, and it stays finite (no NaN from 0 * -inf in entropies).
MASKED_LOGIT = -1e9


@dataclass(frozen=True)
class Decision:
    """One decision of a space: its name and the labels of its choices."""

    name: str
    choices: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"decision {self.name!r} has no choices")


class SearchSpace(abc.ABC):
    """D decisions with ragged choices; genotypes are tuples of D choice indices."""

    name: ClassVar[str]
    decisions: tuple[Decision, ...]
    # Column of the space's benchmark table that indexes its architectures ("" = the space has none).
    benchmark_index_name: ClassVar[str] = ""
    # Whether the networks take inputs of any size along every axis (token ids: batch and sequence), so an
    # exported graph keeps its input axes symbolic (``profiling.export.export_onnx(dynamic=True)``).
    dynamic_input_axes: ClassVar[bool] = False
    # Whether every decision's choices run from the smallest network to the largest (widths, depths, kernels),
    # so the space has a smallest and a largest architecture (sandwich-rule supernet training).
    ordered_by_size: ClassVar[bool] = False

    # ---- shape ---------------------------------------------------------------------------------------
    @property
    def num_decisions(self) -> int:
        return len(self.decisions)

    @functools.cached_property
    def num_choices(self) -> tuple[int, ...]:
        return tuple(len(d.choices) for d in self.decisions)

    @property
    def max_choices(self) -> int:
        return max(self.num_choices)

    @property
    def shape(self) -> tuple[int, int]:
        """(D, K_max): the shape of op weights, one-hot encodings and hypernetwork logits."""
        return (self.num_decisions, self.max_choices)

    @property
    def mask(self) -> np.ndarray:
        """(D, K_max) bool: True where choice k exists for decision d."""
        return np.arange(self.max_choices)[None, :] < np.asarray(self.num_choices)[:, None]

    def mask_tensor(self, device: torch.device | None = None) -> torch.Tensor:
        return torch.as_tensor(self.mask, device=device)

    @property
    def num_architectures(self) -> int:
        return int(np.prod(np.asarray(self.num_choices, dtype=object)))

    @functools.cached_property
    def place_values(self) -> np.ndarray:
        """(D,) mixed-radix place values: index = sum_d g[d] * place_values[d] (decision 0 first); int64, or
        Python ints (object dtype) for spaces of 2**63 architectures or more (OFA's has ~7e22). Read-only."""
        big = self.num_architectures >= 2**63
        out = np.ones(self.num_decisions, dtype=object if big else np.int64)
        for d in range(self.num_decisions - 2, -1, -1):
            out[d] = out[d + 1] * self.num_choices[d + 1]
        out.setflags(write=False)
        return out

    # ---- genotype <-> string -------------------------------------------------------------------------
    @abc.abstractmethod
    def to_string(self, genotype: Sequence[int]) -> str:
        """String of a genotype (of its canonical form where the space has inactive choices)."""

    @abc.abstractmethod
    def from_string(self, arch: str) -> Genotype:
        """Inverse of :meth:`to_string`; raises ``ValueError`` naming what is wrong."""

    # ---- anchors -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def anchors(self) -> list[Genotype]:
        """The fixed anchor architectures whose latencies on a device form its embedding."""

    @property
    def num_anchors(self) -> int:
        return len(self.anchors())

    # ---- predictor encoding --------------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        """Length of :meth:`features`."""
        return self.num_decisions * self.max_choices

    def features(self, arch: torch.Tensor) -> torch.Tensor:
        """(B, D, K) one-hot (or soft / straight-through) weights -> (B, F) predictor input, differentiable.
        Default: the flattened weights; spaces whose benchmark tables use another encoding override it."""
        return arch.flatten(1)

    # Architecture columns of the space's latency tables, read by :meth:`from_table_row`.
    table_columns: ClassVar[tuple[str, ...]] = ("arch",)

    def from_table_row(self, *cells: Any) -> Genotype:
        """Genotype of one table row's :attr:`table_columns` cells (default: the ``arch`` string)."""
        return self.from_string(str(cells[0]))

    def table_genotypes(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """(N, D) genotypes of a benchmark table's architecture columns (:attr:`table_columns`); ValueError
        naming the missing column or the bad row."""
        missing = [c for c in self.table_columns if c not in columns]
        if missing:
            needs = f" (needs {', '.join(self.table_columns)})" if len(self.table_columns) > 1 else ""
            raise ValueError(f"{self.name}: the table has no column {missing[0]!r}{needs}")
        rows = []
        for i, cells in enumerate(zip(*(columns[c] for c in self.table_columns), strict=True)):
            try:
                rows.append(self.from_table_row(*cells))
            except ValueError as e:
                raise ValueError(f"row {i}: {e}") from None
        return np.asarray(rows, dtype=np.int64).reshape(-1, self.num_decisions)

    # ---- networks ------------------------------------------------------------------------------------
    def build_supernet(self, input_shape: Sequence[int], num_classes: int, **hparams: Any) -> nn.Module:
        """The weight-sharing supernet: ``forward(x, weights (D, K_max), dense=False)``; ``dense=True``
        computes every choice (weighted by the exact zeros of one-hot weights) so the straight-through
        gradient reaches the unselected entries too; ``subnet(genotype)`` materialises one architecture whose
        outputs equal the supernet's for that choice. It carries ``space`` and ``build_args`` (the keyword
        arguments of this method that rebuild it, for saving and loading). Table-only spaces build none."""
        raise UserError(f"{self.name}: the space builds no networks (a table-only space)")

    def build_network(
        self, genotype: Sequence[int], input_shape: Sequence[int], num_classes: int, **hparams: Any
    ) -> nn.Module:
        """A fresh standalone network of ``genotype`` (new weights), e.g. for profiling. Default: the subnet of
        a freshly initialised supernet (weight-sliced spaces); spaces with a cheaper builder override it."""
        return self.build_supernet(input_shape, num_classes, **hparams).subnet(genotype)

    def example_input(self, input_shape: Sequence[int], batch: int = 1) -> torch.Tensor:
        """An input batch of the networks (images by default; token-id spaces override)."""
        return torch.randn(batch, *(int(x) for x in input_shape))

    # ---- benchmark index (optional) ------------------------------------------------------------------
    def benchmark_index(self, genotype: Sequence[int]) -> int:
        """Row of the architecture in the space's benchmark table (spaces with ``benchmark_index_name``)."""
        raise UserError(f"{self.name}: the space has no benchmark index")

    def from_benchmark_index(self, index: int) -> Genotype:
        raise UserError(f"{self.name}: the space has no benchmark index")

    # ---- generic helpers -----------------------------------------------------------------------------
    def validate(self, genotype: Sequence[int]) -> Genotype:
        g = tuple(int(x) for x in genotype)
        if len(g) != self.num_decisions:
            raise ValueError(f"{self.name}: genotype has {len(g)} decisions, expected {self.num_decisions}")
        for d, (x, n) in enumerate(zip(g, self.num_choices, strict=True)):
            if not 0 <= x < n:
                raise ValueError(
                    f"{self.name}: choice {x} of decision {d} ({self.decisions[d].name}) out of range 0..{n - 1}"
                )
        return g

    def canonical(self, genotype: Sequence[int]) -> Genotype:
        """The representative of ``genotype``'s class: choices that cannot affect the network (of inactive
        blocks or layers) set to 0. Two genotypes are the same architecture iff their canonical forms are
        equal. Spaces without inactive choices keep the default identity."""
        return self.validate(genotype)

    def smallest_and_largest(self) -> tuple[Genotype, Genotype]:
        """The smallest and the largest architecture: every decision's first and last choice (spaces whose
        choices are ordered by size only; a clear error otherwise)."""
        if not self.ordered_by_size:
            raise UserError(f"space {self.name!r} has no smallest / largest architecture (its choices are not "
                            "ordered by size): sandwich sampling needs one; use uniform sampling")  # fmt: skip
        return self.canonical((0,) * self.num_decisions), self.canonical(tuple(n - 1 for n in self.num_choices))

    def sample(self, rng: np.random.Generator) -> Genotype:
        """One architecture: each decision uniformly over its own choices."""
        return tuple(int(rng.integers(0, n)) for n in self.num_choices)

    def one_hot(self, genotype: Sequence[int]) -> np.ndarray:
        """(D, K_max) float32 one-hot encoding (masked entries always 0)."""
        return self.one_hot_batch([genotype])[0]

    def one_hot_batch(self, genotypes: Sequence[Sequence[int]]) -> np.ndarray:
        """(N, D, K_max) float32 one-hot encodings."""
        idx = np.asarray([self.validate(g) for g in genotypes], dtype=np.int64).reshape(-1, self.num_decisions)
        out = np.zeros((len(idx), *self.shape), dtype=np.float32)  # (N, D, K)
        if len(idx):
            np.put_along_axis(out, idx[:, :, None], 1.0, axis=2)
        return out

    def decode(self, weights: Any) -> Genotype:
        """Masked argmax architecture of (D, K_max) weights (numpy array or torch tensor)."""
        w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
        if w.shape != self.shape:
            raise ValueError(f"{self.name}: weights of shape {w.shape}, expected {self.shape}")
        return tuple(int(x) for x in np.where(self.mask, w, -np.inf).argmax(axis=-1))

    def index(self, genotype: Sequence[int]) -> int:
        """Position of a genotype in the space's mixed-radix enumeration (decision 0 most significant)."""
        return int(sum(int(x) * int(p) for x, p in zip(self.validate(genotype), self.place_values, strict=True)))

    def index_batch(self, genotypes: np.ndarray) -> np.ndarray:
        """(N,) :meth:`index` of genotype rows (N, D), vectorised (dtype of :attr:`place_values`)."""
        g = np.asarray(genotypes, dtype=np.int64).reshape(-1, self.num_decisions)
        if len(g) and ((g < 0).any() or (g >= np.asarray(self.num_choices)).any()):
            raise ValueError(f"{self.name}: a genotype row has a choice out of range")
        pv = self.place_values
        return (g.astype(object) if pv.dtype == object else g) @ pv

    def seed_of(self, genotype: Sequence[int], base: int = 0) -> int:
        """A torch seed for the architecture: ``(base + index) mod 2**63`` (indices of big spaces overflow
        int64; for small spaces this is ``base + index``)."""
        return (int(base) + self.index(genotype)) % 2**63

    def from_index(self, index: int) -> Genotype:
        if not 0 <= index < self.num_architectures:
            raise ValueError(f"{self.name}: index {index} out of range 0..{self.num_architectures - 1}")
        out = []
        for p, n in zip(self.place_values, self.num_choices, strict=True):
            out.append(int(index // int(p)) % n)
        return tuple(out)

    def all_genotypes(self) -> Iterator[Genotype]:
        """Every genotype, in :meth:`index` order (only sensible for small spaces)."""
        for i in range(self.num_architectures):
            yield self.from_index(i)

    def canonical_genotypes(self) -> Iterator[Genotype]:
        """Every architecture once (its canonical genotype), in :meth:`index` order (small spaces only)."""
        for g in self.all_genotypes():
            if self.canonical(g) == g:
                yield g

    @property
    def num_distinct_architectures(self) -> int:
        """Architectures up to :meth:`canonical` (spaces with inactive choices override it with a count)."""
        return self.num_architectures

    def neighbours(self, genotype: Sequence[int]) -> list[Genotype]:
        """All genotypes that differ from ``genotype`` in exactly one decision."""
        g = self.validate(genotype)
        out = []
        for d, n in enumerate(self.num_choices):
            for k in range(n):
                if k != g[d]:
                    out.append((*g[:d], k, *g[d + 1 :]))
        return out

    def constant_output(self, genotype: Sequence[int]) -> bool:
        """True when the network's output cannot depend on its input (every path through the cell is cut,
        e.g. by ``none`` ops): chance accuracy, and exported to ONNX as an input-free graph whose timing is
        that of an empty network. Spaces without such architectures keep the default False."""
        self.validate(genotype)
        return False

    def decision_graph(self) -> np.ndarray:
        """(D + 2, D + 2) symmetric adjacency (self loops included) of the decisions as a graph, for graph
        predictors: node 0 the network input, nodes 1..D the decisions, node D+1 the output. Default: a
        chain input -> decision 0 -> ... -> output; cell spaces override with their cell's line graph."""
        n = self.num_decisions + 2
        adj = np.eye(n, dtype=np.float64)
        for a in range(n - 1):
            adj[a, a + 1] = adj[a + 1, a] = 1.0
        return adj

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (logged with runs and saved with models)."""
        return {
            "name": self.name,
            "decisions": {d.name: list(d.choices) for d in self.decisions},
            "num_anchors": self.num_anchors,
        }


SPACES: Registry[type[SearchSpace]] = Registry("search space")


def register_search_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make ``cls`` available to :func:`get_search_space` under ``cls.name``."""
    return SPACES.register(cls.name)(cls)


def available_search_spaces() -> list[str]:
    return SPACES.names()


def get_search_space(name: str, **kwargs: Any) -> SearchSpace:
    """Instantiate a registered search space by name."""
    return SPACES.get(name)(**kwargs)

"""Search-space interface and registry.

A search space is a fixed set of E decision points ("edges") each choosing one of K operations.
An architecture (a *genotype*) is a tuple of E op indices. Every search-space-specific fact
(shape, op names, string format, anchors) lives in one registered class; everything else in the
library only talks to this interface.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

Genotype = tuple[int, ...]

_REGISTRY: dict[str, type[SearchSpace]] = {}


class SearchSpace(abc.ABC):
    """E edges x K operations; genotypes are tuples of E op indices in ``range(K)``."""

    name: ClassVar[str]
    edges: tuple[str, ...]
    ops: tuple[str, ...]

    # ---- shape ---------------------------------------------------------------------------
    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def shape(self) -> tuple[int, int]:
        """(E, K): the shape of op weights, one-hot encodings and hypernetwork logits."""
        return (self.num_edges, self.num_ops)

    @property
    def num_architectures(self) -> int:
        return self.num_ops**self.num_edges

    # ---- genotype <-> string -------------------------------------------------------------
    @abc.abstractmethod
    def to_string(self, genotype: Sequence[int]) -> str:
        """Canonical string of a genotype."""

    @abc.abstractmethod
    def from_string(self, arch: str) -> Genotype:
        """Inverse of :meth:`to_string`; raises ``ValueError`` naming what is wrong."""

    # ---- anchors -------------------------------------------------------------------------
    @abc.abstractmethod
    def anchors(self) -> list[Genotype]:
        """The fixed anchor architectures whose latencies on a device form its embedding."""

    # ---- generic helpers -----------------------------------------------------------------
    def validate(self, genotype: Sequence[int]) -> Genotype:
        g = tuple(int(x) for x in genotype)
        if len(g) != self.num_edges:
            raise ValueError(f"{self.name}: genotype has {len(g)} edges, expected {self.num_edges}")
        bad = [x for x in g if not 0 <= x < self.num_ops]
        if bad:
            raise ValueError(f"{self.name}: op index {bad[0]} out of range 0..{self.num_ops - 1}")
        return g

    def sample(self, rng: np.random.Generator) -> Genotype:
        """One architecture uniformly at random."""
        return tuple(int(x) for x in rng.integers(0, self.num_ops, size=self.num_edges))

    def one_hot(self, genotype: Sequence[int]) -> np.ndarray:
        """(E, K) float32 one-hot encoding."""
        g = self.validate(genotype)
        out = np.zeros(self.shape, dtype=np.float32)  # (E, K)
        out[np.arange(self.num_edges), g] = 1.0
        return out

    def one_hot_batch(self, genotypes: Sequence[Sequence[int]]) -> np.ndarray:
        """(N, E, K) float32 one-hot encodings."""
        idx = np.asarray([self.validate(g) for g in genotypes], dtype=np.int64)  # (N, E)
        out = np.zeros((len(idx), *self.shape), dtype=np.float32)  # (N, E, K)
        if len(idx):
            np.put_along_axis(out, idx[:, :, None], 1.0, axis=2)
        return out

    def decode(self, weights: Any) -> Genotype:
        """Argmax architecture of (E, K) weights (numpy array or torch tensor)."""
        w = weights.detach().cpu().numpy() if hasattr(weights, "detach") else np.asarray(weights)
        if w.shape != self.shape:
            raise ValueError(f"{self.name}: weights of shape {w.shape}, expected {self.shape}")
        return tuple(int(x) for x in w.argmax(axis=-1))

    def index(self, genotype: Sequence[int]) -> int:
        """Position of a genotype in the space's canonical enumeration (base-K, edge 0 first)."""
        g = self.validate(genotype)
        i = 0
        for op in g:
            i = i * self.num_ops + op
        return i

    def from_index(self, index: int) -> Genotype:
        if not 0 <= index < self.num_architectures:
            raise ValueError(f"{self.name}: index {index} out of range 0..{self.num_architectures - 1}")
        digits = []
        for _ in range(self.num_edges):
            index, op = divmod(index, self.num_ops)
            digits.append(op)
        return tuple(reversed(digits))

    def all_genotypes(self) -> Iterator[Genotype]:
        """Every architecture, in :meth:`index` order (only sensible for small spaces)."""
        for i in range(self.num_architectures):
            yield self.from_index(i)

    def neighbours(self, genotype: Sequence[int]) -> list[Genotype]:
        """All architectures that differ from ``genotype`` on exactly one edge."""
        g = self.validate(genotype)
        out = []
        for e in range(self.num_edges):
            for k in range(self.num_ops):
                if k != g[e]:
                    out.append((*g[:e], k, *g[e + 1:]))
        return out

    def constant_output(self, genotype: Sequence[int]) -> bool:
        """True when the network's output cannot depend on its input (every path through the cell is cut,
        e.g. by ``none`` ops): chance accuracy, and exported to ONNX as an input-free graph whose timing is
        that of an empty network. Spaces without such architectures keep the default False."""
        self.validate(genotype)
        return False

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (logged with runs and saved with models)."""
        return {"name": self.name, "edges": list(self.edges), "ops": list(self.ops)}


def register_search_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make ``cls`` available to :func:`get_search_space` under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"search space {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available_search_spaces() -> list[str]:
    return sorted(_REGISTRY)


def get_search_space(name: str, **kwargs: Any) -> SearchSpace:
    """Instantiate a registered search space by name."""
    try:
        cls: Callable[..., SearchSpace] = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown search space {name!r}; available: {', '.join(available_search_spaces())}"
        ) from None
    return cls(**kwargs)

"""Black-box evaluators: genotypes -> (n, M) objectives, all minimised.

``TableEvaluator`` looks architectures up in the NB201 table (error in percent = 100 - accuracy, latency in
ms of one or more devices); ``MeasuredEvaluator`` composes callables (e.g. supernet validation error and an
onnxruntime latency measurement injected by the entry point, so the library never imports onnxruntime).
Caching and budget accounting live in :class:`~modnas_ops.baselines.budget.BudgetedEvaluator`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..benchmarks import BenchmarkTable
from ..pareto import Normaliser, modnas_normaliser, normalised_hypervolume, pareto_mask
from ..spaces import Genotype


@runtime_checkable
class Evaluator(Protocol):
    """Maps genotypes to objectives; every objective is minimised."""

    num_objectives: int
    objective_names: tuple[str, ...]

    def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """(n, M) float objectives of ``genotypes`` in order."""
        ...


class TableEvaluator:
    """Objectives (error %, latency_ms on each device) of NB201 architectures, read from the table.

    With one device the objectives are ``("error", "latency_ms")``; with several,
    ``("error", "latency_ms/<device>", ...)`` (M = 1 + number of devices).
    """

    def __init__(self, table: BenchmarkTable, device: str | Sequence[str], dataset: str = "cifar10") -> None:
        devices = (device,) if isinstance(device, str) else tuple(device)
        if not devices:
            raise ValueError("TableEvaluator: name at least one device")
        if dataset not in table.accuracy:
            raise ValueError(f"TableEvaluator: unknown dataset {dataset!r}; known: {', '.join(sorted(table.accuracy))}")
        self.table = table
        self.space = table.space
        self.devices = devices
        self.dataset = dataset
        columns = [table.error(dataset)] + [table.latency(d) for d in devices]  # each (N,)
        self._F = np.stack(columns, axis=1).astype(np.float64)  # (N, M)
        self.num_objectives = self._F.shape[1]
        lat_names = ("latency_ms",) if len(devices) == 1 else tuple(f"latency_ms/{d}" for d in devices)
        self.objective_names = ("error", *lat_names)
        rows = np.full(self.space.num_architectures, -1, dtype=np.int64)
        rows[self.space.index_batch(table.genotypes)] = np.arange(len(self._F))
        self._rows = rows

    @property
    def name(self) -> str:
        return "+".join(self.devices)

    def rows(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """(n,) table rows (= NB201 indices) of ``genotypes``."""
        G = np.asarray(genotypes, dtype=np.int64).reshape(len(genotypes), self.space.num_decisions)  # (n, D)
        rows = self._rows[self.space.index_batch(G)]
        if np.any(rows < 0):
            bad = tuple(int(x) for x in G[int(np.flatnonzero(rows < 0)[0])])
            raise ValueError(f"TableEvaluator: {self.space.to_string(bad)} is not in the table")
        return rows

    def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        if len(genotypes) == 0:
            return np.zeros((0, self.num_objectives))
        return self._F[self.rows(genotypes)].copy()  # (n, M)

    # ---- ground truth of the table ----------------------------------------------------------
    @property
    def all_objectives(self) -> np.ndarray:
        """(N, M) objectives of every row of the table."""
        return self._F.copy()

    def normaliser(self, max_error: float = 90.0) -> Normaliser:
        """MODNAS normalisation: min-max over table rows with error < ``max_error``; reference point ones."""
        return modnas_normaliser(*(self._F[:, m] for m in range(self.num_objectives)), max_error=max_error)

    def true_front(self) -> np.ndarray:
        """(P, M) objectives of the table's Pareto-optimal rows."""
        return self._F[pareto_mask(self._F)]

    def true_hypervolume(self, max_error: float = 90.0) -> float:
        """HV of the whole table under :meth:`normaliser` with reference point ones(M)."""
        norm = self.normaliser(max_error)
        return normalised_hypervolume(self.true_front(), norm)


class MeasuredEvaluator:
    """Objectives from callables, one architecture at a time: ``error_fn`` then ``latency_fn`` then ``extra``.

    ``error_fn(genotype) -> float`` (e.g. supernet validation error in percent) and
    ``latency_fn(genotype) -> float`` (ms); ``extra`` maps further objective names (e.g. ``energy_mj``)
    to callables. Non-finite values raise ``ValueError`` naming the architecture.
    """

    def __init__(
        self,
        error_fn: Callable[[Genotype], float],
        latency_fn: Callable[[Genotype], float],
        extra: Mapping[str, Callable[[Genotype], float]] | None = None,
        error_name: str = "error",
        latency_name: str = "latency_ms",
    ) -> None:
        self._fns = [error_fn, latency_fn, *(extra or {}).values()]
        self.objective_names = (error_name, latency_name, *(extra or {}))
        if len(set(self.objective_names)) != len(self.objective_names):
            raise ValueError(f"MeasuredEvaluator: objective names must be distinct, got {self.objective_names}")
        self.num_objectives = len(self._fns)

    def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        out = np.zeros((len(genotypes), self.num_objectives))  # (n, M)
        for i, g in enumerate(genotypes):
            for m, fn in enumerate(self._fns):
                v = float(fn(tuple(g)))
                if not np.isfinite(v):
                    raise ValueError(f"MeasuredEvaluator: {self.objective_names[m]} of {tuple(g)} is {v}")
                out[i, m] = v
        return out


class MemoisedEvaluator:
    """Remembers every result of ``evaluator`` across runs (e.g. measured latencies shared by all methods on
    one device, so each method sees the same numbers for the same architecture).

    Budget accounting is unaffected: each run's :class:`BudgetedEvaluator` still counts an architecture
    new to *that run* as one evaluation; only wall time is saved.
    """

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.num_objectives = evaluator.num_objectives
        self.objective_names = tuple(evaluator.objective_names)
        self._memo: dict[Genotype, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._memo)

    def evaluate(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        keys = [tuple(int(x) for x in g) for g in genotypes]
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if todo:
            F = np.asarray(self.evaluator.evaluate(todo), dtype=np.float64)  # (t, M)
            self._memo.update(zip(todo, F, strict=True))
        if not keys:
            return np.zeros((0, self.num_objectives))
        return np.stack([self._memo[k] for k in keys])  # (n, M)

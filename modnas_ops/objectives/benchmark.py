"""Benchmark mode: the NB201 table. The error term is an accuracy surrogate learned from at most
``query_budget`` table accuracies (chosen adaptively, counted); hardware from a frozen MetaPredictor of the
train devices; test devices through their anchors only; fronts judged with the table's true values."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from ..config import FieldError, check_at_least, check_finite, check_positive, check_registered
from ..errors import UserError
from ..pareto import MODNAS_MAX_ERROR
from ..spaces import Genotype, SearchSpace
from ..surrogate import ErrorSurrogate, QueryOracle, pareto_relevant
from .base import ErrorObjective, SearchContext, SearchDevice, fit_bounds, front_rows, register_objective

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkConfig:
    """Benchmark mode: the NB201 table, the query budget of the accuracy surrogate, the MetaPredictor."""

    table: str = ""  # .csv.gz or its directory; "" = $MODNAS_NB201_TABLE
    dataset: str = "cifar10"
    query_budget: int = 1000  # architectures whose accuracy the search may read
    initial_queries: int = 400  # uniform random first batch; the rest adaptively, in rounds
    query_rounds: int = 6
    max_fronts: int = 3  # adaptive queries: archs within this many predicted fronts of some device
    surrogate_models: int = 3
    surrogate_hidden: int = 128
    surrogate_depth: int = 2
    surrogate_epochs: int = 300
    surrogate_gamma: float = 3.0  # residual kernel exp(-gamma * Hamming distance)
    predictor: str = ""  # saved MetaPredictor (.pt); "" = fit one on the train devices here
    predictor_epochs: int = 40
    acquisition_devices: Literal["all", "train"] = "all"  # whose predicted fronts steer the queries (test
    # devices through their anchors only: zero-shot holds either way)

    def __post_init__(self) -> None:
        from ..benchmarks import ACCURACY_COLUMNS

        check_finite(self)
        check_registered("dataset", self.dataset, "benchmark dataset", sorted(ACCURACY_COLUMNS))
        check_at_least(self, 2, "query_budget")
        if not 1 <= self.initial_queries <= self.query_budget:
            budget = self.query_budget
            raise FieldError("initial_queries", f"must lie in 1..query_budget ({budget}), got {self.initial_queries}")
        check_at_least(self, 0, "query_rounds")
        check_at_least(self, 1, "max_fronts", "predictor_epochs", "surrogate_models", "surrogate_epochs")
        check_positive(self, "surrogate_gamma")


@register_objective
class BenchmarkObjective(ErrorObjective):
    """NB201-table mode: accuracy surrogate from a counted query budget + frozen MetaPredictor."""

    name = "benchmark"
    config_class = BenchmarkConfig

    def __init__(
        self,
        config: BenchmarkConfig,
        context: SearchContext,
        space: SearchSpace,
        device: torch.device,
        table: Any = None,
        predictor: nn.Module | None = None,
    ) -> None:
        super().__init__(config, context, space, device)
        from ..benchmarks import load_table

        self.bcfg = config
        self.table = table if table is not None else load_table(self.bcfg.table or None)
        if self.table.space.name != space.name:
            raise ValueError(
                f"benchmark table is of space {self.table.space.name!r}, the search of {space.name!r}"
            )
        self.true_error = np.asarray(self.table.error(self.bcfg.dataset), dtype=np.float64)  # (N,) percent
        self.onehots = torch.from_numpy(
            space.one_hot_batch([tuple(g) for g in self.table.genotypes])
        )  # (N, E, K)
        self.oracle = QueryOracle(self.true_error, self.bcfg.query_budget)
        self._injected_predictor = predictor
        self.surrogate: ErrorSurrogate | None = None
        self._restored: dict[str, Any] | None = None
        self.timings: dict[str, float] = {}

    # ---- setup --------------------------------------------------------------------------------------------
    def _load_predictor(self) -> nn.Module:
        if self._injected_predictor is not None:
            return self._injected_predictor
        from ..predictor import FitConfig, MetaPredictor, fit_meta_predictor, measurements_from_table

        if self.bcfg.predictor:
            return MetaPredictor.load(self.bcfg.predictor)
        log.info("fitting a MetaPredictor on the %d train devices", len(self.table.train_devices))
        measured = measurements_from_table(self.table, list(self.table.devices))
        fit = fit_meta_predictor(
            measured,
            FitConfig(epochs=self.bcfg.predictor_epochs, seed=self.context.seed),
            space=self.space,
            progress=False,
        )
        return fit.model

    def _fit_surrogate(self, round_seed: int) -> ErrorSurrogate:
        q = self.oracle.queried
        s = ErrorSurrogate(
            self.space.shape,
            num_models=self.bcfg.surrogate_models,
            hidden=self.bcfg.surrogate_hidden,
            depth=self.bcfg.surrogate_depth,
            gamma=self.bcfg.surrogate_gamma,
        )
        s.fit(
            self.onehots[q],
            torch.as_tensor(self.oracle.values),
            epochs=self.bcfg.surrogate_epochs,
            seed=round_seed,
        )
        return s.to(self.device).eval()

    def _predict_error(self, surrogate: ErrorSurrogate) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate(
                [
                    surrogate(self.onehots[i : i + 4096].to(self.device)).double().cpu().numpy()
                    for i in range(0, len(self.onehots), 4096)
                ]
            )

    def setup(self, rng: np.random.Generator) -> None:
        t0 = time.perf_counter()
        self.predictor = self._load_predictor().to(self.device).eval()
        self.timings = {"predictor_s": time.perf_counter() - t0}
        table = self.table
        devices = [(d, "train") for d in table.train_devices] + [(d, "test") for d in table.test_devices]
        unknown = [x for x in self.metrics if x not in self.table.metrics]
        if unknown:
            raise UserError(f"the predictor's metric {unknown[0]!r} is not a column of the benchmark table")
        self._hw = {}  # device -> (N, metrics) predicted, anchor-normalised
        base = {}
        for name, split in devices:
            base[name] = SearchDevice(name, split, {x: table.anchor_values(name, x) for x in self.metrics})
            self._hw[name] = self.predicted_hardware(base[name], self.onehots)
        if self._restored is not None:  # resume: same queries, same surrogate, no new budget spent
            self.oracle.query(self._restored["queried"])
            self.surrogate = ErrorSurrogate(**_surrogate_hparams(self._restored["surrogate_hparams"]))
            self.surrogate.queried = torch.zeros_like(self._restored["surrogate"]["queried"])
            self.surrogate.alpha = torch.zeros_like(self._restored["surrogate"]["alpha"])
            self.surrogate.load_state_dict(self._restored["surrogate"])
            self.surrogate.to(self.device).eval()
        else:
            t1 = time.perf_counter()
            self.surrogate = self._acquire(rng)
            self.timings["surrogate_s"] = time.perf_counter() - t1
        for p in self.surrogate.parameters():
            p.requires_grad_(False)
        self.pred_error = self._predict_error(self.surrogate)  # (N,) percent
        ok = self.pred_error < MODNAS_MAX_ERROR
        if not ok.any():
            raise ValueError("the accuracy surrogate predicts every architecture at >= 90 % error")
        err_lo, err_hi = fit_bounds(self.pred_error[ok], "predicted error")
        self.devices = []
        for name, _ in devices:
            lo, hi = self.fit_hardware_bounds(base[name], self._hw[name][ok])
            self.devices.append(base[name].with_bounds([err_lo, *lo], [err_hi, *hi]))

    def _acquire(self, rng: np.random.Generator) -> ErrorSurrogate:
        """Initial uniform queries, then rounds of Pareto-relevant ones (predicted fronts of the devices)."""
        n = len(self.onehots)
        b = self.bcfg
        self.oracle.query(rng.choice(n, size=min(b.initial_queries, n), replace=False))
        rounds = b.query_rounds if self.oracle.remaining > 0 else 0
        surrogate = None
        for r in tqdm(range(rounds + 1), desc="surrogate rounds", leave=False):
            surrogate = self._fit_surrogate(self.context.seed * 1000 + r)
            if r == rounds or self.oracle.remaining == 0:
                break
            pred = self._predict_error(surrogate)
            pred = np.where(pred < MODNAS_MAX_ERROR, pred, np.inf)  # never front-relevant
            steer = [d for d in self._hw if b.acquisition_devices == "all" or d in self.table.train_devices]
            costs = [self._hw[d][:, j] for d in steer for j in range(self._hw[d].shape[1])]
            order = pareto_relevant(
                np.where(np.isfinite(pred), pred, 1e12), costs, b.max_fronts, self.oracle.queried
            )
            take = (
                self.oracle.remaining if r == rounds - 1 else math.ceil(self.oracle.remaining / (rounds - r))
            )
            new = list(order[:take])
            if len(new) < take:  # fronts exhausted: fill with uniform picks
                rest = np.setdiff1d(
                    np.arange(n), np.concatenate([self.oracle.queried, np.asarray(new, dtype=np.int64)])
                )
                new += list(rng.choice(rest, size=min(take - len(new), len(rest)), replace=False))
            self.oracle.query(new)
            log.info("surrogate round %d: %d queries used of %d", r, self.oracle.num_queries, b.query_budget)
        assert surrogate is not None
        return surrogate

    # ---- search-time pieces -------------------------------------------------------------------------------
    def error_term(self, arch: torch.Tensor, batch: Any = None) -> torch.Tensor:
        assert self.surrogate is not None
        return self.surrogate(arch)

    def judge(
        self, device: SearchDevice, genotypes: Sequence[Genotype]
    ) -> tuple[pd.DataFrame, dict[str, float]]:
        from ..benchmarks import evaluate_front, true_front

        index = self.space.benchmark_index
        rows = np.asarray([index(g) for g in genotypes], dtype=np.int64)
        hw = self._hw[device.name][rows]  # (R, metrics) anchor-normalised
        predicted = np.column_stack([self.pred_error[rows], self.hardware(device, hw)])
        true = np.column_stack(
            [self.true_error[rows], *[np.asarray(self.table.metric(device.name, x))[rows] for x in self.metrics]]
        )
        found = evaluate_front(self.table, device.name, rows, dataset=self.bcfg.dataset)
        best = true_front(self.table, device.name, dataset=self.bcfg.dataset)
        metrics = {
            f"hv/{device.name}": found.hv,
            f"hv_true/{device.name}": best.hv,
            f"hv_ratio/{device.name}": found.hv / best.hv if best.hv > 0 else 0.0,
        }
        return front_rows(device, genotypes, self.space, predicted, true, self.objectives), metrics

    def estimated_error(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """The surrogate's error, the table's where the search already queried the architecture."""
        rows = np.asarray([self.space.benchmark_index(g) for g in genotypes], dtype=np.int64)
        known = self.oracle.known(rows)
        return np.where(np.isnan(known), self.pred_error[rows], known)

    def measure(self, device: SearchDevice, genotypes: Sequence[Genotype]) -> np.ndarray:
        """The table's hardware metrics of ``genotypes`` on ``device``: a lookup, counted as a measurement."""
        rows = np.asarray([self.space.benchmark_index(g) for g in genotypes], dtype=np.int64)
        return np.column_stack(
            [np.asarray(self.table.metric(device.name, x), dtype=np.float64)[rows] for x in self.metrics]
        ).reshape(len(rows), len(self.metrics))

    def error_model(self) -> nn.Module | None:
        return self.surrogate

    def model_optimum(
        self,
        device: SearchDevice,
        rays: np.ndarray,
        scalarisation: Callable[..., torch.Tensor],
        exact_error: bool = False,
    ) -> list[Genotype] | None:
        error = self.true_error if exact_error else self.pred_error  # (N,)
        objs = np.column_stack([error, self._hw[device.name]])  # (N, M)
        ok = error < MODNAS_MAX_ERROR
        lo, hi = (objs[ok].min(axis=0), objs[ok].max(axis=0)) if exact_error else (device.lo, device.hi)
        z = torch.as_tensor((objs - lo) / (hi - lo), dtype=torch.float32)
        valid = torch.as_tensor(ok)
        out = []
        for r in torch.as_tensor(rays, dtype=torch.float32):
            score = scalarisation(z, r.expand(len(z), -1)).masked_fill(~valid, torch.inf)
            out.append(tuple(int(x) for x in self.table.genotypes[int(torch.argmin(score))]))
        return out

    def extra_metrics(self) -> dict[str, float]:
        return {
            "num_queries": float(self.oracle.num_queries),
            "query_budget": float(self.oracle.budget),
            **{f"time/{k}": v for k, v in self.timings.items()},
        }

    def state_dict(self) -> dict[str, Any]:
        assert self.surrogate is not None
        return {
            "queried": torch.as_tensor(self.oracle.queried),
            "surrogate_hparams": self.surrogate.hyperparameters(),
            "surrogate": self.surrogate.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = state  # applied in setup (before any new query)



def _surrogate_hparams(hp: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(hp)
    out["shape"] = tuple(out["shape"])
    return out


"""The MODNAS search loop: one hypernetwork for many devices, trained with MGD over per-device scalarised
losses, evaluated per device on preference rays (argmax architecture -> Pareto front -> hypervolume).

Two modes behind one loop; what differs is the *error objective* (a registry, :func:`create_objective`):

- ``benchmark``: the NB201 table. The error term is an :class:`~modnas_ops.surrogate.ErrorSurrogate` learned
  from at most ``query_budget`` table accuracies (chosen adaptively, counted by a
  :class:`~modnas_ops.surrogate.QueryOracle`); hardware from a frozen MetaPredictor trained on the train
  devices only; test devices are seen through their anchors only. Fronts are judged with the table's true
  values under the MODNAS normalisation: ``hv/<device>``, ``hv_true/<device>``, ``hv_ratio/<device>``.
- ``supernet``: a weight-sharing supernet on a dataset (embedded default: digits). Supernet weights step on
  the train split, the hypernetwork on the valid split (error term = cross-entropy of the sampled subnet);
  devices and the MetaPredictor come from a profiling table of this machine. Fronts use the supernet's
  valid error and predicted latency (measured latency where the table has the architecture); their
  hypervolume is normalised over a fixed random reference set of architectures (``hv/<device>``, and
  ``hv_reference/<device>`` of that set's own front).

Objectives are normalised per device with bounds fitted once (min / max of the predicted objectives over a
candidate pool, error >= 90 % dropped, as the MODNAS evaluation does), so a preference ray means the same
trade-off in the search as in the evaluation. Checkpoints (every epoch, atomic, ``weights_only`` loads)
make a killed search resume where it stopped.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .architect import Architect, DeviceBatch
from .atomic import atomic_torch_save
from .config import config_to_dict
from .devices import anchor_embedding
from .hypernetwork import HypernetworkBase, create_hypernetwork
from .pareto import (
    MODNAS_MAX_ERROR,
    Normaliser,
    hypervolume,
    pareto_mask,
    preference_rays,
)
from .sampling import create_sampler
from .spaces import Genotype, SearchSpace, get_search_space
from .surrogate import ErrorSurrogate, QueryOracle, pareto_relevant

log = logging.getLogger(__name__)

ERROR = "error"
LATENCY = "latency_ms"
CHECKPOINT_FILE = "search_checkpoint.pt"
BOUNDS_POOL = 1024  # random architectures (on top of the known ones) whose predictions bound the objectives


# ---- configuration ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HypernetConfig:
    """MetaHypernetwork and its optimizer."""

    kind: str = "kernel"  # kernel | mlp (see modnas_ops.hypernetwork)
    hidden: int = 32
    resolution: int = 0  # Das-Dennis partitions of the kernel centres; 0 = default for M objectives
    init_std: float = 1e-3
    lr: float = 0.01
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        bad = self.hidden < 1 or self.resolution < 0 or self.init_std < 0 or self.weight_decay < 0
        if bad or not self.lr > 0:
            raise ValueError(
                "hypernet: need hidden >= 1, resolution >= 0, init_std >= 0, lr > 0, weight_decay >= 0"
            )


@dataclass(frozen=True)
class ArchitectConfig:
    """Sampler, scalarisation and gradient combination of the hypernetwork step."""

    sampler: str = "reinmax"  # reinmax | gdas
    tau: float = 1.0  # reinmax temperature (backward only)
    tau_max: float = 10.0  # gdas: annealed linearly over the epochs
    tau_min: float = 0.1
    scalarisation: str = "linear"  # linear | tchebycheff
    combine: str = "mgd"  # mgd | mean | sequential
    normalize_grads: bool = True  # unit-normalise each device's gradient before MGD
    cosine_weight: float = 0.0  # lambda of -lambda * cos(L, r)
    dirichlet_beta: tuple[float, ...] = ()  # () = ones (uniform on the simplex)
    prefs_per_device: int = 8
    mgd_max_iter: int = 250
    mgd_tol: float = 1e-6
    grad_clip: float = 0.0  # 0 = off
    entropy_weight: float = 0.0  # exploration bonus on the logits' entropy, decayed linearly ...
    entropy_decay: float = 0.5  # ... to 0 over this fraction of the epochs
    finite_differences: bool = False  # gradient w.r.t. the architecture = exact one-edge changes (cheap
    # objectives only: benchmark mode), instead of the first-order Jacobian

    def __post_init__(self) -> None:
        if self.prefs_per_device < 1 or self.mgd_max_iter < 1 or not self.mgd_tol > 0:
            raise ValueError("architect: need prefs_per_device >= 1, mgd_max_iter >= 1, mgd_tol > 0")
        if self.cosine_weight < 0 or self.grad_clip < 0 or self.entropy_weight < 0:
            raise ValueError("architect: cosine_weight, grad_clip and entropy_weight must be >= 0")
        if not 0 < self.entropy_decay <= 1:
            raise ValueError(f"architect: entropy_decay must lie in (0, 1], got {self.entropy_decay}")

    def sampler_kwargs(self) -> dict[str, float]:
        return (
            {"tau": self.tau}
            if self.sampler == "reinmax"
            else {"tau_max": self.tau_max, "tau_min": self.tau_min}
        )


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
        if self.query_budget < 2 or not 1 <= self.initial_queries <= self.query_budget:
            raise ValueError("benchmark: need query_budget >= 2 and 1 <= initial_queries <= query_budget")
        if self.query_rounds < 0 or self.max_fronts < 1 or self.predictor_epochs < 1:
            raise ValueError("benchmark: need query_rounds >= 0, max_fronts >= 1, predictor_epochs >= 1")
        if self.surrogate_models < 1 or self.surrogate_epochs < 1 or not self.surrogate_gamma > 0:
            raise ValueError(
                "benchmark: need surrogate_models >= 1, surrogate_epochs >= 1, surrogate_gamma > 0"
            )


@dataclass(frozen=True)
class SupernetConfig:
    """Supernet mode: data, supernet size and weight optimizer, devices (profiling table) and predictor."""

    dataset: str = "digits"  # digits | cifar10 (see modnas_ops.data)
    data_root: str = ""
    C: int = 8
    N: int = 1
    batch_size: int = 64
    weight_lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    archs_per_weight_step: int = 2  # sampled architectures per supernet weight step
    uniform_fraction: float = 0.5  # share of them drawn uniformly instead of from H (keeps every op trained)
    warmup_epochs: int = 1  # weight steps only (hypernetwork frozen) for the first epochs
    test_devices: tuple[str, ...] = ()  # devices of the profiling table held out (zero-shot)
    predictor: str = ""  # saved MetaPredictor (.pt); "" = fit one on the profiling table here
    predictor_epochs: int = 300
    init_weights: str = ""  # supernet file of projects/train_supernet.py to start from ("" = fresh weights)
    dense_gradients: bool = True  # error term computes every op (see dense_forward); False = selected only
    reference_archs: int = 48  # random architectures that fix the HV normalisation per device
    eval_batches: int = 0  # valid batches per front evaluation; 0 = the whole valid split

    def __post_init__(self) -> None:
        for name in ("C", "N", "batch_size", "archs_per_weight_step", "predictor_epochs", "reference_archs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"supernet: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.uniform_fraction <= 1:
            raise ValueError(f"supernet: uniform_fraction must lie in [0, 1], got {self.uniform_fraction}")
        if self.warmup_epochs < 0 or self.eval_batches < 0 or not self.weight_lr > 0:
            raise ValueError("supernet: need warmup_epochs >= 0, eval_batches >= 0, weight_lr > 0")


@dataclass(frozen=True)
class SearchConfig:
    """The whole search (logged whole). ``mode`` picks the error objective provider."""

    mode: Literal["benchmark", "supernet"] = "supernet"
    space: str = "nb201"
    seed: int = 0
    epochs: int = 10
    steps_per_epoch: int = 50  # hypernetwork steps per epoch (supernet mode: also weight steps)
    num_rays: int = 24  # evaluation preference rays per device
    eval_every: int = 1  # epochs between front evaluations (the last epoch is always evaluated)
    threads: int = 1  # torch intra-op threads (tiny tensors: 1 is fastest on a shared CPU)
    device: str = "cpu"  # torch device
    checkpoint_dir: str = ""  # "" = no checkpoints
    hypernet: HypernetConfig = field(default_factory=HypernetConfig)
    architect: ArchitectConfig = field(default_factory=ArchitectConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)

    def __post_init__(self) -> None:
        get_search_space(self.space)  # ValueError naming the known spaces
        for name in ("epochs", "steps_per_epoch", "num_rays", "eval_every", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mode not in _OBJECTIVES:
            raise ValueError(f"unknown mode {self.mode!r}; available: {', '.join(sorted(_OBJECTIVES))}")


def config_fingerprint(cfg: SearchConfig) -> str:
    """Hash of the config fields that shape the search state (a checkpoint only resumes the same search)."""
    d = config_to_dict(cfg)
    for volatile in ("checkpoint_dir", "threads", "eval_every"):
        d.pop(volatile, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ---- devices and results -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SearchDevice:
    """A device as the search sees it: name, split, anchor latencies (10,) ms, embedding (10,), and the
    per-objective normalisation bounds lo, hi (M,) of [error, hardware metrics...]."""

    name: str
    split: str  # train | test
    anchor_latency_ms: np.ndarray
    embedding: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class SearchResult:
    """Fronts (one row per device x ray), final metrics, per-epoch history and the trained components."""

    fronts: pd.DataFrame
    metrics: dict[str, float]
    history: list[dict[str, float]]
    hypernetwork: HypernetworkBase
    predictor: nn.Module
    error_model: nn.Module | None
    devices: list[SearchDevice]
    objectives: tuple[str, ...]
    space: SearchSpace
    wall_time_s: float
    supernet: nn.Module | None = None  # supernet mode: the trained weight-sharing supernet


# ---- error objective providers (registry) -----------------------------------------------------------------


class ErrorObjective(abc.ABC):
    """What a mode provides: devices, the frozen predictor, the differentiable error term, optional weight
    training, and the judgement of found architectures (true or measured objectives + hypervolumes)."""

    name: ClassVar[str]
    objectives: tuple[str, ...] = (ERROR, LATENCY)

    def __init__(self, cfg: SearchConfig, space: SearchSpace, device: torch.device) -> None:
        self.cfg = cfg
        self.space = space
        self.device = device
        self.predictor: nn.Module
        self.devices: list[SearchDevice] = []

    @abc.abstractmethod
    def setup(self, rng: np.random.Generator) -> None:
        """Build devices, predictor and error term (may query data / fit models)."""

    @abc.abstractmethod
    def error_term(self, arch: torch.Tensor, batch: Any = None) -> torch.Tensor:
        """(B,) differentiable error of one-hot architectures (B, E, K)."""

    def before_hypernet_step(self, architect: Architect, train_devices: DeviceBatch) -> Any:
        """Work before each hypernetwork step (e.g. a weight step); returns the error term's batch."""
        return None

    @property
    def hypernet_frozen(self) -> bool:
        """True while only the weights train (warm-up)."""
        return False

    def set_epoch(self, epoch: int) -> None:  # noqa: B027 - optional hook
        """Called at the start of every epoch."""

    @abc.abstractmethod
    def judge(
        self, device: SearchDevice, genotypes: Sequence[Genotype]
    ) -> tuple[pd.DataFrame, dict[str, float]]:
        """Rows (one per genotype: predicted and true/measured objectives, on_front) and metrics
        (``hv/<device>`` ...) of the architectures a device's rays selected."""

    def error_model(self) -> nn.Module | None:
        """A saveable error model for the generator (None when there is none)."""
        return None

    def trained_supernet(self) -> nn.Module | None:
        """The weight-sharing supernet the mode trained (None when there is none)."""
        return None

    def model_optimum(
        self,
        device: SearchDevice,
        rays: np.ndarray,
        scalarisation: Callable[..., torch.Tensor],
        exact_error: bool = False,
    ) -> list[Genotype] | None:
        """Per ray, the architecture minimising the scalarised *predicted* objectives over the whole space
        (a diagnostic separating model error from search error; ``exact_error``: the true error with the
        predicted hardware metrics, the ceiling set by the MetaPredictor alone); None where the space is not
        enumerated or the true error is unknown."""
        return None

    def extra_metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless by default
        """Restore what :meth:`state_dict` saved."""

    # ---- shared helpers ------------------------------------------------------------------------------------
    def predicted_hardware(self, device: SearchDevice, onehots: torch.Tensor) -> np.ndarray:
        """(N, num_metrics) predictions in anchor-normalised units for one-hot archs (N, E, K)."""
        out = []
        emb = torch.as_tensor(device.embedding, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            for i in range(0, len(onehots), 4096):
                x = onehots[i : i + 4096].to(self.device)
                out.append(self.predictor(x, emb.expand(len(x), -1)).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.objectives) - 1))

    def latency_ms(self, device: SearchDevice, normalised: np.ndarray) -> np.ndarray:
        """Anchor-normalised latency back to ms with the device's anchors."""
        a = device.anchor_latency_ms
        return a.min() + normalised * (a.max() - a.min())


_OBJECTIVES: dict[str, type[ErrorObjective]] = {}


def register_objective(cls: type[ErrorObjective]) -> type[ErrorObjective]:
    if cls.name in _OBJECTIVES:
        raise ValueError(f"error objective {cls.name!r} is already registered")
    _OBJECTIVES[cls.name] = cls
    return cls


def available_modes() -> list[str]:
    return sorted(_OBJECTIVES)


def create_objective(
    cfg: SearchConfig, space: SearchSpace, device: torch.device, **inject: Any
) -> ErrorObjective:
    """The mode's provider; ``inject`` hands in prepared pieces (``table``, ``predictor``, ``data``,
    ``profile_rows``) instead of loading or fitting them."""
    try:
        cls = _OBJECTIVES[cfg.mode]
    except KeyError:
        raise ValueError(f"unknown mode {cfg.mode!r}; available: {', '.join(available_modes())}") from None
    return cls(cfg, space, device, **inject)


def _bounds(values: np.ndarray, what: str) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    if not (math.isfinite(lo) and math.isfinite(hi)) or not hi > lo:
        raise ValueError(f"cannot normalise {what}: predicted values span [{lo}, {hi}]")
    return lo, hi


def _front_rows(
    device: SearchDevice,
    genotypes: Sequence[Genotype],
    space: SearchSpace,
    predicted: np.ndarray,
    true: np.ndarray | None,
    objectives: Sequence[str],
) -> pd.DataFrame:
    """One row per ray: device, ray, arch, predicted (and true) objectives, on_front of the judged values."""
    judged = true if true is not None else predicted
    mask = np.zeros(len(genotypes), dtype=bool)
    keep = judged[:, 0] < MODNAS_MAX_ERROR
    if keep.any():
        mask[np.flatnonzero(keep)[pareto_mask(judged[keep])]] = True
    rows: dict[str, Any] = {
        "device": device.name,
        "split": device.split,
        "ray": np.arange(len(genotypes)),
        "arch": [space.to_string(g) for g in genotypes],
    }
    if hasattr(space, "nb201_index"):
        rows["nb201_index"] = [space.nb201_index(g) for g in genotypes]
    for j, o in enumerate(objectives):
        rows[f"pred_{o}"] = predicted[:, j]
    if true is not None:
        for j, o in enumerate(objectives):
            rows[f"true_{o}"] = true[:, j]
    rows["on_front"] = mask
    return pd.DataFrame(rows)


@register_objective
class BenchmarkObjective(ErrorObjective):
    """NB201-table mode: accuracy surrogate from a counted query budget + frozen MetaPredictor."""

    name = "benchmark"

    def __init__(
        self,
        cfg: SearchConfig,
        space: SearchSpace,
        device: torch.device,
        table: Any = None,
        predictor: nn.Module | None = None,
    ) -> None:
        super().__init__(cfg, space, device)
        from .benchmarks import load_table

        self.bcfg = cfg.benchmark
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
        from .predictor import FitConfig, MetaPredictor, fit_meta_predictor, measurements_from_table

        if self.bcfg.predictor:
            return MetaPredictor.load(self.bcfg.predictor)
        log.info("fitting a MetaPredictor on the %d train devices", len(self.table.train_devices))
        measured = measurements_from_table(self.table, list(self.table.devices))
        fit = fit_meta_predictor(
            measured,
            FitConfig(epochs=self.bcfg.predictor_epochs, seed=self.cfg.seed),
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
        self._hw = {}  # device -> (N, metrics) predicted, anchor-normalised
        for name, split in devices:
            a = np.asarray(table.anchor_latency_ms(name), dtype=np.float64)
            dev = SearchDevice(name, split, a, anchor_embedding(a), np.zeros(2), np.ones(2))
            self._hw[name] = self.predicted_hardware(dev, self.onehots)
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
        err_lo, err_hi = _bounds(self.pred_error[ok], "predicted error")
        self.devices = []
        for name, split in devices:
            a = np.asarray(table.anchor_latency_ms(name), dtype=np.float64)
            hw = self._hw[name][ok]  # (n, metrics)
            lo = [err_lo] + [_bounds(hw[:, j], f"{name} metric {j}")[0] for j in range(hw.shape[1])]
            hi = [err_hi] + [_bounds(hw[:, j], f"{name} metric {j}")[1] for j in range(hw.shape[1])]
            self.devices.append(
                SearchDevice(name, split, a, anchor_embedding(a), np.asarray(lo), np.asarray(hi))
            )

    def _acquire(self, rng: np.random.Generator) -> ErrorSurrogate:
        """Initial uniform queries, then rounds of Pareto-relevant ones (predicted fronts of the devices)."""
        n = len(self.onehots)
        b = self.bcfg
        self.oracle.query(rng.choice(n, size=min(b.initial_queries, n), replace=False))
        rounds = b.query_rounds if self.oracle.remaining > 0 else 0
        surrogate = None
        for r in tqdm(range(rounds + 1), desc="surrogate rounds", leave=False):
            surrogate = self._fit_surrogate(self.cfg.seed * 1000 + r)
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
        from .benchmarks import evaluate_front, true_front

        index = self.space.nb201_index  # type: ignore[attr-defined]
        rows = np.asarray([index(g) for g in genotypes], dtype=np.int64)
        hw = self._hw[device.name][rows]  # (R, metrics) anchor-normalised
        predicted = np.column_stack([self.pred_error[rows], self.latency_ms(device, hw[:, 0])])
        true = np.column_stack([self.true_error[rows], np.asarray(self.table.latency(device.name))[rows]])
        found = evaluate_front(self.table, device.name, rows, dataset=self.bcfg.dataset)
        best = true_front(self.table, device.name, dataset=self.bcfg.dataset)
        metrics = {
            f"hv/{device.name}": found.hv,
            f"hv_true/{device.name}": best.hv,
            f"hv_ratio/{device.name}": found.hv / best.hv if best.hv > 0 else 0.0,
        }
        return _front_rows(device, genotypes, self.space, predicted, true, self.objectives), metrics

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


class _BatchStream:
    """Endless shuffled mini-batches of a TensorDataset with its own seeded generator (checkpointable)."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, device: torch.device) -> None:
        self.x, self.y = dataset.tensors
        self.batch_size = min(int(batch_size), len(self.x))
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.x), generator=self.generator)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.x), generator=self.generator)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.x[idx].to(self.device), self.y[idx].to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.pos = int(state["pos"])


def dense_forward(supernet: nn.Module, x: torch.Tensor, op_weights: torch.Tensor) -> torch.Tensor:
    """``supernet(x, op_weights)`` computing every op of every edge, even for one-hot weights: the same
    values as the selected-only path (the other ops are weighted by exact zeros), but the straight-through
    gradient also reaches the unselected entries (<dL/d node, op(h)>), i.e. how switching an edge to each
    other op would change the loss. (The selected-only path gives them no gradient, so an edge set to
    ``none`` never hears from the error term while latency keeps pushing towards ``none``.)"""
    w = op_weights.to(device=x.device, dtype=x.dtype)  # (E, K)
    h = supernet.stem(x)
    for s, cells in enumerate(supernet.stages):
        if s > 0:
            h = supernet.reductions[s - 1](h)
        for cell in cells:
            h = cell(h, w, None)
    return supernet.classifier(torch.flatten(supernet.global_pool(supernet.lastact(h)), 1))


def reference_normaliser(reference: np.ndarray, found: np.ndarray) -> Normaliser:
    """MODNAS-style min-max bounds (error >= 90 % dropped) over a reference set of points (N, M); an
    objective the reference leaves constant takes its bounds from reference + found points, and a still
    constant one gets a span of 0.1 % of its value (at least 1e-6) so the hypervolume stays defined."""
    pts = reference[reference[:, 0] < MODNAS_MAX_ERROR]
    pts = pts if len(pts) else reference
    both = np.concatenate([pts, found[found[:, 0] < MODNAS_MAX_ERROR]])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    flat = hi <= lo
    lo[flat], hi[flat] = both.min(axis=0)[flat], both.max(axis=0)[flat]
    flat = hi <= lo
    hi[flat] = lo[flat] + np.maximum(1e-3 * np.abs(lo[flat]), 1e-6)
    return Normaliser(tuple(lo), tuple(hi))


@register_objective
class SupernetObjective(ErrorObjective):
    """Supernet mode: cross-entropy of sampled subnets of a weight-sharing supernet; devices and the
    MetaPredictor from a profiling table of real measurements."""

    name = "supernet"

    def __init__(
        self,
        cfg: SearchConfig,
        space: SearchSpace,
        device: torch.device,
        data: Any = None,
        profile_rows: Any = None,
        predictor: nn.Module | None = None,
    ) -> None:
        super().__init__(cfg, space, device)
        from .data import get_dataset
        from .predictor import measurements_from_profile
        from .supernet import Supernet

        self.scfg = cfg.supernet
        self.data = (
            data
            if data is not None
            else get_dataset(self.scfg.dataset, seed=cfg.seed, root=self.scfg.data_root or None)
        )
        if profile_rows is None:
            raise ValueError("supernet mode needs a profiling table (rows of profiling.campaign.read_table)")
        self.measured = measurements_from_profile(profile_rows, space, test_devices=self.scfg.test_devices)
        if not any(m.split == "train" for m in self.measured):
            raise ValueError("supernet mode: every device of the profiling table is a test device")
        self._injected_predictor = predictor
        torch.manual_seed(cfg.seed)
        self.supernet = Supernet(
            space,
            C=self.scfg.C,
            N=self.scfg.N,
            in_channels=self.data.input_shape[0],
            num_classes=self.data.num_classes,
        ).to(device)
        if self.scfg.init_weights:
            from .supernet_training import check_compatible, load_supernet

            pretrained = load_supernet(self.scfg.init_weights)
            check_compatible(
                pretrained, space, self.scfg.C, self.scfg.N, self.data.input_shape[0], self.data.num_classes
            )
            self.supernet.load_state_dict(pretrained.state_dict())
        self.weight_optimizer = torch.optim.SGD(
            self.supernet.parameters(), lr=self.scfg.weight_lr, momentum=self.scfg.momentum,
            weight_decay=self.scfg.weight_decay,
        )  # fmt: skip
        self.weight_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.weight_optimizer, T_max=max(1, cfg.epochs * cfg.steps_per_epoch)
        )
        self.train_stream = _BatchStream(self.data.train, self.scfg.batch_size, cfg.seed + 1, device)
        self.valid_stream = _BatchStream(self.data.valid, self.scfg.batch_size, cfg.seed + 2, device)
        self.epoch = 0
        self.weight_losses: list[float] = []
        self._error_cache: dict[Genotype, float] = {}  # valid error per genotype under the current weights

    def setup(self, rng: np.random.Generator) -> None:
        self.predictor = self._load_predictor().to(self.device).eval()
        # reference architectures fix each device's HV normalisation; the latency bounds of the search come
        # from a larger pool: the reference set, every measured architecture and BOUNDS_POOL random samples
        draws = [self.space.sample(rng) for _ in range(4 * self.scfg.reference_archs)]
        self.reference = list(dict.fromkeys(draws))[: self.scfg.reference_archs]
        measured = {tuple(int(x) for x in g) for m in self.measured for g in m.genotypes}
        pool = list(dict.fromkeys([*self.reference, *sorted(measured)]))
        pool += [self.space.sample(rng) for _ in range(BOUNDS_POOL)]
        ref_onehots = torch.from_numpy(self.space.one_hot_batch(pool))
        max_ce = math.log(self.data.num_classes)
        self.devices = []
        self._measured_ms: dict[str, dict[Genotype, float]] = {}
        for m in self.measured:
            a = np.asarray(m.anchor_values[LATENCY], dtype=np.float64)
            dev = SearchDevice(m.name, m.split, a, anchor_embedding(a), np.zeros(2), np.ones(2))
            hw = self.predicted_hardware(dev, ref_onehots)[:, 0]
            lo_l, hi_l = _bounds(hw, f"{m.name} predicted latency")
            self.devices.append(
                SearchDevice(
                    m.name, m.split, a, dev.embedding, np.array([0.0, lo_l]), np.array([max_ce, hi_l])
                )
            )
            self._measured_ms[m.name] = {
                tuple(int(x) for x in g): float(v)
                for g, v in zip(m.genotypes, m.values[LATENCY], strict=True)
            }

    def _load_predictor(self) -> nn.Module:
        if self._injected_predictor is not None:
            return self._injected_predictor
        from .predictor import FitConfig, MetaPredictor, fit_meta_predictor

        if self.scfg.predictor:
            return MetaPredictor.load(self.scfg.predictor)
        fit = fit_meta_predictor(
            self.measured,
            FitConfig(epochs=self.scfg.predictor_epochs, batch_size=64, patience=60, seed=self.cfg.seed),
            space=self.space,
            progress=False,
        )
        return fit.model

    # ---- search-time pieces -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def hypernet_frozen(self) -> bool:
        return self.epoch < self.scfg.warmup_epochs

    def before_hypernet_step(self, architect: Architect, train_devices: DeviceBatch) -> Any:
        x, y = self.train_stream.next()
        loss = architect.weight_step(
            self.supernet, self.weight_optimizer, x, y, train_devices,
            num_archs=self.scfg.archs_per_weight_step, grad_clip=self.scfg.grad_clip or None,
            uniform_fraction=self.scfg.uniform_fraction,
        )  # fmt: skip
        self.weight_scheduler.step()
        self.weight_losses.append(loss)
        self._error_cache.clear()
        return self.valid_stream.next()

    def error_term(self, arch: torch.Tensor, batch: Any = None) -> torch.Tensor:
        if batch is None:
            raise ValueError("supernet error term needs a (x, y) batch")
        x, y = batch
        self.supernet.train()
        if self.scfg.dense_gradients and torch.is_grad_enabled():  # no gradient wanted: selected ops only
            return torch.stack(
                [nn.functional.cross_entropy(dense_forward(self.supernet, x, a), y) for a in arch]
            )
        return torch.stack([nn.functional.cross_entropy(self.supernet(x, a), y) for a in arch])

    def valid_error(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """(R,) valid error (percent) of each genotype under the shared weights (first ``eval_batches``
        batches of the valid split, or all of it)."""
        from .supernet_training import valid_error

        x, y = self.data.valid.tensors
        if self.scfg.eval_batches:
            n = self.scfg.eval_batches * self.scfg.batch_size
            x, y = x[:n], y[:n]
        todo = [
            g for g in dict.fromkeys(genotypes) if g not in self._error_cache
        ]  # cached until weights move
        if todo:
            errs = valid_error(self.supernet, todo, x, y, batch_size=self.scfg.batch_size)
            self._error_cache.update(zip(todo, errs.tolist(), strict=True))
        return np.asarray([self._error_cache[g] for g in genotypes], dtype=np.float64)

    def judge(
        self, device: SearchDevice, genotypes: Sequence[Genotype]
    ) -> tuple[pd.DataFrame, dict[str, float]]:
        genotypes = [tuple(int(x) for x in g) for g in genotypes]
        uniq = sorted(set(genotypes) | set(self.reference))
        err = dict(zip(uniq, self.valid_error(uniq), strict=True))
        onehots = torch.from_numpy(self.space.one_hot_batch(uniq))
        lat = dict(
            zip(uniq, self.latency_ms(device, self.predicted_hardware(device, onehots)[:, 0]), strict=True)
        )
        measured = self._measured_ms.get(device.name, {})
        judged_lat = {g: measured.get(g, lat[g]) for g in uniq}

        def points(gs: Sequence[Genotype]) -> np.ndarray:
            return np.asarray([[err[g], judged_lat[g]] for g in gs], dtype=np.float64)

        ref = points(self.reference)
        found = points(genotypes)
        normaliser = reference_normaliser(ref, found)

        def hv(F: np.ndarray) -> float:
            F = F[F[:, 0] < MODNAS_MAX_ERROR]
            return hypervolume(normaliser(F), normaliser.reference_point) if len(F) else 0.0

        metrics = {f"hv/{device.name}": hv(found), f"hv_reference/{device.name}": hv(ref)}
        predicted = np.asarray([[err[g], lat[g]] for g in genotypes], dtype=np.float64)
        rows = _front_rows(device, genotypes, self.space, predicted, found, self.objectives)
        rows["latency_measured"] = [g in measured for g in genotypes]
        return rows, metrics

    def trained_supernet(self) -> nn.Module | None:
        return self.supernet

    def extra_metrics(self) -> dict[str, float]:
        out = {}
        if self.weight_losses:
            out["weight_loss"] = float(np.mean(self.weight_losses))
            self.weight_losses = []
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "supernet": self.supernet.state_dict(),
            "weight_optimizer": self.weight_optimizer.state_dict(),
            "weight_scheduler": self.weight_scheduler.state_dict(),
            "train_stream": self.train_stream.state_dict(),
            "valid_stream": self.valid_stream.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.weight_scheduler.load_state_dict(state["weight_scheduler"])
        self.train_stream.load_state_dict(state["train_stream"])
        self.valid_stream.load_state_dict(state["valid_stream"])
        self._error_cache.clear()


# ---- checkpoints -------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic ``torch.save`` (a kill mid-write leaves the previous checkpoint intact)."""
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (``weights_only=True``) if it belongs to this config, else None."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        log.warning("ignoring checkpoint %s: written by a different search config", path)
        return None
    return state


# ---- the loop ----------------------------------------------------------------------------------------------


def _device_batch(devices: Sequence[SearchDevice], device: torch.device) -> DeviceBatch:
    return DeviceBatch(
        tuple(d.name for d in devices),
        torch.as_tensor(np.stack([d.embedding for d in devices]), dtype=torch.float32, device=device),
        torch.as_tensor(np.stack([d.lo for d in devices]), dtype=torch.float32, device=device),
        torch.as_tensor(np.stack([d.hi for d in devices]), dtype=torch.float32, device=device),
    )


def evaluate_fronts(
    objective: ErrorObjective, architect: Architect, rays: np.ndarray, device: torch.device
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every device x ray: argmax architecture of H(r, d), judged by the mode; rows + metrics (with
    ``<metric>_min/<split>`` and ``<metric>_mean/<split>`` aggregates)."""
    r = torch.as_tensor(rays, dtype=torch.float32, device=device)
    frames, metrics = [], {}
    for dev in objective.devices:
        emb = torch.as_tensor(dev.embedding, dtype=torch.float32, device=device)
        genotypes = [
            tuple(int(x) for x in row) for row in architect.argmax_architectures(r, emb).cpu().tolist()
        ]
        rows, m = objective.judge(dev, genotypes)
        for j in range(rays.shape[1]):
            rows.insert(3 + j, f"pref_{j}", rays[:, j])
        frames.append(rows)
        metrics.update(m)
    return pd.concat(frames, ignore_index=True), with_aggregates(metrics, objective.devices)


def with_aggregates(metrics: dict[str, float], devices: Sequence[SearchDevice]) -> dict[str, float]:
    """``metrics`` plus ``<metric>_min/<split>`` and ``<metric>_mean/<split>`` over each split's devices."""
    out = dict(metrics)
    for split in ("train", "test"):
        names = [d.name for d in devices if d.split == split]
        for prefix in sorted({k.split("/")[0] for k in metrics}):
            vals = [metrics[f"{prefix}/{n}"] for n in names if f"{prefix}/{n}" in metrics]
            if vals:
                out[f"{prefix}_min/{split}"] = float(np.min(vals))
                out[f"{prefix}_mean/{split}"] = float(np.mean(vals))
    return out


def model_optimum_metrics(
    objective: ErrorObjective, architect: Architect, rays: np.ndarray
) -> dict[str, float]:
    """``model_optimum_<metric>/<device>``: the judged metrics of the per-ray optima of the search's models
    (surrogate + predictor), where the space is enumerated; the ceiling of a perfect hypernetwork.
    ``predictor_optimum_<metric>/<device>``: the same with the true error, i.e. what the MetaPredictor alone
    allows."""
    out: dict[str, float] = {}
    for prefix, exact in (("model_optimum", False), ("predictor_optimum", True)):
        for dev in objective.devices:
            genotypes = objective.model_optimum(dev, rays, architect.scalarise, exact_error=exact)
            if genotypes is None:
                break
            _, m = objective.judge(dev, genotypes)
            out.update({f"{prefix}_{k}": v for k, v in m.items()})
    return with_aggregates(out, objective.devices)


def run_search(
    cfg: SearchConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    **inject: Any,
) -> SearchResult:
    """Run (or resume) the search ``cfg`` describes; ``on_epoch(epoch, metrics)`` after each epoch's
    evaluation; ``inject``: prepared ``table`` / ``predictor`` (benchmark) or ``data`` / ``profile_rows`` /
    ``predictor`` (supernet)."""
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    space = get_search_space(cfg.space)
    fingerprint = config_fingerprint(cfg)
    ckpt_path = Path(cfg.checkpoint_dir) / CHECKPOINT_FILE if cfg.checkpoint_dir else None
    state = load_checkpoint(ckpt_path, fingerprint) if ckpt_path else None

    objective = create_objective(cfg, space, device, **inject)
    if state is not None:
        objective.load_state_dict(state["objective"])
    rng = np.random.default_rng(cfg.seed)
    objective.setup(rng)
    setup_s = time.perf_counter() - start
    num_objectives = len(objective.objectives)
    metrics_names = tuple(getattr(objective.predictor, "metrics", ()))
    if (ERROR, *metrics_names) != objective.objectives:
        raise ValueError(
            f"predictor metrics {metrics_names} do not match the objectives {objective.objectives[1:]}"
        )

    torch.manual_seed(cfg.seed)
    hcfg, acfg = cfg.hypernet, cfg.architect
    kwargs: dict[str, Any] = {"hidden": hcfg.hidden, "init_std": hcfg.init_std}
    if hcfg.kind == "kernel" and hcfg.resolution:
        kwargs["resolution"] = hcfg.resolution
    hypernet = create_hypernetwork(
        hcfg.kind,
        shape=space.shape,
        num_objectives=num_objectives,
        embedding_dim=len(objective.devices[0].embedding),
        **kwargs,
    ).to(device)  # fmt: skip
    optimizer = torch.optim.Adam(hypernet.parameters(), lr=hcfg.lr, weight_decay=hcfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, cfg.epochs * cfg.steps_per_epoch)
    )
    architect = Architect(
        hypernet,
        create_sampler(acfg.sampler, **acfg.sampler_kwargs()),
        objective.error_term,
        objective.predictor,
        optimizer,
        scalarisation=acfg.scalarisation,
        combine_mode=acfg.combine,
        normalize_grads=acfg.normalize_grads,
        cosine_weight=acfg.cosine_weight,
        dirichlet_beta=acfg.dirichlet_beta or None,
        prefs_per_device=acfg.prefs_per_device,
        mgd_max_iter=acfg.mgd_max_iter,
        mgd_tol=acfg.mgd_tol,
        grad_clip=acfg.grad_clip or None,
        batched_grads=cfg.mode == "benchmark",
        finite_differences=acfg.finite_differences,
        seed=cfg.seed,
    )
    train_devices = _device_batch([d for d in objective.devices if d.split == "train"], device)
    rays = preference_rays(cfg.num_rays, num_objectives)
    history: list[dict[str, float]] = []
    first_epoch = 0
    if state is not None:
        architect.load_state_dict(state["architect"])
        scheduler.load_state_dict(state["scheduler"])
        history = list(state["history"])
        first_epoch = int(state["epoch"]) + 1
        log.info("resuming the search at epoch %d from %s", first_epoch, ckpt_path)

    fronts, metrics = pd.DataFrame(), {}
    for epoch in range(first_epoch, cfg.epochs):
        architect.sampler.set_epoch(epoch, cfg.epochs)
        objective.set_epoch(epoch)
        architect.entropy_weight = acfg.entropy_weight * max(
            0.0, 1.0 - epoch / (acfg.entropy_decay * cfg.epochs)
        )
        losses = []
        for _ in tqdm(range(cfg.steps_per_epoch), desc=f"epoch {epoch}", leave=False, disable=not progress):
            batch = objective.before_hypernet_step(architect, train_devices)
            if not objective.hypernet_frozen:
                stats = architect.hypernet_step(train_devices, batch)
                losses.append(float(np.mean(list(stats.loss.values()))))
                scheduler.step()
        epoch_metrics: dict[str, float] = {"epoch": float(epoch), **objective.extra_metrics()}
        if losses:
            epoch_metrics["hypernet_loss"] = float(np.mean(losses))
        epoch_metrics.update({f"sampler_{k}": v for k, v in architect.sampler.state().items()})
        if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
            fronts, metrics = evaluate_fronts(objective, architect, rays, device)
            epoch_metrics.update(metrics)
        epoch_metrics["wall_time_s"] = time.perf_counter() - start
        history.append(epoch_metrics)
        if ckpt_path is not None:
            save_checkpoint(
                ckpt_path,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "architect": architect.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "objective": objective.state_dict(),
                    "history": history,
                },
            )
        if on_epoch is not None:
            on_epoch(epoch, epoch_metrics)
    if fronts.empty:  # resumed after the last epoch: evaluate once more
        fronts, metrics = evaluate_fronts(objective, architect, rays, device)
    final = {**metrics, **model_optimum_metrics(objective, architect, rays), **objective.extra_metrics()}
    final["time/setup_s"] = setup_s
    final["wall_time_s"] = time.perf_counter() - start
    return SearchResult(
        fronts=fronts,
        metrics=final,
        history=history,
        hypernetwork=hypernet,
        predictor=objective.predictor,
        error_model=objective.error_model(),
        devices=list(objective.devices),
        objectives=objective.objectives,
        space=space,
        wall_time_s=final["wall_time_s"],
        supernet=objective.trained_supernet(),
    )


__all__ = [
    "ArchitectConfig",
    "BenchmarkConfig",
    "BenchmarkObjective",
    "ErrorObjective",
    "HypernetConfig",
    "SearchConfig",
    "SearchDevice",
    "SearchResult",
    "SupernetConfig",
    "SupernetObjective",
    "available_modes",
    "config_fingerprint",
    "create_objective",
    "evaluate_fronts",
    "load_checkpoint",
    "register_objective",
    "run_search",
    "save_checkpoint",
]

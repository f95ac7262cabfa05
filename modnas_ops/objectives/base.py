"""Error objective providers: what a search mode supplies to the MODNAS loop (devices, the frozen predictor,
the differentiable error term, optional weight training, and the judgement of found architectures).

A mode is one registered :class:`ErrorObjective` subclass (``@register_objective``); the loop picks it by
the search config's ``mode`` through :func:`create_objective`.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..architect import Architect, DeviceBatch
from ..devices import anchor_embedding
from ..pareto import MODNAS_MAX_ERROR, pareto_mask
from ..predictor import denormalise, normalise
from ..registry import Registry
from ..spaces import Genotype, SearchSpace

log = logging.getLogger(__name__)

ERROR = "error"
LATENCY = "latency_ms"




@dataclass(frozen=True, eq=False)
class SearchDevice:
    """A device as the search sees it: name, split, its anchors' raw values per hardware metric
    (``{metric: (A,)}``, latency always), the embedding (A,) of the anchor latencies, and the per-objective
    normalisation bounds lo, hi (M,) of [error, hardware metrics...] (empty until fitted)."""

    name: str
    split: str  # train | test
    anchors: Mapping[str, np.ndarray]
    lo: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    embedding: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "embedding", anchor_embedding(self.anchors[LATENCY]))

    @property
    def anchor_latency_ms(self) -> np.ndarray:
        return np.asarray(self.anchors[LATENCY], dtype=np.float64)

    def with_bounds(self, lo: Sequence[float], hi: Sequence[float]) -> SearchDevice:
        return SearchDevice(self.name, self.split, self.anchors, np.asarray(lo, float), np.asarray(hi, float))

    def scaled(self, values: np.ndarray, metrics: Sequence[str]) -> np.ndarray:
        """(N, M) raw [error, metrics...] (ms, mJ, ...) in the search's units: each hardware metric
        anchor-normalised as the predictor and the architect see it, then every objective min-max scaled by
        ``lo``, ``hi`` (so the search's scalarisation applies)."""
        v = np.asarray(values, dtype=np.float64).reshape(-1, 1 + len(metrics))  # (N, M)
        cols = [v[:, 0], *[normalise(v[:, 1 + j], self.anchors[m]) for j, m in enumerate(metrics)]]
        return (np.column_stack(cols) - self.lo) / (self.hi - self.lo)



@dataclass(frozen=True)
class SearchContext:
    """What a mode needs to know of the search around it."""

    seed: int
    epochs: int
    steps_per_epoch: int


class ErrorObjective(abc.ABC):
    """What a mode provides: devices, the frozen predictor, the differentiable error term, optional weight
    training, and the judgement of found architectures (true or measured objectives + hypervolumes).

    A mode's settings are its own frozen dataclass (``config_class``, in the mode's module); the search config
    holds one under the mode's name (``search.<mode>.*``)."""

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any, context: SearchContext, space: SearchSpace, device: torch.device) -> None:
        self.config = config
        self.context = context
        self.space = space
        self.device = device
        self.predictor: nn.Module
        self.devices: list[SearchDevice] = []
        self._measured: dict[str, dict[str, dict[Genotype, float]]] = {}  # device -> metric -> arch -> value

    @property
    def objectives(self) -> tuple[str, ...]:
        """Error plus every hardware metric the predictor was fitted on (known after :meth:`setup`)."""
        return (ERROR, *self.metrics)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.predictor.metrics)

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

    def reference_points(self, device: SearchDevice) -> np.ndarray | None:
        """(R, M) judged objectives of the mode's reference architectures on ``device`` (the set its HV is
        normalised over), for plots beside the found front; None where the mode has none."""
        return None

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

    def estimated_error(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """(N,) the error the search knows for each genotype (model prediction, or a value it already paid
        for), never a fresh query."""
        raise NotImplementedError(f"mode {self.name!r} has no error estimate")

    def reference_genotypes(self, device: SearchDevice) -> list[Genotype]:
        """Architectures besides a device's front whose values its judgement uses (the reference set its HV is
        normalised over): a measured front is judged against them measured too. None by default."""
        return []

    def measure(self, device: SearchDevice, genotypes: Sequence[Genotype]) -> np.ndarray | None:
        """(N, num_metrics) hardware metrics of ``genotypes`` measured on ``device`` in raw units (NaN where a
        metric is not measured), or None where the mode cannot measure on it."""
        return None

    def record_measurements(self, device: SearchDevice, genotypes: Sequence[Genotype], values: np.ndarray) -> None:
        """Keep measured values (N, num_metrics) (NaN: not measured) so that :meth:`estimate` and the
        judgement use them instead of the predictor's."""
        store = self._measured.setdefault(device.name, {})
        for j, metric in enumerate(self.metrics):
            for g, v in zip(genotypes, values[:, j], strict=True):
                if math.isfinite(float(v)):
                    store.setdefault(metric, {})[tuple(int(x) for x in g)] = float(v)

    def forget_measurements(self) -> dict[str, Any]:
        """Drop every recorded measurement (to confirm the same search afresh at another budget); returns
        them for :meth:`restore_measurements`."""
        saved, self._measured = self._measured, {}
        return saved

    def restore_measurements(self, saved: dict[str, Any]) -> None:
        """Put back what :meth:`forget_measurements` returned (what was recorded since is dropped)."""
        self._measured = saved

    def measured_values(self, device: SearchDevice, genotypes: Sequence[Genotype]) -> np.ndarray:
        """(N, num_metrics) the recorded measurements of ``genotypes`` on ``device``, NaN where there is none."""
        store = self._measured.get(device.name, {})
        return np.asarray(
            [[store.get(x, {}).get(tuple(int(v) for v in g), np.nan) for x in self.metrics] for g in genotypes],
            dtype=np.float64,
        ).reshape(len(genotypes), len(self.metrics))

    def estimate(self, device: SearchDevice, genotypes: Sequence[Genotype], measured: bool = True) -> np.ndarray:
        """(N, M) what the search knows of each genotype: :meth:`estimated_error` and the hardware metrics,
        measured where recorded (``measured``), else predicted (raw units)."""
        genotypes = [tuple(int(x) for x in g) for g in genotypes]
        onehots = torch.from_numpy(self.space.one_hot_batch(genotypes))
        hw = self.hardware(device, self.predicted_hardware(device, onehots))  # (N, metrics)
        if measured:
            values = self.measured_values(device, genotypes)
            hw = np.where(np.isnan(values), hw, values)
        return np.column_stack([self.estimated_error(genotypes), hw])

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
        return np.concatenate(out) if out else np.zeros((0, len(self.metrics)))

    def hardware(self, device: SearchDevice, normalised: np.ndarray) -> np.ndarray:
        """(N, num_metrics) anchor-normalised predictions back to raw units (ms, mJ, ...) with the device's
        anchors of each metric (kept positive, see :func:`~modnas_ops.predictor.denormalise`)."""
        return np.column_stack(
            [denormalise(normalised[:, j], device.anchors[m]) for j, m in enumerate(self.metrics)]
        ).reshape(len(normalised), len(self.metrics))

    def fit_hardware_bounds(self, device: SearchDevice, normalised: np.ndarray) -> tuple[list[float], list[float]]:
        """Per metric (min, max) of a device's normalised predictions (N, num_metrics) over a pool."""
        spans = [fit_bounds(normalised[:, j], f"{device.name} predicted {m}") for j, m in enumerate(self.metrics)]
        return [lo for lo, _ in spans], [hi for _, hi in spans]


MODES: Registry[type[ErrorObjective]] = Registry("mode")


def register_objective(cls: type[ErrorObjective]) -> type[ErrorObjective]:
    return MODES.register(cls.name)(cls)


def available_modes() -> list[str]:
    return MODES.names()


def create_objective(
    mode: str, config: Any, context: SearchContext, space: SearchSpace, device: torch.device, **inject: Any
) -> ErrorObjective:
    """The mode's provider; ``inject`` hands in prepared pieces (``table``, ``predictor``, ``data``,
    ``profile_rows``) instead of loading or fitting them."""
    return MODES.get(mode)(config, context, space, device, **inject)


def fit_bounds(values: np.ndarray, what: str) -> tuple[float, float]:
    """(min, max) of an objective's predicted values, for its normalisation; ValueError if not a finite span."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if not (math.isfinite(lo) and math.isfinite(hi)) or not hi > lo:
        raise ValueError(f"cannot normalise {what}: predicted values span [{lo}, {hi}]")
    return lo, hi


def front_rows(
    device: SearchDevice,
    genotypes: Sequence[Genotype],
    space: SearchSpace,
    predicted: np.ndarray,
    true: np.ndarray | None,
    objectives: Sequence[str],
) -> pd.DataFrame:
    """One row per ray: device, ray, arch, predicted (and true) objectives, on_front of the judged values
    (non-dominated rows below the error cut; of rows with identical judged objectives only the first)."""
    judged = true if true is not None else predicted
    mask = np.zeros(len(genotypes), dtype=bool)
    keep = judged[:, 0] < MODNAS_MAX_ERROR
    if keep.any():  # non-dominated, and one row per distinct point (ties: the first row, e.g. a repeated arch)
        idx = np.flatnonzero(keep)[pareto_mask(judged[keep])]
        _, first = np.unique(judged[idx], axis=0, return_index=True)
        mask[idx[np.sort(first)]] = True
    rows: dict[str, Any] = {
        "device": device.name,
        "split": device.split,
        "ray": np.arange(len(genotypes)),
        "arch": [space.to_string(g) for g in genotypes],
    }
    if space.benchmark_index_name:
        rows[space.benchmark_index_name] = [space.benchmark_index(g) for g in genotypes]
    for j, o in enumerate(objectives):
        rows[f"pred_{o}"] = predicted[:, j]
    if true is not None:
        for j, o in enumerate(objectives):
            rows[f"true_{o}"] = true[:, j]
    rows["on_front"] = mask
    return pd.DataFrame(rows)


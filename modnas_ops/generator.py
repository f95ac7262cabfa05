"""ParetoGenerator: the search's product as a servable model (its MLflow registration: :mod:`.registration`).

A generator maps (device anchor measurements, preference over the objectives) to one architecture: the
argmax of the MetaHypernetwork's logits H(r, d) (deterministic), with predicted objectives from the frozen
MetaPredictor (hardware metrics, denormalised with the row's own anchor values) and an optional error model.

``predict(DataFrame)`` takes exactly the columns ``anchor_<metric>_0..9`` (raw anchor measurements in the
space's ``anchors()`` order; ``latency_ms`` always, plus every other predictor metric) and ``pref_0..pref_{M-1}``
(non-negative weights of ``objectives``, normalised to the simplex here), and returns ``arch`` (canonical
string), the space's benchmark index (e.g. ``nb201_index``, where it has one) and ``pred_<objective>`` for
every objective a model predicts. An optional ``top_k`` column (integer 1..64 per row) asks for a shortlist
instead: the row's k most probable architectures under H(r, d), most probable first, one output row each
with ``input_row`` (the input's index label), ``rank`` and ``log_prob`` before ``arch`` — the candidates a
device team measures on its own hardware before choosing (as the search's measured shortlist does).

The generator keeps frozen eval-mode copies of its modules (a snapshot: later training of the originals does
not change it). It is saved as a directory (JSON spec + torch files, loaded with ``weights_only=True``) and
logged as an MLflow pyfunc by :func:`modnas_ops.registration.log_generator`.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .atomic import atomic_write
from .devices import Device, anchor_columns, anchor_embedding
from .errors import UserError
from .hypernetwork import HypernetworkBase, load_hypernetwork, save_hypernetwork
from .pareto import preference_rays
from .predictor import denormalise
from .sampling import top_k_genotypes
from .spaces import SearchSpace, get_search_space

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPEC_FILE = "generator.json"
HYPERNETWORK_FILE = "hypernetwork.pt"
PREDICTOR_FILE = "predictor.pt"
ERROR_MODEL_FILE = "error_model.pt"
ARTIFACT_KEY = "generator"  # key of the generator directory in the pyfunc's artifacts
LATENCY = "latency_ms"
ERROR = "error"
TOP_K = "top_k"  # optional input column: the shortlist size per row
MAX_TOP_K = 64
PREF_SUM_TOL = 1e-3  # preferences in a request must sum to 1 within this (4-digit rounding passes)


# ---- column names ------------------------------------------------------------------------------------


def preference_columns(num_objectives: int) -> list[str]:
    """``pref_0`` ... ``pref_{M-1}``."""
    return [f"pref_{i}" for i in range(int(num_objectives))]


# ---- saveable components (predictor, error model) ------------------------------------------------------

_COMPONENTS: dict[str, type] = {}


def _ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_component(cls: type) -> type:
    """Allow :func:`load_generator` to rebuild ``cls`` (a predictor or error model defined outside
    ``modnas_ops``). Components need ``save(path)`` and a class-level ``load(path)``."""
    _COMPONENTS[_ref(cls)] = cls
    return cls


def _component_class(ref: str) -> type:
    if ref in _COMPONENTS:
        return _COMPONENTS[ref]
    module, _, qualname = ref.partition(":")
    if module != "modnas_ops" and not module.startswith("modnas_ops."):
        raise ValueError(
            f"generator component {ref!r} is neither in modnas_ops nor registered (register_component)"
        )
    import importlib

    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        raise ValueError(f"generator component {ref!r} does not name a class")
    return obj


def _save_component(obj: Any, path: Path, what: str) -> str:
    ref = _ref(type(obj))
    _component_class(ref)  # fail now, not at load time
    if not callable(getattr(obj, "save", None)) or not callable(getattr(type(obj), "load", None)):
        raise ValueError(f"save_generator: the {what} ({ref}) needs save(path) and a class-level load(path)")
    obj.save(path)
    return ref


class TableErrorModel(nn.Module):
    """Error looked up per architecture: ``error[space.index(argmax(arch))]`` (e.g. NB201 test error in percent).

    ``forward(arch (B, E, K)) -> (B,)``; not differentiable (a lookup), which the generator does not need.
    """

    def __init__(self, space: str | SearchSpace, error: Any, unit: str = "percent") -> None:
        super().__init__()
        self.space = get_search_space(space) if isinstance(space, str) else space
        err = torch.as_tensor(np.asarray(error, dtype=np.float32))  # (num_architectures,)
        if err.shape != (self.space.num_architectures,):
            raise ValueError(
                f"TableErrorModel: need one error per {self.space.name} architecture "
                f"({self.space.num_architectures}), got shape {tuple(err.shape)}"
            )
        if not bool(torch.isfinite(err).all()):
            raise ValueError("TableErrorModel: errors must be finite")
        self.unit = str(unit)
        self.register_buffer("error", err)
        powers = torch.tensor(self.space.place_values)  # (D,) mixed-radix place values
        self.register_buffer("powers", powers, persistent=False)

    @classmethod
    def from_table(cls, table: Any, dataset: str = "cifar10") -> TableErrorModel:
        """From a :class:`modnas_ops.benchmarks.BenchmarkTable` (error in percent)."""
        space = table.space
        index = space.index_batch(table.genotypes)
        err = np.full(space.num_architectures, np.nan, dtype=np.float32)
        err[index] = table.error(dataset)
        if np.isnan(err).any():
            raise ValueError(f"{table.path}: the table does not cover every {space.name} architecture")
        return cls(space, err, unit="percent")

    def forward(self, arch: torch.Tensor) -> torch.Tensor:
        idx = (arch.argmax(dim=-1) * self.powers).sum(dim=-1)  # (B,)
        return self.error[idx]

    def save(self, path: str | Path) -> None:
        payload = {"space": self.space.name, "unit": self.unit, "error": self.error.detach().cpu()}
        atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: str | Path) -> TableErrorModel:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or not {"space", "unit", "error"} <= set(payload):
            raise ValueError(f"{path}: not a saved TableErrorModel")
        return cls(payload["space"], payload["error"].numpy(), unit=payload["unit"])


# ---- the generator ---------------------------------------------------------------------------------------


def _frozen(module: Any) -> Any:
    """An eval-mode, gradient-free deep copy of an ``nn.Module`` (other callables as they are)."""
    if not isinstance(module, nn.Module):
        return module
    m = copy.deepcopy(module).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _module_device(module: nn.Module) -> torch.device:
    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return torch.device("cpu")


def _device_anchors(name: str, value: Any, metrics: Sequence[str], count: int) -> dict[str, tuple[float, ...]]:
    if isinstance(value, Device):
        anchors: dict[str, Any] = {LATENCY: value.anchor_latency_ms}
    elif isinstance(value, Mapping):
        anchors = dict(value)
    else:
        anchors = {LATENCY: value}
    missing = [m for m in metrics if m not in anchors]
    if missing:
        raise ValueError(f"generator: device {name!r} lacks anchor values for {missing}")
    out = {}
    for m in metrics:
        a = np.asarray(anchors[m], dtype=np.float64).reshape(1, -1)
        _check_anchor_rows(a, m, [name], count, what="device")
        out[m] = tuple(float(x) for x in a[0])
    return out


def _check_anchor_rows(
    a: np.ndarray, metric: str, labels: Sequence[Any], count: int, what: str = "input row"
) -> None:
    """ValueError naming the first row of (N, A) anchor values that is not finite, positive and spread."""
    if a.shape[1] != count:
        raise UserError(f"generator: {what} {labels[0]!r}: expected {count} anchor_{metric} values")
    bad = ~np.isfinite(a).all(axis=1)
    bad |= ~(a > 0).all(axis=1)
    bad |= np.ptp(np.where(np.isfinite(a), a, 0.0), axis=1) == 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"generator: {what} {labels[i]!r}: anchor_{metric} values must be finite, positive and not all "
            f"equal, got {a[i].tolist()}"
        )


class ParetoGenerator:
    """Device anchors + preference -> argmax architecture + predicted objectives (see module docstring).

    ``hypernetwork``: ``forward(preference (B, M), embedding (B, 10)) -> logits (B, E, K)``.
    ``predictor``: optional MetaPredictor, ``forward(arch (B, E, K), embedding (B, 10)) -> (B, len(metrics))``
    in anchor-normalised units, denormalised per row as ``min_a + y * (max_a - min_a)`` over the row's anchors
    (kept positive).
    ``error_model``: optional callable ``arch (B, E, K) -> (B,)`` error (unit as the model states; the
    :class:`TableErrorModel` gives percent). ``devices``: known devices by name (``Device``, 10 anchor
    latencies in ms, or ``{metric: 10 anchor values}``), used for examples and :meth:`front`.
    """

    def __init__(
        self,
        hypernetwork: nn.Module,
        space: str | SearchSpace,
        objectives: Sequence[str] = (ERROR, LATENCY),
        predictor: nn.Module | None = None,
        error_model: Callable[[torch.Tensor], torch.Tensor] | None = None,
        devices: Mapping[str, Any] | Sequence[Device] | None = None,
        batch_size: int = 1024,
    ) -> None:
        self.space = get_search_space(space) if isinstance(space, str) else space
        self.objectives = tuple(str(o) for o in objectives)
        if len(self.objectives) < 2 or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(
                f"generator: objectives must be >= 2 distinct names, got {list(self.objectives)}"
            )
        m = getattr(hypernetwork, "num_objectives", len(self.objectives))
        if m != len(self.objectives):
            raise ValueError(
                f"generator: the hypernetwork takes {m} objectives but {len(self.objectives)} are named "
                f"({list(self.objectives)})"
            )
        self.metrics: tuple[str, ...] = (
            tuple(getattr(predictor, "metrics", ())) if predictor is not None else ()
        )
        if predictor is not None and not self.metrics:
            raise ValueError("generator: the predictor must name its metrics in `.metrics`")
        unknown = [x for x in self.metrics if x not in self.objectives]
        if unknown:
            raise ValueError(
                f"generator: predictor metrics {unknown} are not among objectives {list(self.objectives)}"
            )
        if error_model is not None and ERROR not in self.objectives:
            raise ValueError(
                f"generator: an error model needs {ERROR!r} among objectives {list(self.objectives)}"
            )
        if int(batch_size) < 1:
            raise ValueError(f"generator: batch_size must be >= 1, got {batch_size}")
        self.hypernetwork = _frozen(hypernetwork)
        self.predictor = _frozen(predictor)
        self.error_model = _frozen(error_model)
        self.batch_size = int(batch_size)
        self.device = _module_device(self.hypernetwork)
        # Metrics whose anchor values the input must carry: latency (the embedding) + every predictor metric.
        self.anchor_metrics: tuple[str, ...] = (LATENCY, *[x for x in self.metrics if x != LATENCY])
        items = (
            [(d.name, d) for d in devices] if isinstance(devices, Sequence) else list((devices or {}).items())
        )
        self.devices: dict[str, dict[str, tuple[float, ...]]] = {
            str(name): _device_anchors(str(name), value, self.anchor_metrics, self.space.num_anchors)
            for name, value in items
        }

    # ---- columns ---------------------------------------------------------------------------------------
    @property
    def input_columns(self) -> list[str]:
        cols = [c for m in self.anchor_metrics for c in anchor_columns(m, self.space.num_anchors)]
        return cols + preference_columns(len(self.objectives))

    @property
    def output_columns(self) -> list[str]:
        cols = ["arch"] + ([self.space.benchmark_index_name] if self.space.benchmark_index_name else [])
        predicted = set(self.metrics) | ({ERROR} if self.error_model is not None else set())
        return cols + [f"pred_{o}" for o in self.objectives if o in predicted]

    # ---- inputs ----------------------------------------------------------------------------------------
    def make_input(self, preferences: Any, devices: Sequence[str] | None = None) -> pd.DataFrame:
        """Input rows for every known device (``devices``: a subset, in that order) x every preference
        row (P, M); row ``i`` is device ``i // P``, preference ``i % P``."""
        prefs = np.asarray(preferences, dtype=np.float64)
        if prefs.ndim != 2 or prefs.shape[1] != len(self.objectives):
            raise ValueError(f"generator: preferences must be (P, {len(self.objectives)}), got {prefs.shape}")
        names = list(self.devices) if devices is None else [str(d) for d in devices]
        unknown = [d for d in names if d not in self.devices]
        if unknown:
            raise ValueError(
                f"generator: unknown devices {unknown}; known: {', '.join(self.devices) or 'none'}"
            )
        rows = []
        for name in names:
            anchors = self.devices[name]
            base = {
                c: v
                for m in self.anchor_metrics
                for c, v in zip(anchor_columns(m, self.space.num_anchors), anchors[m], strict=True)
            }
            for p in prefs:
                rows.append({**base, **dict(zip(preference_columns(len(p)), p.tolist(), strict=True))})
        return pd.DataFrame(rows, columns=self.input_columns)

    def example_input(self, prefs_per_device: int = 3) -> pd.DataFrame:
        """Every known device x ``prefs_per_device`` preference rays (an MLflow input example)."""
        if not self.devices:
            raise ValueError("generator: no known devices to build an input example from")
        return self.make_input(preference_rays(prefs_per_device, len(self.objectives)))

    def _parse(self, df: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(preferences (N, M) on the simplex, {metric: anchors (N, 10)}); ValueError naming what is wrong
        (the optional ``top_k`` column is read by :meth:`_top_k`)."""
        if not isinstance(df, pd.DataFrame):
            raise UserError(f"generator input must be a pandas DataFrame, got {type(df).__name__}")
        expected = self.input_columns
        missing = [c for c in expected if c not in df.columns]
        extra = [str(c) for c in df.columns if c not in expected and c != TOP_K]
        if missing or extra:
            raise UserError(
                f"generator input: missing columns {missing}, unexpected columns {extra}; expected "
                f"{self._describe_columns()}"
            )
        labels = list(df.index)
        values = {}
        for c in expected:
            try:
                values[c] = pd.to_numeric(df[c], errors="raise").to_numpy(dtype=np.float64)
            except (ValueError, TypeError):
                raise UserError(f"generator input: column {c!r} is not numeric") from None
        anchors = {}
        for m in self.anchor_metrics:
            a = (
                np.stack([values[c] for c in anchor_columns(m, self.space.num_anchors)], axis=1)
                if labels
                else np.zeros((0, self.space.num_anchors))
            )
            _check_anchor_rows(a, m, labels, self.space.num_anchors)
            anchors[m] = a  # (N, 10)
        pcols = preference_columns(len(self.objectives))
        p = np.stack([values[c] for c in pcols], axis=1) if labels else np.zeros((0, len(pcols)))  # (N, M)
        bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | ~(np.abs(p.sum(axis=1) - 1.0) <= PREF_SUM_TOL)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"generator: input row {labels[i]!r}: preferences {p[i].tolist()} must be finite, non-negative "
                f"and sum to 1 (within {PREF_SUM_TOL})"
            )
        return p / p.sum(axis=1, keepdims=True), anchors

    @staticmethod
    def _top_k(df: pd.DataFrame) -> np.ndarray | None:
        """(N,) shortlist sizes of the optional ``top_k`` column, None without it; ValueError naming the row."""
        if TOP_K not in df.columns:
            return None
        k = pd.to_numeric(df[TOP_K], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(k) | (k != np.round(k)) | (k < 1) | (k > MAX_TOP_K)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"generator: input row {df.index[i]!r}: top_k must be an integer in 1..{MAX_TOP_K}, "
                f"got {df[TOP_K].iloc[i]!r}"
            )
        return k.astype(np.int64)

    def _describe_columns(self) -> str:
        parts = [f"anchor_{m}_0..anchor_{m}_{self.space.num_anchors - 1}" for m in self.anchor_metrics]
        return ", ".join([*parts, f"pref_0..pref_{len(self.objectives) - 1}"])

    # ---- prediction ------------------------------------------------------------------------------------
    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """Argmax architecture and predicted objectives per input row (output index = input index); with a
        ``top_k`` column, the shortlist of each row (module docstring)."""
        prefs, anchors = self._parse(df)
        top_k = self._top_k(df)
        lat = anchors[LATENCY]  # (N, A)
        embedding = np.stack([anchor_embedding(a) for a in lat]) if len(lat) else np.zeros(lat.shape, np.float32)
        if top_k is not None:
            return self._shortlist(df, prefs.astype(np.float32), embedding, anchors, top_k)
        genotypes, metric_out, error_out = self._run(prefs.astype(np.float32), embedding)
        return self._output(genotypes, metric_out, error_out, anchors, df.index)

    def _output(
        self,
        genotypes: Sequence[tuple[int, ...]],
        metric_out: np.ndarray,
        error_out: np.ndarray | None,
        anchors: Mapping[str, np.ndarray],
        index: Any,
    ) -> pd.DataFrame:
        out: dict[str, Any] = {"arch": [self.space.to_string(g) for g in genotypes]}
        if self.space.benchmark_index_name:
            out[self.space.benchmark_index_name] = np.asarray(
                [self.space.benchmark_index(g) for g in genotypes], dtype=np.int64
            )
        for o in self.objectives:
            if o in self.metrics:
                out[f"pred_{o}"] = denormalise(metric_out[:, self.metrics.index(o)], anchors[o])  # per row
            elif o == ERROR and error_out is not None:
                out[f"pred_{o}"] = error_out
        return pd.DataFrame(out, index=index, columns=self.output_columns)

    def _shortlist(
        self,
        df: pd.DataFrame,
        prefs: np.ndarray,
        embedding: np.ndarray,
        anchors: Mapping[str, np.ndarray],
        top_k: np.ndarray,
    ) -> pd.DataFrame:
        """Per input row its ``top_k`` most probable architectures with their predicted objectives."""
        mask = torch.as_tensor(self.space.mask, device=self.device)
        rows, ranks, genotypes, log_probs = [], [], [], []
        with torch.inference_mode():
            r = torch.as_tensor(prefs, device=self.device)  # (N, M)
            logits = self._logits(r, torch.as_tensor(embedding, device=self.device))
            lp = torch.log_softmax(logits.double(), -1).masked_fill(~mask, -torch.inf)  # (N, E, K)
        for i, k in enumerate(top_k.tolist()):
            for rank, g in enumerate(top_k_genotypes(lp[i], int(k), self.space), start=1):
                rows.append(i)
                ranks.append(rank)
                genotypes.append(g)
                log_probs.append(float(sum(lp[i, e, c] for e, c in enumerate(g))))
        idx = np.asarray(rows, dtype=np.int64)
        metric_out, error_out = self._objectives(genotypes, embedding[idx])
        out = self._output(genotypes, metric_out, error_out, {m: a[idx] for m, a in anchors.items()}, None)
        out.insert(0, "log_prob", log_probs)
        out.insert(0, "rank", ranks)
        out.insert(0, "input_row", [df.index[i] for i in rows])
        return out

    def _run(
        self, prefs: np.ndarray, embedding: np.ndarray
    ) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray | None]:
        genotypes: list[tuple[int, ...]] = []
        with torch.inference_mode():
            for s in range(0, len(prefs), self.batch_size):
                r = torch.as_tensor(prefs[s : s + self.batch_size], device=self.device)  # (B, M)
                d = torch.as_tensor(embedding[s : s + self.batch_size], device=self.device)  # (B, 10)
                logits = self._logits(r, d)  # (B, E, K)
                genotypes += [self.space.canonical(row) for row in logits.argmax(dim=-1).cpu().tolist()]  # masked
        return (genotypes, *self._objectives(genotypes, embedding))

    def _logits(self, prefs: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(B, E, K) masked logits H(r, d); ValueError where the hypernetwork is not of the space's shape."""
        logits = self.hypernetwork(prefs, embedding)
        if tuple(logits.shape[1:]) != self.space.shape:
            raise ValueError(f"generator: hypernetwork logits {tuple(logits.shape)}, expected (B, *{self.space.shape})")
        return logits

    def _objectives(
        self, genotypes: Sequence[tuple[int, ...]], embedding: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, metrics) predicted hardware (anchor-normalised) and (N,) error (None without an error model)."""
        n = len(genotypes)
        metric_out = np.zeros((n, len(self.metrics)), dtype=np.float64)
        error_out = np.zeros(n, dtype=np.float64) if self.error_model is not None else None
        with torch.inference_mode():
            for s in range(0, n, self.batch_size):
                batch = genotypes[s : s + self.batch_size]
                arch = torch.from_numpy(self.space.one_hot_batch(batch)).to(self.device)  # (B, D, K)
                d = torch.as_tensor(embedding[s : s + self.batch_size], device=self.device)  # (B, 10)
                if self.predictor is not None:
                    y = self.predictor(arch, d)  # (B, num_metrics)
                    metric_out[s : s + len(batch)] = y.reshape(len(batch), -1).double().cpu().numpy()
                if error_out is not None:
                    err = self.error_model(arch)  # (B,)
                    error_out[s : s + len(batch)] = torch.as_tensor(err).reshape(-1).double().cpu().numpy()
        return metric_out, error_out

    def front(self, preferences: Any, devices: Sequence[str] | None = None) -> pd.DataFrame:
        """Known devices x preferences -> one row each: ``device``, ``pref_*``, ``arch``, the benchmark index,
        ``pred_*`` (the rows :func:`register_architectures` takes)."""
        inp = self.make_input(preferences, devices)
        names = list(self.devices) if devices is None else [str(d) for d in devices]
        per = len(np.asarray(preferences))
        pcols = preference_columns(len(self.objectives))
        out = self.predict(inp)
        head = pd.DataFrame({"device": np.repeat(names, per)}, index=inp.index)
        return pd.concat([head, inp[pcols], out], axis=1)

    def describe(self) -> dict[str, Any]:
        """JSON-able constructor arguments (components by reference), as saved in the spec."""
        return {
            "space": self.space.name,
            "objectives": list(self.objectives),
            "devices": {name: {m: list(v) for m, v in a.items()} for name, a in self.devices.items()},
            "batch_size": self.batch_size,
            "hypernetwork": getattr(self.hypernetwork, "name", type(self.hypernetwork).__name__),
            "metrics": list(self.metrics),
            "error_unit": getattr(self.error_model, "unit", None),
        }


# ---- save / load -----------------------------------------------------------------------------------------




def save_generator(gen: ParetoGenerator, directory: str | Path) -> Path:
    """Write ``generator.json`` (spec) + ``hypernetwork.pt`` (+ ``predictor.pt``, ``error_model.pt``)."""
    if not isinstance(gen.hypernetwork, HypernetworkBase):
        raise ValueError(
            "save_generator: the hypernetwork must be a modnas_ops.hypernetwork model (create_hypernetwork), "
            f"got {type(gen.hypernetwork).__name__}"
        )
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_hypernetwork(gen.hypernetwork, d / HYPERNETWORK_FILE)
    spec: dict[str, Any] = {
        "format": FORMAT_VERSION,
        **gen.describe(),
        "hypernetwork_file": HYPERNETWORK_FILE,
    }
    for key, obj, file in (
        ("predictor", gen.predictor, PREDICTOR_FILE),
        ("error_model", gen.error_model, ERROR_MODEL_FILE),
    ):
        spec[key] = None if obj is None else {"class": _save_component(obj, d / file, key), "file": file}
    text = json.dumps(spec, indent=2)
    atomic_write(d / SPEC_FILE, lambda tmp: Path(tmp).write_text(text))
    return d


def load_generator(directory: str | Path, map_location: str | torch.device = "cpu") -> ParetoGenerator:
    """Inverse of :func:`save_generator` (torch files loaded with ``weights_only=True``)."""
    d = Path(directory)
    spec_path = d / SPEC_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path}: no generator spec (save_generator writes it)")
    try:
        spec = json.loads(spec_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{spec_path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT_VERSION:
        raise ValueError(f"{spec_path}: not a generator spec of format {FORMAT_VERSION}")
    device = torch.device(map_location)

    def component(key: str) -> Any:
        entry = spec.get(key)
        if entry is None:
            return None
        obj = _component_class(entry["class"]).load(d / entry["file"])
        return obj.to(device) if isinstance(obj, nn.Module) else obj

    return ParetoGenerator(
        load_hypernetwork(d / spec.get("hypernetwork_file", HYPERNETWORK_FILE), map_location=device),
        spec["space"],
        objectives=spec["objectives"],
        predictor=component("predictor"),
        error_model=component("error_model"),
        devices=spec.get("devices") or {},
        batch_size=spec.get("batch_size", 1024),
    )


def load_pyfunc(artifacts: Mapping[str, str]) -> ParetoGenerator:
    """Loader for :class:`modnas_ops.tracking.LibraryPyfunc` (``artifacts["generator"]`` = saved directory)."""
    if ARTIFACT_KEY not in artifacts:
        raise ValueError(f"generator pyfunc: artifacts lack {ARTIFACT_KEY!r} (got {sorted(artifacts)})")
    return load_generator(artifacts[ARTIFACT_KEY])


__all__ = [
    "ParetoGenerator",
    "TableErrorModel",
    "load_generator",
    "load_pyfunc",
    "preference_columns",
    "register_component",
    "save_generator",
]

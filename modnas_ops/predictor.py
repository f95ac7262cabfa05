"""MetaPredictor: hardware metrics of an architecture on a device known only by its anchor measurements.

``MetaPredictor.forward(arch (B, E, K), embedding (B, 10)) -> (B, M)`` predicts each metric (``latency_ms``,
optionally ``energy_mj``) in *anchor-normalised* units: ``y = (v - min_a) / (max_a - min_a)`` where ``min_a``
and ``max_a`` are the smallest and largest of the device's 10 anchor values of that metric. The embedding is the
same normalisation of the anchor latencies (:func:`modnas_ops.devices.anchor_embedding`), so an unseen device is
served from its 10 anchor measurements alone and predictions de-normalise to ms / mJ from those anchors
(:meth:`MetaPredictor.predict_ms`). ``arch`` may be soft (softmax) or straight-through one-hot weights; the
output is differentiable with respect to it.

The network (``net``) is chosen from a registry (:func:`create_predictor_net`); the default ``factorised``
multiplies an architecture MLP's features with a device MLP's features (a learned low-rank device x arch
model), which measured best on unseen devices (see ``-m projects.bench_predictor``). Targets are
standardised with statistics fitted once on the training targets and stored as buffers (saved with the model).

Training data: :class:`DeviceMeasurements` per device, from the NB201 table (:func:`measurements_from_table`)
or a profiling table (:func:`measurements_from_profile`); :func:`split_architectures` splits *by
architecture*; :func:`fit_meta_predictor` trains with device mixup (convex and mildly extrapolated blends of
two training devices in normalised units, a valid virtual device because both targets and embeddings are the
same linear normalisation) and early stopping on the validation archs.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .atomic import atomic_torch_save
from .devices import anchor_columns, anchor_embedding, validate_anchor_latencies
from .errors import UserError
from .predictor_baselines import ranking_metrics
from .registry import Registry
from .spaces import Genotype, SearchSpace, get_search_space

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LATENCY = "latency_ms"
ENERGY = "energy_mj"
KNOWN_METRICS = (LATENCY, ENERGY)
ARTIFACT_KEY = "predictor"  # key of the saved model file in the pyfunc's artifacts
ARCH_COLUMN = "arch"
PROFILE_COLUMNS = ("space", "arch", "device", LATENCY, "role")


# ---- networks ---------------------------------------------------------------------------------------------

PREDICTOR_NETS: Registry[Callable[..., nn.Module]] = Registry("predictor net")


def register_predictor_net(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a network available to :func:`create_predictor_net` under ``name``.

    The class is built as ``cls(space, num_metrics, hidden, layers)`` and maps
    ``(arch (B, D, K), embedding (B, A)) -> (B, num_metrics)`` standardised targets."""
    return PREDICTOR_NETS.register(name)


def available_predictor_nets() -> list[str]:
    return PREDICTOR_NETS.names()


def create_predictor_net(name: str, space: SearchSpace, num_metrics: int, hidden: int, layers: int) -> nn.Module:
    return PREDICTOR_NETS.get(name)(space, num_metrics, hidden, layers)


def _mlp(in_features: int, hidden: int, layers: int, out_features: int | None = None) -> nn.Sequential:
    """``layers`` Linear+ReLU blocks of width ``hidden`` (then a Linear to ``out_features`` if given)."""
    mods: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    if out_features is not None:
        mods.append(nn.Linear(width, out_features))
    return nn.Sequential(*mods)


@register_predictor_net("mlp")
class ConcatMLP(nn.Module):
    """MLP on the flattened encoding concatenated with the device embedding."""

    def __init__(self, space: SearchSpace, num_metrics: int, hidden: int, layers: int) -> None:
        super().__init__()
        e, k = space.shape
        self.net = _mlp(e * k + space.num_anchors, hidden, layers, num_metrics)

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([arch.flatten(1), embedding], dim=1))  # (B, M)


@register_predictor_net("factorised")
class FactorisedNet(nn.Module):
    """``W (f(arch) * g(embedding))``: arch features gated elementwise by device features (low-rank model)."""

    def __init__(self, space: SearchSpace, num_metrics: int, hidden: int, layers: int) -> None:
        super().__init__()
        e, k = space.shape
        self.arch_net = _mlp(e * k, hidden, layers)
        self.device_net = _mlp(space.num_anchors, hidden, max(1, layers - 1), hidden)
        self.head = nn.Linear(hidden, num_metrics)

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.arch_net(arch.flatten(1)) * self.device_net(embedding))  # (B, M)


def normalised_adjacency(space: SearchSpace) -> np.ndarray:
    """(D + 2, D + 2) symmetric-normalised adjacency D^-1/2 A D^-1/2 of the space's decision graph
    (:meth:`~modnas_ops.spaces.SearchSpace.decision_graph`: input, the D decisions, output)."""
    adj = np.asarray(space.decision_graph(), dtype=np.float64)
    adj = ((adj + adj.T + np.eye(len(adj))) > 0).astype(np.float64)
    deg = adj.sum(1)
    return (adj / np.sqrt(deg[:, None] * deg[None, :])).astype(np.float32)


@register_predictor_net("gcn")
class CellGCN(nn.Module):
    """HELP-style GCN over the space's decision graph (choice one-hots as node features), mean-pooled, concatenated
    with an MLP of the device embedding, then an MLP head."""

    def __init__(self, space: SearchSpace, num_metrics: int, hidden: int, layers: int) -> None:
        super().__init__()
        _, k = space.shape
        self.register_buffer("adjacency", torch.from_numpy(normalised_adjacency(space)))  # (D+2, D+2)
        self.inp = nn.Linear(k + 2, hidden)
        self.convs = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.device_net = _mlp(space.num_anchors, hidden, 2)
        self.head = _mlp(2 * hidden, hidden, 1, num_metrics)

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        b, e, k = arch.shape
        ends = arch.new_zeros(b, 2, k + 2)  # input / output node types
        ends[:, 0, k] = 1.0
        ends[:, 1, k + 1] = 1.0
        ops = torch.cat([arch, arch.new_zeros(b, e, 2)], dim=2)  # (B, E, K+2)
        h = self.inp(torch.cat([ends[:, :1], ops, ends[:, 1:]], dim=1))  # (B, E+2, H)
        for conv in self.convs:
            h = torch.relu(conv(self.adjacency @ h))
        return self.head(torch.cat([h.mean(1), self.device_net(embedding)], dim=1))  # (B, M)


# ---- the model --------------------------------------------------------------------------------------------


class MetaPredictor(nn.Module):
    """p(arch (B, E, K), device embedding (B, 10)) -> (B, len(metrics)) in anchor-normalised units.

    An ensemble of ``ensemble`` networks of kind ``net`` (averaged). ``target_mean``/``target_std`` (M,) are
    buffers fitted once (:meth:`set_target_statistics`) and saved with the weights."""

    def __init__(
        self,
        space: str = "nb201",
        metrics: Sequence[str] = (LATENCY,),
        net: str = "factorised",
        hidden: int = 128,
        layers: int = 3,
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        self.space = get_search_space(space)
        self.metrics = tuple(str(m) for m in metrics)
        if not self.metrics or self.metrics[0] != LATENCY or len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"MetaPredictor: metrics must start with {LATENCY!r} and be distinct, got {metrics}")
        unknown = [m for m in self.metrics if m not in KNOWN_METRICS]
        if unknown:
            raise ValueError(f"MetaPredictor: unknown metric {unknown[0]!r}; known: {', '.join(KNOWN_METRICS)}")
        if int(hidden) < 1 or int(layers) < 1 or int(ensemble) < 1:
            raise ValueError(f"MetaPredictor: hidden, layers, ensemble must be >= 1, got {hidden, layers, ensemble}")
        self.hparams: dict[str, Any] = {
            "space": self.space.name,
            "metrics": list(self.metrics),
            "net": str(net),
            "hidden": int(hidden),
            "layers": int(layers),
            "ensemble": int(ensemble),
        }
        m = len(self.metrics)
        self.nets = nn.ModuleList(
            create_predictor_net(net, self.space, m, int(hidden), int(layers)) for _ in range(int(ensemble))
        )
        self.register_buffer("target_mean", torch.zeros(m))  # (M,)
        self.register_buffer("target_std", torch.ones(m))  # (M,)

    # ---- forward ---------------------------------------------------------------------------------------
    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(B, E, K) encodings (one-hot, soft or straight-through) x (B, 10) embeddings -> (B, M)."""
        if arch.dim() != 3 or tuple(arch.shape[1:]) != self.space.shape:
            raise ValueError(f"MetaPredictor: arch must be (B, *{self.space.shape}), got {tuple(arch.shape)}")
        a = self.space.num_anchors
        if embedding.dim() != 2 or embedding.shape != (arch.shape[0], a):
            raise ValueError(f"MetaPredictor: embedding must be ({arch.shape[0]}, {a}), got {tuple(embedding.shape)}")
        z = torch.stack([net(arch, embedding) for net in self.nets]).mean(0)  # (B, M) standardised
        return z * self.target_std + self.target_mean

    def set_target_statistics(self, y: np.ndarray | torch.Tensor) -> None:
        """Fit the target standardisation once from training targets (N, M) (nan = missing)."""
        t = torch.as_tensor(np.asarray(y, dtype=np.float64))
        if t.dim() != 2 or t.shape[1] != len(self.metrics):
            raise ValueError(f"set_target_statistics: targets must be (N, {len(self.metrics)}), got {tuple(t.shape)}")
        for j in range(t.shape[1]):
            col = t[:, j][torch.isfinite(t[:, j])]
            if col.numel() < 2:
                raise ValueError(f"set_target_statistics: fewer than 2 values of {self.metrics[j]}")
            self.target_mean[j] = col.mean().to(self.target_mean.dtype)
            self.target_std[j] = col.std().clamp_min(1e-6).to(self.target_std.dtype)

    # ---- inputs ------------------------------------------------------------------------------------------
    def encode(self, archs: Sequence[str | Sequence[int]]) -> torch.Tensor:
        """(N, E, K) one-hot encodings of architecture strings or genotypes (ValueError on a bad one)."""
        genotypes = [self.space.from_string(a) if isinstance(a, str) else self.space.validate(a) for a in archs]
        device = self.target_mean.device
        return torch.from_numpy(self.space.one_hot_batch(genotypes)).to(device)

    @torch.no_grad()
    def predict_normalised(
        self, archs: Sequence[str | Sequence[int]] | torch.Tensor, embedding: np.ndarray, batch_size: int = 4096
    ) -> np.ndarray:
        """(N, M) anchor-normalised predictions for one device embedding (10,) or one per arch (N, 10)."""
        x = archs if isinstance(archs, torch.Tensor) else self.encode(archs)  # (N, E, K)
        emb = torch.as_tensor(np.asarray(embedding, dtype=np.float32), device=x.device)
        if emb.dim() == 1:
            emb = emb.expand(x.shape[0], -1)
        was_training = self.training
        self.eval()
        try:
            out = [self(x[i : i + batch_size], emb[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        finally:
            self.train(was_training)
        y = torch.cat(out).cpu().numpy().astype(np.float64) if out else np.zeros((0, len(self.metrics)))
        bad = ~np.isfinite(y)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            who = getattr(self, "source", "MetaPredictor")
            raise ValueError(
                f"{who}: non-finite {self.metrics[j]} prediction ({y[i, j]}) for input row {i} "
                f"({int(bad.any(axis=1).sum())} of {len(y)} rows); its weights or this device's embedding overflow"
            )
        return y

    def predict(
        self,
        archs: Sequence[str | Sequence[int]],
        anchor_latency_ms: Sequence[float] | np.ndarray,
        anchor_values: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw-unit predictions ``{metric: (N,)}`` on a device given by its 10 anchor latencies (ms); other
        metrics are de-normalised with their own anchors in ``anchor_values`` (skipped when absent)."""
        n = self.space.num_anchors
        lat = validate_anchor_latencies(anchor_latency_ms, what="anchor_latency_ms", count=n)
        anchors = {LATENCY: lat}
        for metric, values in (anchor_values or {}).items():
            if metric not in self.metrics:
                raise ValueError(f"predict: the model has no metric {metric!r} (metrics: {', '.join(self.metrics)})")
            if metric != LATENCY:
                anchors[metric] = validate_anchor_latencies(values, what=f"anchor {metric}", count=n)
        y = self.predict_normalised(archs, anchor_embedding(lat))  # (N, M)
        return {m: denormalise(y[:, j], anchors[m]) for j, m in enumerate(self.metrics) if m in anchors}

    def predict_ms(
        self, archs: Sequence[str | Sequence[int]], anchor_latency_ms: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """(N,) predicted latency in ms on the device whose 10 anchor latencies (ms) are given."""
        return self.predict(archs, anchor_latency_ms)[LATENCY]

    # ---- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Atomic ``torch.save`` of hyper-parameters, space description and weights (+ target statistics)."""
        p = Path(path)
        bad = _non_finite_tensor(self.state_dict())
        if bad:
            raise ValueError(f"MetaPredictor.save {p}: {bad} holds NaN or inf (training diverged); not saved")
        p.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT_VERSION,
            "hparams": dict(self.hparams),
            "space_description": self.space.describe(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }
        atomic_torch_save(payload, p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> MetaPredictor:
        """Inverse of :meth:`save` (``weights_only=True``); returned in eval mode. Every problem with the file
        (missing, not a predictor, other hyper-parameters or shapes, NaN/inf weights) is a one-line
        :class:`~modnas_ops.errors.UserError` naming it."""
        p = Path(path)
        if not p.is_file():
            raise PredictorFileNotFoundError(f"{p}: no such predictor file")
        try:
            payload = torch.load(p, map_location=map_location, weights_only=True)
        except Exception as e:  # any unpickling failure means "not a predictor file"
            raise UserError(f"{p}: not a MetaPredictor file ({type(e).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or "hparams" not in payload:
            raise UserError(f"{p}: not a MetaPredictor file of format {FORMAT_VERSION}")
        hparams, state = payload["hparams"], payload.get("state_dict")
        if not isinstance(hparams, dict) or not isinstance(state, dict):
            raise UserError(f"{p}: not a MetaPredictor file (hparams or state_dict is not a mapping)")
        try:
            model = cls(**hparams)
        except (TypeError, ValueError) as e:
            raise UserError(f"{p}: unusable hyper-parameters {hparams}: {str(e).splitlines()[0]}") from None
        if model.space.describe() != payload.get("space_description"):
            raise UserError(f"{p}: saved for a different {model.space.name} space description")
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, ValueError, AttributeError) as e:
            first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
            raise UserError(f"{p}: weights do not fit its hyper-parameters ({first})") from None
        bad = _non_finite_tensor(model.state_dict())
        if bad:
            raise UserError(f"{p}: {bad} holds NaN or inf; the file is unusable (retrain or restore it)")
        model.source = str(p)
        return model.to(map_location).eval()


class PredictorFileNotFoundError(UserError, FileNotFoundError):
    """A predictor path that names no file (a ``UserError`` that is also a ``FileNotFoundError``)."""


def _non_finite_tensor(state: Mapping[str, Any]) -> str:
    """Name of the first floating-point tensor of ``state`` holding NaN or inf, else ``""``."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return ""


MIN_FRACTION_OF_FASTEST_ANCHOR = 0.01


def denormalise(y: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Anchor-normalised values back to raw units: ``min_a + y * (max_a - min_a)``, at least
    ``MIN_FRACTION_OF_FASTEST_ANCHOR * min_a``: below the fastest anchor the linear map extrapolates, and for
    a device whose anchors span much more than their minimum it can cross zero; a latency or energy is
    positive, so such predictions are clipped (the search's objectives use the unclipped normalised values)."""
    a = np.asarray(anchors, dtype=np.float64)  # (10,) for all of y, or (N, 10): one device per value
    lo, hi = a.min(axis=-1), a.max(axis=-1)
    raw = lo + np.asarray(y, dtype=np.float64) * (hi - lo)
    return np.maximum(raw, MIN_FRACTION_OF_FASTEST_ANCHOR * lo)


def normalise(values: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Raw values in anchor-normalised units: ``(v - min_a) / (max_a - min_a)``."""
    a = np.asarray(anchors, dtype=np.float64)
    return (np.asarray(values, dtype=np.float64) - a.min()) / (a.max() - a.min())


# ---- training data ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DeviceMeasurements:
    """Measured architectures of one device: genotypes (N, E), raw values per metric (N,) (nan = missing)
    and the raw anchor values per metric (10,) in the space's ``anchors()`` order."""

    name: str
    genotypes: np.ndarray  # (N, E) int64
    values: dict[str, np.ndarray]  # metric -> (N,)
    anchor_values: dict[str, np.ndarray]  # metric -> (10,)
    split: str = "train"  # "train" (used for fitting) or "test" (zero-shot evaluation only)
    embedding: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if LATENCY not in self.anchor_values or LATENCY not in self.values:
            raise ValueError(f"device {self.name!r}: no {LATENCY} measurements")
        object.__setattr__(
            self,
            "anchor_values",
            {
                m: validate_anchor_latencies(a, f"device {self.name!r} anchor {m}")
                for m, a in self.anchor_values.items()
            },
        )
        object.__setattr__(self, "embedding", anchor_embedding(self.anchor_values[LATENCY]))
        for m, v in self.values.items():
            if np.shape(v) != (len(self.genotypes),):
                raise ValueError(f"device {self.name!r}: {m} has {np.shape(v)} values for {len(self.genotypes)} archs")

    def normalised(self, metric: str) -> np.ndarray:
        """(N,) targets in anchor-normalised units (all nan when the metric or its anchors are missing)."""
        if metric not in self.values or metric not in self.anchor_values:
            return np.full(len(self.genotypes), np.nan)
        return normalise(self.values[metric], self.anchor_values[metric])

    def subset(self, rows: np.ndarray) -> DeviceMeasurements:
        return DeviceMeasurements(
            self.name, self.genotypes[rows], {m: v[rows] for m, v in self.values.items()},
            self.anchor_values, self.split,
        )  # fmt: skip


def measurements_from_table(table: Any, devices: Sequence[str] | None = None) -> list[DeviceMeasurements]:
    """Every architecture of a :class:`modnas_ops.benchmarks.BenchmarkTable` on ``devices`` (default: train
    then test devices), latency only; ``split`` is the device's split in the table."""
    names = list(devices) if devices is not None else list(table.devices)
    out = []
    for d in names:
        lat = np.asarray(table.latency(d), dtype=np.float64)  # ValueError naming known devices
        out.append(
            DeviceMeasurements(
                d,
                np.asarray(table.genotypes, dtype=np.int64),
                {LATENCY: lat},
                {LATENCY: np.asarray(table.anchor_latency_ms(d), dtype=np.float64)},
                split="test" if d in table.test_devices else "train",
            )
        )
    return out


def measurements_from_profile(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    space: str | SearchSpace | None = None,
    test_devices: Sequence[str] = (),
    drop_constant_output: bool = True,
    source: str = "profiling table",
) -> list[DeviceMeasurements]:
    """Devices of a profiling table (rows of ``profiling.campaign.read_table`` or a DataFrame with columns
    ``space, arch, device, latency_ms, role`` [+ ``energy_mj``, ``host``]). The anchors of each device are its
    rows with ``role == "anchor"`` and must cover all 10 anchors of the space. A device name measured on
    several hosts (or network sizes) becomes ``<device>@<host>`` (``@<network>``). ``test_devices`` are marked
    for evaluation only. ``drop_constant_output``: leave out architectures whose output ignores the input
    (``space.constant_output``). Exported without inputs, they time as an empty graph (~0.007 ms against
    >= 0.2 ms for any live cell on cpu-ort-t1-b32), and a predictor fitted with them spreads that cliff onto
    their live neighbours. On the 50-arch quick profile, the cheapest live cells were predicted at 0.0033 ms
    with them and 0.26-0.39 ms without them (0.20 ms measured). They have chance accuracy and are never
    chosen.

    One row per (device, arch) after the host/network split: repeated rows that are identical are kept once
    (with a warning); a pair measured twice with different values is a ``UserError`` naming it (no median of
    measurements that disagree). ``source`` (e.g. the table's path) prefixes every error line."""
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        raise UserError(f"{source}: no rows (a header alone, or nothing profiled yet)")
    missing = [c for c in PROFILE_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{source}: lacks columns: {', '.join(missing)}")
    spaces = sorted(set(df["space"].astype(str)))
    if space is None:
        if len(spaces) != 1:
            raise UserError(f"{source}: holds several spaces ({', '.join(spaces)}); name one")
        space = spaces[0]
    sp = get_search_space(space) if isinstance(space, str) else space
    df = df[df["space"].astype(str) == sp.name]
    if df.empty:
        raise UserError(f"{source}: no rows of space {sp.name!r} (has {', '.join(spaces)})")
    df["device"] = df["device"].astype(str)
    for col in ("host", "network"):  # one device name measured on several hosts / network sizes: keep apart
        if col in df.columns:
            multi = df["device"].map(df.groupby("device")[col].nunique()) > 1
            df.loc[multi, "device"] = df.loc[multi, "device"] + "@" + df.loc[multi, col].astype(str)
    metrics = [LATENCY] + ([ENERGY] if ENERGY in df.columns else [])
    for m in metrics:
        df[m] = pd.to_numeric(df[m], errors="coerce")
    df = _unique_measurements(df, source)
    anchors = [sp.to_string(g) for g in sp.anchors()]
    unknown_tests = sorted(set(test_devices) - set(df["device"]))
    if unknown_tests:
        raise UserError(f"test_devices: test device {unknown_tests[0]!r} is not in {source}")
    out = []
    for name, g in df.groupby("device", sort=True):
        g = g.sort_values("arch", kind="stable").reset_index(drop=True)
        try:
            genotypes = np.asarray([sp.from_string(a) for a in g["arch"]], dtype=np.int64)
        except ValueError as e:
            raise UserError(f"{source}, device {name!r}: {e}") from None
        if drop_constant_output:
            live = np.array([not sp.constant_output(x) for x in genotypes], dtype=bool)
            g, genotypes = g[live].reset_index(drop=True), genotypes[live]
        by_arch = g.set_index("arch")
        have = [a in by_arch.index for a in anchors]
        if not all(have):
            raise UserError(
                f"{source}, device {name!r}: {have.count(False)} of the {sp.num_anchors} anchor archs are missing"
            )
        lat = g[LATENCY].to_numpy(np.float64)
        if not np.all(np.isfinite(lat) & (lat > 0)):
            raise UserError(f"{source}, device {name!r}: latency_ms must be finite and > 0 on every row")
        anchor_values = {LATENCY: by_arch.loc[anchors, LATENCY].to_numpy(np.float64)}
        values = {LATENCY: lat}
        if ENERGY in metrics:
            e_anchor = by_arch.loc[anchors, ENERGY].to_numpy(np.float64)
            energy = g[ENERGY].to_numpy(np.float64)
            if np.all(np.isfinite(e_anchor) & (e_anchor > 0)) and np.ptp(e_anchor) > 0:
                anchor_values[ENERGY] = e_anchor
                values[ENERGY] = energy
        out.append(
            DeviceMeasurements(str(name), genotypes, values, anchor_values, "test" if name in test_devices else "train")
        )
    return out


def _unique_measurements(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """``df`` with one row per (device, arch): identical repeats dropped (warning), differing ones refused."""
    exact = df.duplicated(keep="first")
    if exact.any():
        log.warning("%s: ignoring %d exact duplicate row(s)", source, int(exact.sum()))
        df = df[~exact]
    twice = df.duplicated(["device", "arch"], keep=False)
    if twice.any():
        device, arch = df.loc[twice, ["device", "arch"]].iloc[0]
        same = df[(df["device"] == device) & (df["arch"] == arch)]
        values = ", ".join(f"{v:g}" for v in same[LATENCY])
        raise UserError(
            f"{source}: device {device!r} arch {arch!r} is measured {len(same)} times with different values "
            f"(latency_ms {values}); keep one row per (device, arch)"
        )
    return df


# ---- splits -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchSplit:
    """Disjoint architecture index sets (``space.index``) for training, validation (early stopping), test."""

    train: frozenset[int]
    valid: frozenset[int]
    test: frozenset[int]

    def of(self, part: str) -> frozenset[int]:
        if part not in ("train", "valid", "test"):
            raise ValueError(f"split part must be train, valid or test, got {part!r}")
        return getattr(self, part)

    def rows(self, space: SearchSpace, genotypes: np.ndarray, part: str) -> np.ndarray:
        """Row indices of ``genotypes`` (N, E) whose architecture lies in ``part``."""
        keys = arch_keys(space, genotypes)
        s = self.of(part)
        return np.flatnonzero(np.fromiter((k in s for k in keys), dtype=bool, count=len(keys)))


def arch_keys(space: SearchSpace, genotypes: np.ndarray) -> np.ndarray:
    """(N,) int64 ``space.index`` of each genotype row (vectorised base-K)."""
    return space.index_batch(genotypes)


def split_architectures(
    space: SearchSpace,
    devices: Sequence[DeviceMeasurements],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> ArchSplit:
    """Split the architectures measured on any device into train/valid/test by a seeded permutation; the
    anchors always go to train (every device measures them)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    anchors = {space.index(g) for g in space.anchors()}
    keys = np.unique(np.concatenate([arch_keys(space, d.genotypes) for d in devices]))
    rest = np.array(sorted(set(keys.tolist()) - anchors), dtype=np.int64)
    rest = rest[np.random.default_rng(seed).permutation(len(rest))]
    n_test = round(fractions[2] * len(rest))
    n_valid = round(fractions[1] * len(rest))
    test, valid, train = rest[:n_test], rest[n_test : n_test + n_valid], rest[n_test + n_valid :]
    return ArchSplit(
        frozenset(train.tolist()) | frozenset(anchors & set(keys.tolist())),
        frozenset(valid.tolist()),
        frozenset(test.tolist()),
    )


# ---- training ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of :func:`fit_meta_predictor`."""

    net: str = "factorised"
    hidden: int = 128
    layers: int = 3
    ensemble: int = 1
    epochs: int = 60
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 10  # epochs without a better validation loss before stopping
    mixup: float = 0.5  # fraction of samples replaced by a blend of two training devices
    mixup_extrapolation: float = 0.25  # blend weight drawn from U(-x, 1 + x)
    max_train_archs: int = 0  # per device, anchors included; 0 = every training arch
    seed: int = 0

    def __post_init__(self) -> None:
        if self.net not in PREDICTOR_NETS:
            raise ValueError(f"net {self.net!r} unknown; available: {', '.join(available_predictor_nets())}")
        for name in ("hidden", "layers", "ensemble", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0 or self.patience < 1:
            raise ValueError("lr must be > 0, weight_decay >= 0, patience >= 1")
        if not 0.0 <= self.mixup <= 1.0 or self.mixup_extrapolation < 0:
            raise ValueError(
                f"mixup must lie in [0, 1] and mixup_extrapolation >= 0, got {self.mixup}, {self.mixup_extrapolation}"
            )
        if self.max_train_archs < 0:
            raise ValueError(f"max_train_archs must be >= 0 (0 = all), got {self.max_train_archs}")


@dataclass
class FitResult:
    model: MetaPredictor
    split: ArchSplit
    history: list[dict[str, float]]  # per epoch: train_loss, valid_loss
    best_epoch: int
    wall_time_s: float
    train_devices: tuple[str, ...]
    num_train_archs: dict[str, int]


@dataclass(frozen=True)
class _Matrix:
    """Training data as an (A, D, M) target tensor over the union of archs (nan = not measured)."""

    x: torch.Tensor  # (A, E, K)
    y: torch.Tensor  # (A, D, M) anchor-normalised
    emb: torch.Tensor  # (D, 10)


def _matrix(
    space: SearchSpace, devices: Sequence[DeviceMeasurements], metrics: Sequence[str], rows: Sequence[np.ndarray]
) -> _Matrix:
    keys = np.unique(np.concatenate([arch_keys(space, d.genotypes[r]) for d, r in zip(devices, rows, strict=True)]))
    pos = {int(k): i for i, k in enumerate(keys)}
    y = np.full((len(keys), len(devices), len(metrics)), np.nan, dtype=np.float32)
    for j, (d, r) in enumerate(zip(devices, rows, strict=True)):
        at = np.array([pos[int(k)] for k in arch_keys(space, d.genotypes[r])], dtype=np.int64)
        for m, metric in enumerate(metrics):
            y[at, j, m] = d.normalised(metric)[r]
    genotypes = [space.from_index(int(k)) for k in keys]
    return _Matrix(
        torch.from_numpy(space.one_hot_batch(genotypes)),
        torch.from_numpy(y),
        torch.from_numpy(np.stack([d.embedding for d in devices])),
    )


def _masked_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mask = torch.isfinite(y)
    return ((pred - torch.where(mask, y, pred.detach())) ** 2)[mask].mean() if mask.any() else pred.sum() * 0.0


def fit_meta_predictor(
    devices: Sequence[DeviceMeasurements],
    config: FitConfig = FitConfig(),
    split: ArchSplit | None = None,
    space: str | SearchSpace = "nb201",
    metrics: Sequence[str] | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    split_seed: int = 0,
) -> FitResult:
    """Train a :class:`MetaPredictor` on the ``split == "train"`` devices' training archs; early stopping on
    their validation archs (masked MSE in standardised units); returns the best-epoch model in eval mode."""
    sp = get_search_space(space) if isinstance(space, str) else space
    device = device or torch.device("cpu")
    train_devs = [d for d in devices if d.split == "train"]
    if not train_devs:
        raise ValueError("fit_meta_predictor: no training devices (split == 'train')")
    if metrics is None:
        metrics = [LATENCY] + ([ENERGY] if all(ENERGY in d.anchor_values for d in train_devs) else [])
    metrics = tuple(metrics)
    for m in metrics:
        if not any(m in d.anchor_values for d in train_devs):
            raise ValueError(f"fit_meta_predictor: no training device has {m} measurements")
    split = split or split_architectures(sp, devices, seed=split_seed)
    rng = np.random.default_rng(config.seed)
    anchor_keys = {sp.index(g) for g in sp.anchors()}
    train_rows, valid_rows = [], []
    for d in train_devs:
        r = split.rows(sp, d.genotypes, "train")
        if config.max_train_archs and len(r) > config.max_train_archs:
            is_anchor = np.isin(arch_keys(sp, d.genotypes[r]), list(anchor_keys))
            others = rng.permutation(r[~is_anchor])[: max(0, config.max_train_archs - int(is_anchor.sum()))]
            r = np.sort(np.concatenate([r[is_anchor], others]))
        train_rows.append(r)
        valid_rows.append(split.rows(sp, d.genotypes, "valid"))
    if sum(len(r) for r in valid_rows) == 0:
        raise ValueError("fit_meta_predictor: the split leaves no validation archs on the training devices")
    train = _matrix(sp, train_devs, metrics, train_rows)
    valid = _matrix(sp, train_devs, metrics, valid_rows)

    torch.manual_seed(config.seed)
    model = MetaPredictor(sp.name, metrics, config.net, config.hidden, config.layers, config.ensemble)
    model.set_target_statistics(train.y.reshape(-1, len(metrics)).numpy())
    model.to(device)
    train = _Matrix(train.x.to(device), train.y.to(device), train.emb.to(device))
    valid = _Matrix(valid.x.to(device), valid.y.to(device), valid.emb.to(device))
    std, mean = model.target_std, model.target_mean

    # samples = measured (arch, device) pairs
    a_idx, d_idx = torch.nonzero(torch.isfinite(train.y[..., 0]), as_tuple=True)
    num_devices = train.emb.shape[0]
    steps_per_epoch = max(1, math.ceil(len(a_idx) / config.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    va_a, va_d = torch.nonzero(torch.isfinite(valid.y[..., 0]), as_tuple=True)

    def valid_loss() -> float:
        model.eval()
        with torch.no_grad():
            total, count = 0.0, 0
            for i in range(0, len(va_a), 8192):
                a, dd = va_a[i : i + 8192], va_d[i : i + 8192]
                y = valid.y[a, dd]
                mask = torch.isfinite(y)
                z = (model(valid.x[a], valid.emb[dd]) - mean) / std
                total += float((((z - (y - mean) / std) ** 2)[mask]).sum())
                count += int(mask.sum())
        model.train()
        return total / max(count, 1)

    history: list[dict[str, float]] = []
    best, best_epoch, best_state, stale = math.inf, -1, copy.deepcopy(model.state_dict()), 0
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc="fit MetaPredictor", disable=not progress, leave=False)
    model.train()
    for epoch in bar:
        order = torch.randperm(len(a_idx), generator=gen).to(device)
        running, batches = 0.0, 0
        for b in range(steps_per_epoch):
            j = order[b * config.batch_size : (b + 1) * config.batch_size]
            a, dd = a_idx[j], d_idx[j]
            x, emb, y = train.x[a], train.emb[dd], train.y[a, dd]  # (b, E, K), (b, 10), (b, M)
            if config.mixup > 0 and num_devices > 1:
                d2 = torch.randint(0, num_devices, (len(j),), generator=gen).to(device)
                y2 = train.y[a, d2]
                ok = torch.isfinite(y2[:, 0]) & (torch.rand(len(j), generator=gen).to(device) < config.mixup)
                lam = torch.rand(len(j), generator=gen).to(device) * (1 + 2 * config.mixup_extrapolation)
                lam = torch.where(ok, lam - config.mixup_extrapolation, torch.ones_like(lam))[:, None]
                emb = lam * emb + (1 - lam) * train.emb[d2]
                y = torch.where(ok[:, None], lam * y + (1 - lam) * y2, y)
            z = (model(x, emb) - mean) / std
            loss = _masked_mse(z, (y - mean) / std)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
            batches += 1
        vl = valid_loss()
        history.append({"epoch": epoch, "train_loss": running / batches, "valid_loss": vl})
        bar.set_postfix(train=f"{running / batches:.4f}", valid=f"{vl:.4f}")
        if vl < best - 1e-6:
            best, best_epoch, best_state, stale = vl, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                log.info("early stop at epoch %d (best %d, valid loss %.4f)", epoch, best_epoch, best)
                break
    model.load_state_dict(best_state)
    model.eval()
    wall = time.perf_counter() - start
    log.info("MetaPredictor (%s) fitted in %.1f s; best epoch %d, valid loss %.4f", config.net, wall, best_epoch, best)
    return FitResult(
        model=model,
        split=split,
        history=history,
        best_epoch=best_epoch,
        wall_time_s=wall,
        train_devices=tuple(d.name for d in train_devs),
        num_train_archs={d.name: len(r) for d, r in zip(train_devs, train_rows, strict=True)},
    )


# ---- evaluation -------------------------------------------------------------------------------------------


def evaluate_predictor(
    model: MetaPredictor,
    devices: Sequence[DeviceMeasurements],
    split: ArchSplit | None = None,
    part: str = "test",
    metric: str = LATENCY,
) -> list[dict[str, Any]]:
    """Per device: Kendall tau, Spearman and MAPE (percent, raw units from the anchors) of ``metric`` on the
    archs of ``part`` (all archs when ``split`` is None). One row per device with >= 2 such archs."""
    if metric not in model.metrics:
        raise ValueError(f"evaluate_predictor: the model has no metric {metric!r}")
    j = model.metrics.index(metric)
    rows = []
    for d in devices:
        if metric not in d.values or metric not in d.anchor_values:
            continue
        r = np.arange(len(d.genotypes)) if split is None else split.rows(model.space, d.genotypes, part)
        true = d.values[metric][r]
        ok = np.isfinite(true)
        r, true = r[ok], true[ok]
        if len(r) < 2:
            continue
        y = model.predict_normalised(torch.from_numpy(model.space.one_hot_batch(d.genotypes[r].tolist())), d.embedding)
        pred = denormalise(y[:, j], d.anchor_values[metric])
        rows.append({"device": d.name, "split": d.split, "num_archs": len(r), **ranking_metrics(pred, true)})
    return rows


# ---- zero-shot serving ------------------------------------------------------------------------------------


def predict_latency_ms(
    model: MetaPredictor, anchor_latency_ms: Sequence[float] | np.ndarray, archs: Sequence[str | Genotype]
) -> np.ndarray:
    """(N,) latency in ms of ``archs`` on a device known only by its 10 anchor latencies (ms)."""
    if len(archs) == 0:
        raise ValueError("predict_latency_ms: no architectures given")
    return model.predict_ms(archs, anchor_latency_ms)


class LatencyService:
    """Plain pyfunc body: ``predict(DataFrame)`` with columns ``anchor_latency_ms_0..{A-1}`` (A = the space's
    anchors) and ``arch`` (one device per row) -> DataFrame with ``latency_ms`` (+ every other metric of the
    model whose ``anchor_<metric>_*`` columns are given). Wrapped by :class:`modnas_ops.tracking.LibraryPyfunc`."""

    def __init__(self, model: MetaPredictor) -> None:
        self.model = model.eval()
        self.num_anchors = model.space.num_anchors

    @property
    def input_columns(self) -> list[str]:
        return [*anchor_columns(LATENCY, self.num_anchors), ARCH_COLUMN]

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"predictor pyfunc: expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in self.input_columns if c not in df.columns]
        if missing:
            raise ValueError(f"predictor pyfunc: input lacks columns {', '.join(missing)}")
        archs = df[ARCH_COLUMN].astype(str).tolist()
        n = self.num_anchors
        lat_anchors = df[anchor_columns(LATENCY, n)].to_numpy(np.float64)  # (N, A)
        for i, a in enumerate(lat_anchors):
            validate_anchor_latencies(a, what=f"input row {i} anchor_latency_ms", count=n)
        x = self.model.encode(archs)  # (N, D, K)
        emb = np.stack([anchor_embedding(a) for a in lat_anchors]) if len(df) else np.zeros((0, n))
        y = self.model.predict_normalised(x, emb)  # (N, M)
        out = {}
        for j, metric in enumerate(self.model.metrics):
            cols = anchor_columns(metric, n)
            if not all(c in df.columns for c in cols):
                continue  # a metric's anchors not given: not predicted
            anchors = df[cols].to_numpy(np.float64)  # (N, A)
            for i, a in enumerate(anchors):
                validate_anchor_latencies(a, what=f"input row {i} anchor_{metric}", count=n)
            out[metric] = denormalise(y[:, j], anchors)
        return pd.DataFrame(out, index=df.index)

    def example_input(self, anchor_latency_ms: Sequence[float], archs: Sequence[str]) -> pd.DataFrame:
        """An input DataFrame: one row per arch, all on the device with these anchors."""
        a = validate_anchor_latencies(anchor_latency_ms, what="anchor_latency_ms", count=self.num_anchors)
        df = pd.DataFrame(np.tile(a, (len(archs), 1)), columns=anchor_columns(LATENCY, self.num_anchors))
        df[ARCH_COLUMN] = list(archs)
        return df


def load_pyfunc(artifacts: Mapping[str, str]) -> LatencyService:
    """Loader for :class:`modnas_ops.tracking.LibraryPyfunc` (``artifacts["predictor"]`` = saved model file)."""
    if ARTIFACT_KEY not in artifacts:
        raise ValueError(f"predictor pyfunc: artifacts lack {ARTIFACT_KEY!r} (got {sorted(artifacts)})")
    return LatencyService(MetaPredictor.load(artifacts[ARTIFACT_KEY]))


def pip_requirements() -> list[str]:
    """torch pinned to the installed release (local tag dropped), numpy, pandas, scipy, scikit-learn."""
    return [f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas", "scipy", "scikit-learn", "tqdm"]

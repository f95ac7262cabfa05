"""Training data of the MetaPredictor: measurements per device (NB201 or profiling table), splits by arch."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..devices import anchor_embedding, validate_anchor_latencies
from ..errors import UserError
from ..spaces import SearchSpace, get_search_space
from .model import LATENCY, OPTIONAL_METRICS, PROFILE_COLUMNS, normalise

log = logging.getLogger(__name__)

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
    """Every architecture of a :class:`modnas_ops.benchmarks.BenchmarkTable` or
    :class:`modnas_ops.latency_table.LatencyTable` on ``devices`` (default: train
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


def share_metric(devices: Sequence[DeviceMeasurements], metric: str, source: str) -> list[DeviceMeasurements]:
    """Devices without their own ``metric`` take device ``source``'s: its anchor values, and its measured
    values for the architectures it measured (added to the device's list with no other metric where the
    device lacks them). For a property of the network that one host measures for all (e.g. ``memory_mb`` of
    this machine's onnxruntime for the latency table's GPUs, whose table has latency only); UserError when
    ``source`` is not a device or lacks the metric."""
    by_name = {d.name: d for d in devices}
    src = by_name.get(source)
    if src is None:
        raise UserError(f"shared_metrics: {metric} source {source!r} is not a device (have {', '.join(by_name)})")
    if metric not in src.anchor_values:
        raise UserError(f"shared_metrics: device {source!r} has no {metric} measurements")
    keys = [tuple(int(x) for x in g) for g in src.genotypes]
    value_of = dict(zip(keys, src.values[metric].tolist(), strict=True))
    out = []
    for d in devices:
        if metric in d.anchor_values:
            out.append(d)
            continue
        have = {tuple(int(x) for x in g) for g in d.genotypes}
        extra = [k for k in keys if k not in have]
        genotypes = np.concatenate([d.genotypes, np.asarray(extra, dtype=np.int64).reshape(-1, d.genotypes.shape[1])])
        nan = np.full(len(extra), np.nan)
        values = {m: np.concatenate([v, nan]) for m, v in d.values.items()}
        values[metric] = np.asarray([value_of.get(tuple(int(x) for x in g), np.nan) for g in genotypes])
        anchors = {**d.anchor_values, metric: src.anchor_values[metric]}
        out.append(DeviceMeasurements(d.name, genotypes, values, anchors, d.split))
    return out


def measurements_from_profile(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    space: str | SearchSpace | None = None,
    test_devices: Sequence[str] = (),
    drop_constant_output: bool = True,
    source: str = "profiling table",
) -> list[DeviceMeasurements]:
    """Devices of a profiling table (rows of ``profiling.campaign.read_table`` or a DataFrame with columns
    ``space, arch, device, latency_ms, role`` [+ ``energy_mj``, ``memory_mb``, ``host``]). The anchors of each
    device are its rows with ``role == "anchor"`` and must cover all 10 anchors of the space. A device name measured on
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
    metrics = [LATENCY] + [m for m in OPTIONAL_METRICS if m in df.columns]
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
        for m in metrics[1:]:  # energy / memory where the device's anchors have them
            m_anchor = by_arch.loc[anchors, m].to_numpy(np.float64)
            if np.all(np.isfinite(m_anchor) & (m_anchor > 0)) and np.ptp(m_anchor) > 0:
                anchor_values[m] = m_anchor
                values[m] = g[m].to_numpy(np.float64)
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
        keys = space.index_batch(genotypes)
        s = self.of(part)
        return np.flatnonzero(np.fromiter((k in s for k in keys), dtype=bool, count=len(keys)))


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
    keys = np.unique(np.concatenate([space.index_batch(d.genotypes) for d in devices]))
    rest = np.array(sorted(set(keys.tolist()) - anchors), dtype=keys.dtype)
    rest = rest[np.random.default_rng(seed).permutation(len(rest))]
    n_test = round(fractions[2] * len(rest))
    n_valid = round(fractions[1] * len(rest))
    test, valid, train = rest[:n_test], rest[n_test : n_test + n_valid], rest[n_test + n_valid :]
    return ArchSplit(
        frozenset(train.tolist()) | frozenset(anchors & set(keys.tolist())),
        frozenset(valid.tolist()),
        frozenset(test.tolist()),
    )

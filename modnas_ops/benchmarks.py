"""The NAS-Bench-201 hardware table: accuracy and per-device latency of every architecture, device splits
and anchor-based device embeddings, plus the MODNAS evaluation of fronts against it.

Table format (CSV, optionally gzipped), one row per architecture in NB201 index order:
``index, arch, cifar10_test_acc[, cifar100_test_acc, imagenet16_test_acc], latency_ms_<device>...``; a
``devices.json`` beside it lists ``train_devices``, ``test_devices`` and ``reference_arch_indices`` (anchors).
Every problem with either file raises :class:`TableError` with one line naming the file and the problem.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from .devices import Device, anchor_embedding
from .errors import UserError
from .pareto import MODNAS_MAX_ERROR, Normaliser, hypervolume, modnas_normaliser, pareto_mask
from .spaces import NB201Space, get_search_space

log = logging.getLogger(__name__)

ENV_VAR = "MODNAS_NB201_TABLE"
DEFAULT_TABLE_NAME = "nb201_cifar10_latency.csv.gz"
DEVICES_FILE = "devices.json"
LATENCY_PREFIX = "latency_ms_"
ACCURACY_COLUMNS = {
    "cifar10": "cifar10_test_acc",
    "cifar100": "cifar100_test_acc",
    "imagenet16": "imagenet16_test_acc",
}
REQUIRED_COLUMNS = ("index", "arch", ACCURACY_COLUMNS["cifar10"])


class TableError(UserError):
    """A benchmark table or its devices.json is missing or malformed (one line: file and problem)."""


def resolve_table_path(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The table file named by ``path``, else by ``$MODNAS_NB201_TABLE``, else None.

    A directory stands for the table inside it (``nb201_cifar10_latency.csv.gz``, or its only CSV).
    """
    if path is None or str(path) == "":
        path = os.environ.get(ENV_VAR) or None
        if path is None:
            return None
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / DEFAULT_TABLE_NAME).is_file():
            return p / DEFAULT_TABLE_NAME
        found = sorted(q for q in p.iterdir() if q.name.endswith((".csv", ".csv.gz")) and q.is_file())
        if len(found) != 1:
            raise TableError(f"{p}: directory holds {len(found)} .csv/.csv.gz tables, expected exactly one")
        return found[0]
    if not p.is_file():
        raise TableError(f"{p}: no such table file")
    return p


class DeviceColumns:
    """What a latency table offers about its devices, from ``latency_ms``, ``train_devices``, ``test_devices``,
    ``anchor_indices`` and ``path`` (shared by :class:`BenchmarkTable` and
    :class:`modnas_ops.latency_table.LatencyTable`)."""

    path: Path
    latency_ms: dict[str, np.ndarray]
    train_devices: tuple[str, ...]
    test_devices: tuple[str, ...]
    anchor_indices: tuple[int, ...]

    @property
    def devices(self) -> tuple[str, ...]:
        """Train devices then test devices (as listed in devices.json)."""
        return self.train_devices + self.test_devices

    def latency(self, device: str) -> np.ndarray:
        """(N,) latency in ms on ``device``."""
        try:
            return self.latency_ms[device]
        except KeyError:
            raise UserError(
                f"unknown device {device!r} in {self.path.name}; known: {', '.join(self.latency_ms)}"
            ) from None

    def split(self, device: str) -> str:
        """'train', 'test' or 'other' (a latency column devices.json does not list)."""
        self.latency(device)
        return "train" if device in self.train_devices else "test" if device in self.test_devices else "other"

    def anchor_latency_ms(self, device: str) -> np.ndarray:
        """(A,) latencies of the anchor architectures on ``device``."""
        return self.latency(device)[list(self.anchor_indices)]

    def device_embedding(self, device: str) -> np.ndarray:
        """(A,) float32 min-max normalised anchor latencies (:func:`modnas_ops.devices.anchor_embedding`)."""
        return anchor_embedding(self.anchor_latency_ms(device))

    def device(self, name: str) -> Device:
        """The device as the search sees it: its name and anchor latencies."""
        return Device(name, tuple(self.anchor_latency_ms(name)), description=f"{self.path.name} ({self.split(name)})")


@dataclass(frozen=True, eq=False)
class BenchmarkTable(DeviceColumns):
    """The parsed table; row i is the architecture with NB201 index i. Arrays are read-only."""

    path: Path
    space: NB201Space
    archs: tuple[str, ...]
    genotypes: np.ndarray  # (N, E) int64
    accuracy: dict[str, np.ndarray]  # dataset -> (N,) test accuracy in percent
    latency_ms: dict[str, np.ndarray]  # device -> (N,) milliseconds
    train_devices: tuple[str, ...]
    test_devices: tuple[str, ...]
    anchor_indices: tuple[int, ...]

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(self.accuracy)

    def __len__(self) -> int:
        return len(self.archs)

    def error(self, dataset: str = "cifar10") -> np.ndarray:
        """(N,) test error in percent (100 - accuracy)."""
        try:
            acc = self.accuracy[dataset]
        except KeyError:
            raise UserError(
                f"unknown dataset {dataset!r} in {self.path.name}; known: {', '.join(self.accuracy)}"
            ) from None
        return 100.0 - acc

    @property
    def metrics(self) -> tuple[str, ...]:
        """Hardware metrics the table measures (NB201's table: latency only)."""
        return ("latency_ms",)

    def metric(self, device: str, metric: str) -> np.ndarray:
        """(N,) values of a hardware ``metric`` on ``device``."""
        if metric not in self.metrics:
            raise UserError(f"{self.path.name} has no metric {metric!r}; it has {', '.join(self.metrics)}")
        return self.latency(device)

    def anchor_values(self, device: str, metric: str) -> np.ndarray:
        """(A,) values of ``metric`` of the anchor architectures on ``device``."""
        return self.metric(device, metric)[list(self.anchor_indices)]

    def indices_of(self, genotypes: Sequence[Sequence[int]]) -> np.ndarray:
        """(G,) row (= NB201) indices of ``genotypes``; ValueError if one is not in the table."""
        out = np.array([self.space.benchmark_index(g) for g in genotypes], dtype=np.int64)
        bad = np.flatnonzero(out >= len(self))
        if len(bad):
            raise ValueError(
                f"{self.path.name}: genotype {tuple(genotypes[bad[0]])} has no row (table has {len(self)})"
            )
        return out


def load_table(
    path: str | os.PathLike[str] | None = None, devices_path: str | os.PathLike[str] | None = None
) -> BenchmarkTable:
    """Read and validate a table (``path``, else ``$MODNAS_NB201_TABLE``) and its ``devices.json``
    (``devices_path``, else the one beside the table). Cached per file (and its size and mtime)."""
    table_path = resolve_table_path(path)
    if table_path is None:
        raise TableError(f"no benchmark table given: pass a path or set {ENV_VAR}")
    dev_path = Path(devices_path).expanduser() if devices_path else table_path.parent / DEVICES_FILE
    if not dev_path.is_file():
        raise TableError(f"{dev_path}: no such file (the table's {DEVICES_FILE})")
    return _load_cached(table_path.resolve(), dev_path.resolve(), _stamp(table_path), _stamp(dev_path))


def _stamp(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=8)
def _load_cached(
    table_path: Path, dev_path: Path, _table_stamp: tuple[int, int], _dev_stamp: tuple[int, int]
) -> BenchmarkTable:
    space = cast(NB201Space, get_search_space("nb201"))  # the table is in NB201 benchmark order
    header, rows = _read_rows(table_path)
    col = _check_header(table_path, header)
    n = len(rows)
    if n == 0:
        raise TableError(f"{table_path}: no data rows")
    if n > space.num_architectures:
        raise TableError(f"{table_path}: {n} rows, more than the {space.num_architectures} archs of {space.name}")
    columns = list(zip(*rows, strict=True))  # column-major view of the string cells

    _check_index(table_path, columns[col["index"]])
    archs = tuple(columns[col["arch"]])
    genotypes = _parse_archs(table_path, space, archs)

    accuracy = {}
    for dataset, name in ACCURACY_COLUMNS.items():
        if name in col:
            acc = _float_column(table_path, name, columns[col[name]])
            bad = np.flatnonzero(~((acc >= 0) & (acc <= 100)))
            if len(bad):
                raise TableError(f"{table_path}: column {name!r} row {bad[0]}: {acc[bad[0]]} not in [0, 100]")
            accuracy[dataset] = _readonly(acc)
    latency_ms = {}
    for name, j in col.items():
        if name.startswith(LATENCY_PREFIX):
            lat = _float_column(table_path, name, columns[j])
            bad = np.flatnonzero(~(np.isfinite(lat) & (lat > 0)))
            if len(bad):
                raise TableError(
                    f"{table_path}: column {name!r} row {bad[0]}: latency {lat[bad[0]]} is not finite and > 0"
                )
            latency_ms[name[len(LATENCY_PREFIX) :]] = _readonly(lat)

    train, test, anchors = read_devices_file(dev_path, table_path, set(latency_ms), n, space.num_anchors)
    unlisted = sorted(set(latency_ms) - set(train) - set(test))
    if unlisted:
        log.warning("%s: latency columns not listed in %s: %s", table_path.name, dev_path.name, ", ".join(unlisted))
    log.info("loaded %s: %d archs, %d devices", table_path, n, len(latency_ms))
    return BenchmarkTable(
        path=table_path,
        space=space,
        archs=archs,
        genotypes=_readonly(genotypes),
        accuracy=accuracy,
        latency_ms=latency_ms,
        train_devices=train,
        test_devices=test,
        anchor_indices=anchors,
    )


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise TableError(f"{path}: cannot read: {_first_line(e)}") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise TableError(f"{path}: not a valid CSV: {e}") from None
    if not rows:
        raise TableError(f"{path}: empty file (no header)")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    while body and not any(cell.strip() for cell in body[-1]):
        body.pop()  # trailing blank lines
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise TableError(f"{path}: row {i} (line {i + 2}) has {len(r)} fields, header has {len(header)}")
    return header, body


def _check_header(path: Path, header: list[str]) -> dict[str, int]:
    col: dict[str, int] = {}
    for j, name in enumerate(header):
        if name in col:
            raise TableError(f"{path}: duplicate column {name!r}")
        col[name] = j
    for name in REQUIRED_COLUMNS:
        if name not in col:
            raise TableError(f"{path}: missing column {name!r}")
    if not any(name.startswith(LATENCY_PREFIX) and len(name) > len(LATENCY_PREFIX) for name in col):
        raise TableError(f"{path}: no latency column (expected at least one '{LATENCY_PREFIX}<device>')")
    return col


def _check_index(path: Path, cells: Sequence[str]) -> None:
    try:
        index = np.fromiter(map(int, cells), dtype=np.int64, count=len(cells))
    except ValueError:
        i = next(i for i, c in enumerate(cells) if not _is_int(c))
        raise TableError(f"{path}: row {i}: index {cells[i]!r} is not an integer") from None
    bad = np.flatnonzero(index != np.arange(len(index)))
    if len(bad):
        i = int(bad[0])
        raise TableError(f"{path}: index column must run 0..N-1 in order; row {i} has index {index[i]}")


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def _float_column(path: Path, name: str, cells: Sequence[str]) -> np.ndarray:
    try:
        return np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
    except ValueError:
        i = next(i for i, c in enumerate(cells) if not _is_float(c))
        raise TableError(f"{path}: column {name!r} row {i}: {cells[i]!r} is not a number") from None


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _parse_archs(path: Path, space: NB201Space, archs: Sequence[str]) -> np.ndarray:
    """(N, E) genotypes; row i must parse and be the architecture with NB201 index i."""
    genotypes = np.empty((len(archs), space.num_decisions), dtype=np.int64)
    for i, arch in enumerate(archs):
        try:
            genotypes[i] = space.from_string(arch)
        except ValueError as e:
            raise TableError(f"{path}: row {i}: {e}") from None
    for i, g in enumerate(map(tuple, genotypes.tolist())):
        j = space.benchmark_index(g)
        if j != i:
            raise TableError(f"{path}: row {i}: arch {archs[i]!r} has NB201 index {j}, not {i}")
    return genotypes


def read_devices_file(
    dev_path: Path, table_path: Path, columns: set[str], n: int, num_anchors: int
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """(train devices, test devices, anchor rows) of a table's devices.json; TableError naming the problem."""
    try:
        spec = json.loads(dev_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise TableError(f"{dev_path}: cannot read: {_first_line(e)}") from None
    except json.JSONDecodeError as e:
        raise TableError(f"{dev_path}: invalid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise TableError(f"{dev_path}: expected a JSON object (train_devices, test_devices, ...)")
    for key in ("train_devices", "test_devices", "reference_arch_indices"):
        if key not in spec:
            raise TableError(f"{dev_path}: missing key {key!r}")
    splits = []
    seen: set[str] = set()
    for key in ("train_devices", "test_devices"):
        names = spec[key]
        if not isinstance(names, list) or not all(isinstance(d, str) and d for d in names):
            raise TableError(f"{dev_path}: {key!r} must be a list of device names")
        for d in names:
            if d in seen:
                raise TableError(f"{dev_path}: device {d!r} is listed twice")
            seen.add(d)
            if d not in columns:
                raise TableError(f"{dev_path}: device {d!r} has no column {LATENCY_PREFIX + d!r} in the table")
        splits.append(tuple(names))
    if not seen:
        raise TableError(f"{dev_path}: lists no devices")
    anchors = spec["reference_arch_indices"]
    if (
        not isinstance(anchors, list)
        or len(anchors) != num_anchors
        or not all(isinstance(a, int) and not isinstance(a, bool) for a in anchors)
    ):
        raise TableError(f"{dev_path}: 'reference_arch_indices' must be a list of {num_anchors} integers")
    bad = [a for a in anchors if not 0 <= a < n]
    if bad:
        raise TableError(f"{dev_path}: anchor index {bad[0]} is out of range 0..{n - 1} of {table_path.name}")
    if len(set(anchors)) != len(anchors):
        raise TableError(f"{dev_path}: 'reference_arch_indices' has duplicates")
    return splits[0], splits[1], tuple(anchors)


# ---- MODNAS evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FrontResult:
    """A Pareto front of (error %, latency ms) on one device, sorted by latency, and its hypervolume."""

    device: str
    dataset: str
    indices: np.ndarray  # (P,) NB201 indices
    archs: tuple[str, ...]
    error: np.ndarray  # (P,) percent
    latency_ms: np.ndarray  # (P,)
    normalised: np.ndarray  # (P, 2) (error, latency) under `normaliser`
    hv: float
    normaliser: Normaliser

    def rows(self) -> list[dict[str, Any]]:
        """One dict per front point (for CSV)."""
        return [
            {
                "nb201_index": int(i),
                "arch": a,
                "error": float(e),
                "latency_ms": float(t),
                "error_norm": float(z[0]),
                "latency_norm": float(z[1]),
            }
            for i, a, e, t, z in zip(
                self.indices, self.archs, self.error, self.latency_ms, self.normalised, strict=True
            )
        ]


def modnas_table_normaliser(
    table: BenchmarkTable, device: str, dataset: str = "cifar10", max_error: float = MODNAS_MAX_ERROR
) -> Normaliser:
    """Min-max bounds of (error %, latency ms) over the table rows with error below ``max_error``."""
    return modnas_normaliser(table.error(dataset), table.latency(device), max_error=max_error)


def evaluate_front(
    table: BenchmarkTable,
    device: str,
    indices: Sequence[int] | np.ndarray | None = None,
    dataset: str = "cifar10",
    max_error: float = MODNAS_MAX_ERROR,
) -> FrontResult:
    """MODNAS evaluation of the archs ``indices`` (NB201 indices; None = the whole table) on ``device``:
    drop those with error >= ``max_error``, keep the non-dominated ones, hypervolume with reference (1, 1)
    after min-max normalising over the table (see :func:`modnas_table_normaliser`)."""
    error, latency = table.error(dataset), table.latency(device)
    if indices is None:
        idx = np.arange(len(table))
    else:
        idx = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if len(idx) and not (0 <= idx[0] and idx[-1] < len(table)):
            raise ValueError(f"arch indices must lie in 0..{len(table) - 1}, got {idx[0]}..{idx[-1]}")
    idx = idx[error[idx] < max_error]
    normaliser = modnas_table_normaliser(table, device, dataset, max_error)
    F = np.stack([error[idx], latency[idx]], axis=1)  # (n, 2)
    front = idx[pareto_mask(F)] if len(idx) else idx
    front = front[np.lexsort((error[front], latency[front]))]  # by latency, ties by error
    Z = normaliser(np.stack([error[front], latency[front]], axis=1))  # (P, 2)
    return FrontResult(
        device=device,
        dataset=dataset,
        indices=front,
        archs=tuple(table.archs[i] for i in front),
        error=error[front],
        latency_ms=latency[front],
        normalised=Z,
        hv=hypervolume(Z, normaliser.reference_point),
        normaliser=normaliser,
    )


def true_front(
    table: BenchmarkTable, device: str, dataset: str = "cifar10", max_error: float = MODNAS_MAX_ERROR
) -> FrontResult:
    """The true Pareto front of the whole table on ``device`` and its hypervolume (MODNAS evaluation)."""
    return evaluate_front(table, device, None, dataset, max_error)


__all__ = [
    "ACCURACY_COLUMNS",
    "DEFAULT_TABLE_NAME",
    "DEVICES_FILE",
    "ENV_VAR",
    "LATENCY_PREFIX",
    "BenchmarkTable",
    "FrontResult",
    "TableError",
    "evaluate_front",
    "load_table",
    "modnas_table_normaliser",
    "resolve_table_path",
    "true_front",
]

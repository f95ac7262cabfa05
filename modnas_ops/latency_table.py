"""Latency tables of any registered space: one row per architecture, ``latency_ms_<device>`` columns, and a
``devices.json`` beside the table (train / test devices, the anchor rows).

The space reads its own architecture columns (:meth:`~modnas_ops.spaces.SearchSpace.table_genotypes`: NB201's
``arch`` strings, OFA's ``ks``/``e``/``d``/``r``), and the anchor rows must be the space's anchors, so a
device's embedding from the table is the embedding the search computes. The table is found from an explicit
path or ``$MODNAS_<SPACE>_TABLE`` (``MODNAS_NB201_TABLE``, ``MODNAS_MBV3_TABLE``). The result has what
:func:`modnas_ops.predictor.measurements_from_table` reads: ``devices``, ``test_devices``, ``genotypes``,
``latency(device)`` and ``anchor_latency_ms(device)``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .benchmarks import (
    DEVICES_FILE,
    LATENCY_PREFIX,
    DeviceColumns,
    TableError,
    _first_line,
    _float_column,
    _read_rows,
    _readonly,
    read_devices_file,
)
from .spaces import SearchSpace, get_search_space

log = logging.getLogger(__name__)


def table_env_var(space: str) -> str:
    """The environment variable that names the latency table of ``space``."""
    return f"MODNAS_{space.upper()}_TABLE"


@dataclass(frozen=True, eq=False)
class LatencyTable(DeviceColumns):
    """Measured latencies of a space's architectures; row i is ``genotypes[i]``. Arrays are read-only."""

    path: Path
    space: SearchSpace
    genotypes: np.ndarray  # (N, D) int64, canonical
    latency_ms: dict[str, np.ndarray]  # device -> (N,) milliseconds
    train_devices: tuple[str, ...]
    test_devices: tuple[str, ...]
    anchor_indices: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.genotypes)


def resolve_latency_table(space: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The table file ``path`` names, else ``$MODNAS_<SPACE>_TABLE``; TableError when neither names a file."""
    var = table_env_var(space)
    p = str(path or "") or os.environ.get(var, "")
    if not p:
        raise TableError(f"{space}: no latency table given (pass a path or set ${var})")
    out = Path(p).expanduser()
    if not out.is_file():
        raise TableError(f"{out}: no such table file")
    return out


def load_latency_table(space: str, path: str | os.PathLike[str] | None = None) -> LatencyTable:
    """Read, check and parse the latency table of ``space`` (see the module docstring); TableError (one line:
    the file and the problem) on a missing or malformed table or devices.json."""
    sp = get_search_space(space)
    table_path = resolve_latency_table(space, path)
    dev_path = table_path.parent / DEVICES_FILE
    header, rows = _read_rows(table_path)
    if not rows:
        raise TableError(f"{table_path}: no data rows")
    cols = dict(zip(header, zip(*rows, strict=True), strict=True))
    try:
        genotypes = np.asarray([sp.canonical(g) for g in sp.table_genotypes(cols)], dtype=np.int64)
    except ValueError as e:
        raise TableError(f"{table_path}: {_first_line(e)}") from None
    latency_ms = {}
    for name in header:
        if name.startswith(LATENCY_PREFIX):
            lat = _float_column(table_path, name, cols[name])
            bad = np.flatnonzero(~(np.isfinite(lat) & (lat > 0)))
            if len(bad):
                raise TableError(
                    f"{table_path}: column {name!r} row {bad[0]}: latency {lat[bad[0]]} is not finite and > 0"
                )
            latency_ms[name[len(LATENCY_PREFIX) :]] = _readonly(lat)
    if not latency_ms:
        raise TableError(f"{table_path}: no {LATENCY_PREFIX}<device> column")
    train, test, anchors = read_devices_file(dev_path, table_path, set(latency_ms), len(rows), sp.num_anchors)
    want = [sp.canonical(a) for a in sp.anchors()]
    got = [tuple(int(x) for x in genotypes[i]) for i in anchors]
    if got != want:
        i = next(k for k, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        raise TableError(f"{dev_path}: anchor row {anchors[i]} is {sp.to_string(got[i])}, but {sp.name}'s anchor {i} "
                         f"is {sp.to_string(want[i])}")  # fmt: skip
    log.info("loaded %s: %d %s archs, %d devices", table_path, len(rows), sp.name, len(latency_ms))
    return LatencyTable(table_path, sp, _readonly(genotypes), latency_ms, train, test, anchors)

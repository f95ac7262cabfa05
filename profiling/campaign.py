"""Profiling campaigns: anchor + sampled architectures x device configs -> a resumable CSV table.

Architectures (:func:`select_architectures`, deterministic in ``seed``): the space's anchors (role
``anchor``), then ``num_archs`` distinct samples (role ``sample``) alternating between two samplers:

- ``uniform``: every op of every edge uniform (uniform over the whole space);
- ``stratified``: first an op-count histogram (how many edges carry each of the K ops) uniformly among all
  C(E+K-1, K-1) histograms (stars and bars), then a uniform random assignment of that multiset to the edges.
  Uniform sampling concentrates on mixed histograms (e.g. ~2 convs of 6 edges in NB201); the stratified
  sampler also covers the extremes (all-conv, all-skip, mostly-none) that bound a device's latency range.

Work is done in chunks of ``chunk_size`` architectures: for each chunk and each device config the pending
(arch, device) pairs are timed interleaved in one process (see ``latency``) and their rows appended to the
CSV with one ``write`` + ``fsync``. A re-run skips pairs already in the table (same host and network); a torn
last line from a killed run (no trailing newline) is dropped by an atomic rewrite before work starts. The
header is written atomically (tmp + ``os.replace``); files get the umask's mode (a rewrite keeps the file's).

One writer at a time: every change of a table (header, repair, append) and the measurement of each chunk run
under an exclusive ``flock`` on the sidecar ``<table>.lock`` (left in place: deleting it would race). Under
the lock a campaign re-reads the keys in the table, measures only the chunk's pairs still missing and appends
them, so two campaigns on one file (same host) take turns chunk by chunk, never measure at the same time, and
end with exactly the union of their pairs, none twice. A table holding one key twice is refused with the key
named (:func:`read_table`), unless the rows are identical: then one is kept, with a warning.

Table: :data:`COLUMNS`, one row per (host, network, device, arch). ``latency_ms`` (median), ``_p90``,
``_iqr``, ``_mean`` are ms per call of one batch; ``latency_cv`` = std/mean of all timed calls;
``latency_split_cv`` = std/mean of the medians of 5 time-ordered parts; ``rounds`` = rounds done (fewer
than configured when ``max_seconds`` ran out); ``energy_mj`` = gross mJ per call, empty when no counter is
readable; ``flops`` = multiply-accumulates of conv/linear layers at batch 1 (``supernet.count_flops``);
``memory_mb`` = peak resident memory (MiB) an onnxruntime CPU session of the config adds, measured in a
fresh process (``profiling.memory``; campaigns with ``memory: true``, ORT CPU configs only, else empty).
Tables of several hosts concatenate (:func:`concat_tables`); a device is identified by (host, device).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gzip
import io
import logging
import math
import os
import platform
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from modnas_ops.atomic import new_file_mode
from modnas_ops.errors import UserError
from modnas_ops.spaces import Genotype, SearchSpace, get_search_space

from .config import CampaignConfig
from .energy import EnergyMeter, create_energy_meter, measure_energy_mj, meter_key
from .export import OPSET
from .latency import (
    Candidate,
    DeviceConfig,
    LatencyStats,
    device_description,
    prepare,
    time_runners,
    versions,
)
from .memory import memory_counters_readable, peak_memory_mb

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "space", "arch", "device", "latency_ms", "latency_ms_p90", "latency_ms_iqr", "latency_cv", "energy_mj",
    "params", "flops", "runtime", "provider", "threads", "batch", "device_description", "onnxruntime_version",
    "torch_version", "timestamp", "role", "sampler", "host", "network", "latency_ms_mean", "latency_split_cv",
    "energy_source", "warmup", "repeats", "rounds", "exporter", "opset", "memory_mb",
)  # fmt: skip
LATER_COLUMNS = ("memory_mb",)  # added after tables were written: a table without them is appended to as is
REQUIRED_COLUMNS: tuple[str, ...] = COLUMNS[:19]  # the brief's contract; the rest is provenance
FLOAT_COLUMNS = (
    "latency_ms",
    "latency_ms_p90",
    "latency_ms_iqr",
    "latency_cv",
    "latency_ms_mean",
    "latency_split_cv",
)
OPTIONAL_FLOAT_COLUMNS = ("energy_mj", "memory_mb")
INT_COLUMNS = ("params", "flops", "threads", "batch", "warmup", "repeats", "rounds", "opset")
ROLES = ("anchor", "sample")
KEY = ("host", "network", "device", "arch")

NetworkBuilder = Callable[[SearchSpace, Genotype, "CampaignConfig"], nn.Module]


class TableError(UserError):
    """A profiling table that cannot be read, written or combined."""


# ---- configuration -----------------------------------------------------------------------------------------


# ---- architectures -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchSpec:
    genotype: Genotype
    arch: str
    role: str  # anchor | sample
    sampler: str  # anchor | uniform | stratified


def sample_stratified(space: SearchSpace, rng: np.random.Generator) -> Genotype:
    """Op-count histogram uniform over all compositions of E into K parts, then a uniform edge assignment
    (cell spaces, whose decisions all choose among the same K ops: uniform samples concentrate on mixed cells
    and miss the all-cheap / all-expensive ones). A space whose decisions have different choices has no op
    histogram: uniform samples."""
    if len(set(space.num_choices)) != 1:
        return space.sample(rng)
    E, K = space.shape
    bars = np.sort(rng.choice(E + K - 1, size=K - 1, replace=False))  # stars and bars
    counts = np.diff(np.concatenate(([-1], bars, [E + K - 1]))) - 1  # (K,) sums to E
    ops = np.repeat(np.arange(K), counts)  # (E,)
    return tuple(int(k) for k in rng.permutation(ops))


SAMPLERS: dict[str, Callable[[SearchSpace, np.random.Generator], Genotype]] = {
    "uniform": lambda space, rng: space.sample(rng),
    "stratified": sample_stratified,
}


def select_architectures(
    space: SearchSpace,
    num_archs: int,
    seed: int = 0,
    stratified_fraction: float = 0.5,
    anchors: bool = True,
) -> list[ArchSpec]:
    """Anchors, then ``num_archs`` distinct samples (stratified ones spread evenly among uniform ones).

    Deterministic in ``seed`` and prefix-stable: the first n samples do not depend on ``num_archs``.
    """
    out: list[ArchSpec] = []
    seen: set[Genotype] = set()
    if anchors:
        for g in space.anchors():
            if g not in seen:
                seen.add(g)
                out.append(ArchSpec(g, space.to_string(g), "anchor", "anchor"))
    if num_archs > space.num_distinct_architectures - len(seen):
        raise ValueError(
            f"num_archs={num_archs} exceeds the {space.num_distinct_architectures - len(seen)} architectures of "
            f"{space.name} left after the anchors"
        )
    rng = np.random.default_rng(seed)
    for i in range(num_archs):
        # sample i is stratified when the running share of stratified samples reaches the next integer: the
        # sequence does not depend on num_archs, so a larger campaign extends a smaller one
        stratified = math.floor((i + 1) * stratified_fraction) > math.floor(i * stratified_fraction)
        name = "stratified" if stratified else "uniform"
        for _ in range(10_000):
            g = space.canonical(SAMPLERS[name](space, rng))
            if g not in seen:
                break
        else:
            raise ValueError(f"{space.name}: could not draw {num_archs} distinct architectures")
        seen.add(g)
        out.append(ArchSpec(g, space.to_string(g), "sample", name))
    return out


def default_network_builder(space: SearchSpace, genotype: Genotype, config: CampaignConfig) -> nn.Module:
    return space.build_network(genotype, config.input_shape, config.num_classes, **config.network_hparams())


def _network_stats(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    from modnas_ops.netcost import count_flops, count_params

    return count_params(model), count_flops(model, example)


# ---- the table ---------------------------------------------------------------------------------------------


def _format_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v).replace("\n", " ").replace("\r", " ")


def _csv_text(rows: Iterable[dict[str, Any]], columns: Sequence[str], header: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    for r in rows:
        w.writerow([_format_value(r.get(c)) for c in columns])
    return buf.getvalue()


def _atomic_write_text(path: Path, text: str) -> None:
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(rows: Sequence[dict[str, Any]], path: str | Path, columns: Sequence[str] = COLUMNS) -> Path:
    """Write rows atomically (tmp + os.replace)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(p, _csv_text(rows, columns, header=True))
    except OSError as e:
        raise TableError(f"cannot write profiling table {p}: {e.strerror or e}") from None
    return p


def _parse_row(raw: dict[str, str], where: str) -> dict[str, Any]:
    row: dict[str, Any] = dict(raw)
    for c in FLOAT_COLUMNS + OPTIONAL_FLOAT_COLUMNS + INT_COLUMNS:
        if c not in raw:
            continue
        text = raw[c].strip()
        if text == "" and (c in OPTIONAL_FLOAT_COLUMNS or c not in REQUIRED_COLUMNS):
            row[c] = None
            continue
        try:
            row[c] = int(text) if c in INT_COLUMNS else float(text)
        except ValueError:
            kind = "an integer" if c in INT_COLUMNS else "a number"
            raise TableError(f"{where}: column {c} holds {text!r}, expected {kind}") from None
    if row.get("role") not in ROLES:
        raise TableError(f"{where}: role {row.get('role')!r} is not one of {', '.join(ROLES)}")
    for c in ("arch", "device"):
        if not row.get(c):
            raise TableError(f"{where}: empty {c}")
    return row


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Typed rows of a profiling table; ``TableError`` (one line) on a missing file, columns or bad values.

    A torn last line (a run killed mid-write: no trailing newline) is ignored with a warning.
    """
    p = Path(path)
    try:
        text = _read_text(p)
    except OSError as e:
        raise TableError(f"cannot read profiling table {p}: {e.strerror or e}") from None
    if text and not text.endswith("\n"):
        log.warning("profiling table %s: ignoring a torn last line (interrupted write)", p)
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        raise TableError(f"profiling table {p} is empty (no header line)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise TableError(
            f"profiling table {p} lacks columns: {', '.join(missing)} (its header: {_preview(header)})"
        )
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for i, raw in enumerate(reader, start=2):
        if None in raw or any(v is None for v in raw.values()):
            raise TableError(f"profiling table {p} line {i}: expected {len(header)} fields")
        rows.append(_parse_row(raw, f"profiling table {p} line {i}"))
        lines.append(i)
    return _drop_exact_duplicates(rows, lines, f"profiling table {p}")


def _preview(header: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(header[:n])
    return shown + (f", ... ({len(header)} columns)" if len(header) > n else "")


def _key_text(row: dict[str, Any]) -> str:
    return ", ".join(f"{c}={row.get(c)!s}" for c in KEY)


def _drop_exact_duplicates(rows: list[dict[str, Any]], lines: Sequence[int], where: str) -> list[dict[str, Any]]:
    """Rows with distinct keys (:data:`KEY`): a repeat identical to the first row of its key is dropped with one
    warning for the table; a repeat that differs (another measurement of the same pair) is a ``TableError``."""
    first: dict[tuple[Any, ...], tuple[dict[str, Any], int]] = {}
    out: list[dict[str, Any]] = []
    dropped: list[int] = []
    for row, line in zip(rows, lines, strict=True):
        key = tuple(row.get(c) for c in KEY)
        if key not in first:
            first[key] = (row, line)
            out.append(row)
            continue
        kept, kept_line = first[key]
        if row == kept:
            dropped.append(line)
            continue
        diff = next(c for c in (*COLUMNS, *row) if row.get(c) != kept.get(c))
        raise TableError(
            f"{where} lines {kept_line} and {line}: two measurements of {_key_text(row)} "
            f"({diff} {kept.get(diff)!r} vs {row.get(diff)!r}); keep one of them"
        )
    if dropped:
        log.warning("%s: ignoring %d exact duplicate row(s) (lines %s)", where, len(dropped),
                    ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else ""))  # fmt: skip
    return out


load_profile_table = read_table


def concat_tables(tables: Sequence[str | Path | Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of several tables (paths or row lists, e.g. from several hosts); a repeated
    (host, network, device, arch) is a ``TableError``."""
    out: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], int] = {}
    for t, table in enumerate(tables):
        rows = read_table(table) if isinstance(table, (str, Path)) else list(table)
        for row in rows:
            key = tuple(row.get(c) for c in KEY)
            if key in seen:
                raise TableError(f"tables {seen[key]} and {t} both hold {dict(zip(KEY, key, strict=True))}")
            seen[key] = t
            out.append(row)
    return out


class TableWriter:
    """Append-only CSV with an atomic header, fsync per batch, recovery of a torn last line, and one writer at a
    time: every change runs under an exclusive ``flock`` on ``<table>.lock`` (:meth:`lock`)."""

    def __init__(self, path: str | Path, columns: Sequence[str] = COLUMNS) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.columns = tuple(columns)
        self._lock_fd: int | None = None
        self._depth = 0
        with self.lock():
            self._open()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the table's exclusive lock (re-entrant within this writer); waits, saying so, while another
        process holds it. The lock dies with its process, so a killed campaign never leaves the table locked."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        p = self.path
        try:
            if p.is_dir():
                raise TableError(f"profiling table {p} is a directory")
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise TableError(f"cannot write profiling table {p}: {e.strerror or e}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("profiling table %s: another campaign is writing it; waiting for %s", p, self.lock_path)
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd, self._depth = fd, 1
            try:
                yield
            finally:
                self._lock_fd, self._depth = None, 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _open(self) -> None:
        p = self.path
        try:
            if not p.exists() or p.stat().st_size == 0:
                _atomic_write_text(p, _csv_text([], self.columns, header=True))
                return
            os.close(os.open(p, os.O_WRONLY | os.O_APPEND))  # writable? (raises PermissionError if not)
            if _is_gzip(p):
                raise TableError(f"profiling table {p} is gzip-compressed; a campaign appends to a plain CSV file")
            text = self._repair()
        except OSError as e:
            raise TableError(f"cannot write profiling table {p}: {e.strerror or e}") from None
        header = tuple(next(csv.reader([text.split("\n", 1)[0]]), []))
        later = self.columns[len(header) :]
        if header != self.columns and header == self.columns[: len(header)] and set(later) <= set(LATER_COLUMNS):
            self.columns = header  # a table of an earlier version: its rows keep its columns
        elif header != self.columns:
            raise TableError(
                f"profiling table {p} has other columns than this version writes; use a new output"
            )

    def _repair(self) -> str:
        """The table's text after dropping a torn last line (atomic rewrite); call under the lock."""
        p = self.path
        text = _read_text(p)
        if text and not text.endswith("\n"):
            cut = text.rfind("\n") + 1
            log.warning("profiling table %s: dropping a torn last line left by an interrupted run", p)
            text = text[:cut] if cut else _csv_text([], self.columns, header=True)
            _atomic_write_text(p, text)
        return text

    def rows(self) -> list[dict[str, Any]]:
        return read_table(self.path)

    def keys(self) -> set[tuple[Any, ...]]:
        """:data:`KEY` tuples of the rows now in the table (hold :meth:`lock` for them to stay current)."""
        return {tuple(r[c] for c in KEY) for r in self.rows()}

    def append(self, rows: Sequence[dict[str, Any]]) -> int:
        """Under the lock: re-read the table's keys, append the rows whose key is not there yet in one write,
        fsync. Returns how many were written. A failed write (e.g. disk full) is cut back off the table and
        raised as one ``TableError`` line naming the table."""
        if not rows:
            return 0
        with self.lock():
            try:
                self._repair()
            except OSError as e:
                raise TableError(f"cannot write profiling table {self.path}: {e.strerror or e}") from None
            present = self.keys()
            new = [r for r in rows if tuple(r.get(c) for c in KEY) not in present]
            if len(new) < len(rows):
                log.warning("profiling table %s: %d of %d rows already written by another campaign; not "
                            "appended again", self.path, len(rows) - len(new), len(rows))  # fmt: skip
            if new:
                self._write(_csv_text(new, self.columns, header=False).encode())
            return len(new)

    def _write(self, data: bytes) -> None:
        p = self.path
        try:
            fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        except OSError as e:
            raise TableError(f"cannot write profiling table {p}: {e.strerror or e}") from None
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)  # no half batch left behind for the next append to run into
                raise TableError(
                    f"cannot append {data.count(NL)} rows to profiling table {p}: {e.strerror or e}; the rows "
                    "measured before are kept, re-run to resume"
                ) from None
        finally:
            os.close(fd)


# ---- the campaign ------------------------------------------------------------------------------------------


@dataclass
class DeviceSummary:
    profiled: int = 0  # (arch) rows written in this run
    seconds: float = (
        0.0  # export + session + timing + energy of this device, plus its share of network builds
    )
    cvs: list[float] = field(default_factory=list)
    split_cvs: list[float] = field(default_factory=list)

    @property
    def subnets_per_min(self) -> float:
        return 60.0 * self.profiled / self.seconds if self.seconds > 0 else float("nan")

    @property
    def median_cv(self) -> float:
        return float(np.median(self.cvs)) if self.cvs else float("nan")

    @property
    def median_split_cv(self) -> float:
        return float(np.median(self.split_cvs)) if self.split_cvs else float("nan")


@dataclass
class CampaignResult:
    path: Path
    rows: list[dict[str, Any]]  # the whole table after the run
    new_rows: int
    skipped: int
    devices: dict[str, DeviceSummary]
    seconds: float


def _chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def run_campaign(
    config: CampaignConfig,
    build_network: NetworkBuilder | None = None,
    progress: bool = True,
    archs: Sequence[ArchSpec] | None = None,
) -> CampaignResult:
    """Profile the selected architectures (or ``archs``: a profiling agent's share of a team campaign) on
    every device config, appending to ``config.output``.

    Device configs and the output path are checked before any work. Each chunk is measured and appended under
    the table's lock, after re-reading which of its pairs the table holds by then (another campaign on the same
    file may have measured them meanwhile): ``new_rows`` counts the rows this run wrote, ``skipped`` the
    pairs it found in the table.
    """
    t_start = time.perf_counter()
    space = get_search_space(config.space)
    devices = config.device_configs(with_cuda=True)
    for d in devices:
        d.check_available()
    writer = TableWriter(config.output)
    host = platform.node()
    if archs is None:
        archs = select_architectures(space, config.num_archs, config.seed, config.stratified_fraction, config.anchors)

    def missing(chunk: Sequence[ArchSpec]) -> dict[DeviceConfig, list[ArchSpec]]:
        done = writer.keys()
        todo = {d: [a for a in chunk if (host, config.network, d.name, a.arch) not in done] for d in devices}
        return {d: specs for d, specs in todo.items() if specs}

    if config.memory and not memory_counters_readable():
        raise UserError("memory: true, but this machine's peak-memory counters (/proc/self/status VmHWM, "
                        "/proc/self/clear_refs) cannot be read; set memory: false")  # fmt: skip
    if config.memory and "memory_mb" not in writer.columns:
        raise TableError(f"{config.output}: an earlier version's table has no memory_mb column; use a new output")
    total = sum(len(specs) for specs in missing(archs).values())
    pairs = len(archs) * len(devices)
    if pairs > total:
        log.info("%s: %d (arch, device) pairs already profiled, %d to go", config.output, pairs - total, total)
    run = _Run(
        config=config,
        space=space,
        build=build_network or default_network_builder,
        writer=writer,
        host=host,
        meters=_meters(devices) if config.energy else dict.fromkeys((d.name for d in devices), None),
        descriptions={d.name: device_description(d) for d in devices},
        versions=versions(),
        summaries={d.name: DeviceSummary() for d in devices},
    )
    threads = torch.get_num_threads()
    # Build, count and export the tiny networks with 1 torch thread: with 2 threads on a busy 2-core VM one
    # forward of the digits-sized network took 0.2-0.3 s instead of ~3 ms (OpenMP workers wait on each other).
    torch.set_num_threads(1)
    try:
        with tqdm(total=total, desc="profiling", unit="pair", disable=not progress) as bar:
            for chunk in _chunks(archs, config.chunk_size):
                with writer.lock():  # measure while no other campaign does; append what is still missing
                    run.profile_chunk(missing(chunk), bar)
    finally:
        torch.set_num_threads(threads)
    if run.new_rows < total:
        log.info("%s: %d pairs were measured by another campaign meanwhile", config.output, total - run.new_rows)
    return CampaignResult(
        path=Path(config.output),
        rows=writer.rows(),
        new_rows=run.new_rows,
        skipped=pairs - run.new_rows,
        devices=run.summaries,
        seconds=time.perf_counter() - t_start,
    )


def _meters(devices: Sequence[DeviceConfig]) -> dict[str, EnergyMeter | None]:
    """One meter (or one warning) per measured unit (``meter_key``), shared by the configs that run on it."""
    by_key: dict[str, EnergyMeter | None] = {}
    for d in devices:
        if meter_key(d) not in by_key:
            by_key[meter_key(d)] = create_energy_meter(d)
    return {d.name: by_key[meter_key(d)] for d in devices}


@dataclass
class _Run:
    """State of one campaign run shared by its chunks."""

    config: CampaignConfig
    space: SearchSpace
    build: NetworkBuilder
    writer: TableWriter
    host: str
    meters: dict[str, EnergyMeter | None]
    descriptions: dict[str, str]
    versions: dict[str, str]
    summaries: dict[str, DeviceSummary]
    new_rows: int = 0

    def profile_chunk(self, todo: dict[DeviceConfig, list[ArchSpec]], bar: tqdm) -> None:
        """Build the chunk's networks once, then per device: time interleaved, measure energy, append rows."""
        if not todo:
            return
        cfg = self.config
        t0 = time.perf_counter()
        needed = {a.arch: a for specs in todo.values() for a in specs}
        candidates: dict[str, Candidate] = {}
        stats: dict[str, tuple[int, int]] = {}
        for arch, a in needed.items():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.space.seed_of(a.genotype, cfg.seed))
                model = self.build(self.space, a.genotype, cfg).eval()
            candidates[arch] = Candidate(
                arch, model, cfg.input_shape, exporter=cfg.exporter, make_input=self._example_input
            )
            stats[arch] = _network_stats(model, self.space.example_input(cfg.input_shape))
        build_share = (time.perf_counter() - t0) / len(todo)
        for d, specs in todo.items():
            t1 = time.perf_counter()
            runners = [prepare(candidates[a.arch], d) for a in specs]
            lat = time_runners(runners, d)
            meter = self.meters[d.name]
            energy = [measure_energy_mj(r, meter, cfg.energy_seconds) if meter else None for r in runners]
            memory = [self.memory_mb(candidates[a.arch], d) for a in specs]
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            source = meter.source if meter else ""
            rows = [
                {**self.row(a, d, s, e, stats[a.arch], stamp, source), "memory_mb": mem}
                for a, s, e, mem in zip(specs, lat, energy, memory, strict=True)
            ]
            written = self.writer.append(rows)  # == len(rows): the chunk was chosen under the same lock
            self.new_rows += written
            summary = self.summaries[d.name]
            summary.profiled += written
            summary.seconds += time.perf_counter() - t1 + build_share
            summary.cvs.extend(s.cv for s in lat)
            summary.split_cvs.extend(s.split_cv for s in lat)
            bar.update(len(rows))

    def _example_input(self, batch: int) -> torch.Tensor:
        return self.space.example_input(self.config.input_shape, batch)

    def memory_mb(self, candidate: Candidate, d: DeviceConfig) -> float | None:
        """Peak inference memory of the candidate under the config (ORT CPU configs of a campaign with
        ``memory: true``), or None."""
        if not self.config.memory or d.runtime != "ort" or d.hardware != "cpu":
            return None
        x = candidate.example_input(d.batch).numpy()
        return peak_memory_mb(candidate.onnx_bytes(d.batch), x, threads=d.threads)

    def row(
        self,
        a: ArchSpec,
        d: DeviceConfig,
        s: LatencyStats,
        energy_mj: float | None,
        params_flops: tuple[int, int],
        stamp: str,
        energy_source: str,
    ) -> dict[str, Any]:
        """One table row (see :data:`COLUMNS`)."""
        ort_runtime = d.runtime == "ort"
        return {
            "space": self.config.space,
            "arch": a.arch,
            "device": d.name,
            "latency_ms": s.median_ms,
            "latency_ms_p90": s.p90_ms,
            "latency_ms_iqr": s.iqr_ms,
            "latency_cv": s.cv,
            "energy_mj": energy_mj,
            "params": params_flops[0],
            "flops": params_flops[1],
            "runtime": d.runtime,
            "provider": d.provider,
            "threads": d.threads,
            "batch": d.batch,
            "device_description": self.descriptions[d.name],
            **self.versions,
            "timestamp": stamp,
            "role": a.role,
            "sampler": a.sampler,
            "host": self.host,
            "network": self.config.network,
            "latency_ms_mean": s.mean_ms,
            "latency_split_cv": s.split_cv,
            "energy_source": energy_source,
            "warmup": d.warmup,
            "repeats": d.repeats,
            "rounds": s.n // d.repeats,  # rounds done (fewer than configured when the time budget ran out)
            "exporter": self.config.exporter if ort_runtime else "",
            "opset": OPSET if ort_runtime else None,
        }


GZIP_MAGIC = b"\x1f\x8b"
NL = b"\n"


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _read_text(path: Path) -> str:
    """The table's text; a gzip-compressed table (e.g. an archived ``.csv.gz``) is decompressed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data.startswith(GZIP_MAGIC):
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise TableError(f"profiling table {path}: corrupt gzip data ({e})") from None
    except UnicodeDecodeError as e:
        raise TableError(f"profiling table {path}: not a UTF-8 text CSV (byte {e.start}: {e.reason})") from None

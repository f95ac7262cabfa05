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

With ``search.shortlist`` the fronts are then confirmed by measurement (:mod:`.shortlist`): the generator's
most probable architectures per device and ray are measured and each device's front is rebuilt from the
measured values; the predicted figures stay as ``<metric>_unconfirmed/<device>`` (``_zero_shot`` on test
devices).

Objectives are normalised per device with bounds fitted once (min / max of the predicted objectives over a
candidate pool, error >= 90 % dropped, as the MODNAS evaluation does), so a preference ray means the same
trade-off in the search as in the evaluation. Checkpoints (every epoch, atomic, ``weights_only`` loads)
make a killed search resume where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .architect import Architect, DeviceBatch, annealed_entropy_weight
from .atomic import atomic_torch_save
from .config import (
    FieldError,
    check_at_least,
    check_finite,
    check_positive,
    check_registered,
    check_torch_device,
    config_to_dict,
)
from .distributed import DeviceShard
from .errors import UserError
from .hypernetwork import HypernetworkBase, create_hypernetwork
from .objectives import (
    ERROR,
    BenchmarkConfig,
    BenchmarkObjective,
    ErrorObjective,
    SearchContext,
    SearchDevice,
    SupernetConfig,
    SupernetObjective,
    available_modes,
    create_objective,
    register_objective,
)
from .pareto import preference_rays
from .sampling import create_sampler
from .shortlist import Measure, ShortlistConfig, confirm_fronts
from .spaces import Genotype, SearchSpace, get_search_space

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "search_checkpoint.pt"
CHECKPOINT_VERSION = 2  # bump when the checkpoint layout or what the fingerprint covers changes

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
        from .hypernetwork import available_hypernetworks

        check_finite(self)
        check_registered("kind", self.kind, "hypernetwork", available_hypernetworks())
        check_at_least(self, 1, "hidden")
        check_at_least(self, 0, "resolution", "init_std", "weight_decay")
        check_positive(self, "lr")


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
        from .architect import available_scalarisations
        from .mgd import available_combiners
        from .sampling import available_samplers

        check_finite(self)
        check_registered("sampler", self.sampler, "sampler", available_samplers())
        check_registered("scalarisation", self.scalarisation, "scalarisation", available_scalarisations())
        check_registered("combine", self.combine, "gradient combination", available_combiners())
        for name in ("tau", "tau_max", "tau_min"):
            if not getattr(self, name) > 0:
                raise FieldError(name, f"must be > 0, got {getattr(self, name)}")
        if self.tau_min > self.tau_max:
            raise FieldError("tau_min", f"must be <= tau_max ({self.tau_max}), got {self.tau_min}")
        if any(not b > 0 for b in self.dirichlet_beta):
            raise FieldError("dirichlet_beta", f"every concentration must be > 0, got {self.dirichlet_beta}")
        check_at_least(self, 1, "prefs_per_device", "mgd_max_iter")
        check_positive(self, "mgd_tol")
        check_at_least(self, 0, "cosine_weight", "grad_clip", "entropy_weight")
        if not 0 < self.entropy_decay <= 1:
            raise FieldError("entropy_decay", f"must lie in (0, 1], got {self.entropy_decay}")

    def sampler_kwargs(self) -> dict[str, float]:
        return (
            {"tau": self.tau}
            if self.sampler == "reinmax"
            else {"tau_max": self.tau_max, "tau_min": self.tau_min}
        )


@dataclass(frozen=True)
class SearchConfig:
    """The whole search (logged whole). ``mode`` picks the error objective provider."""

    mode: Literal["benchmark", "supernet"] = "supernet"
    space: str = "nb201"
    seed: int = 0
    epochs: int = 10
    steps_per_epoch: int = 50  # hypernetwork steps per epoch (supernet mode: also weight steps)
    num_rays: int = 24  # evaluation preference rays per device
    archive: bool = False  # fronts of every architecture any evaluation's rays chose for the device (judged
    # again at the end), not only the last evaluation's: an external archive, as multi-objective EAs keep
    refine_rounds: int = 0  # with the archive: rounds adding every one-decision neighbour of each device's
    # archived front to its archive (judged by the same supernet / predictor), filling gaps between the rays
    eval_every: int = 1  # epochs between front evaluations (the last epoch is always evaluated)
    threads: int = 1  # torch intra-op threads (tiny tensors: 1 is fastest on a shared CPU)
    device: str = "cpu"  # torch device
    checkpoint_dir: str = ""  # "" = no checkpoints
    hypernet: HypernetConfig = field(default_factory=HypernetConfig)
    architect: ArchitectConfig = field(default_factory=ArchitectConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    shortlist: ShortlistConfig = field(default_factory=ShortlistConfig)  # fronts confirmed by measurement

    def __post_init__(self) -> None:
        from .spaces import available_search_spaces

        check_registered("mode", self.mode, "mode", available_modes())
        check_registered("space", self.space, "search space", available_search_spaces())
        if self.supernet.pretrain_sampling == "sandwich" and not get_search_space(self.space).ordered_by_size:
            raise FieldError("supernet.pretrain_sampling", f"sandwich needs a space ordered by size; {self.space!r} "
                             "has no smallest / largest architecture (use uniform)")  # fmt: skip
        if self.seed < 0:
            raise FieldError("seed", f"must be >= 0, got {self.seed}")
        if self.refine_rounds < 0 or (self.refine_rounds and not self.archive):
            raise FieldError("refine_rounds", "must be >= 0, and needs archive: true")
        for name in ("epochs", "steps_per_epoch", "num_rays", "eval_every", "threads"):
            if int(getattr(self, name)) < 1:
                raise FieldError(name, f"must be >= 1, got {getattr(self, name)}")
        check_torch_device(self.device)


def config_fingerprint(cfg: SearchConfig, inputs: Mapping[str, str] | None = None) -> str:
    """Hash of the config fields that shape the search state plus ``inputs`` (:func:`search_inputs`: content
    hashes of the data, tables and model files, and the code versions); a checkpoint only resumes the search
    with the same fingerprint."""
    d = config_to_dict(cfg)
    for volatile in ("checkpoint_dir", "threads"):
        d.pop(volatile, None)
    payload = {"config": d, "inputs": dict(inputs or {}), "checkpoint_version": CHECKPOINT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _digest(h: Any, obj: Any, depth: int = 0) -> None:
    """Feed a canonical byte form of ``obj`` (arrays, tensors, modules, tables, rows) into the hash ``h``."""
    if depth > 8:
        raise TypeError("search input nested too deeply to fingerprint")
    if obj is None or isinstance(obj, (str, int, float, bool)):
        h.update(repr(obj).encode())
    elif isinstance(obj, np.generic):
        h.update(repr(obj.item()).encode())
    elif isinstance(obj, torch.Tensor):
        _digest(h, obj.detach().cpu().numpy(), depth + 1)
    elif isinstance(obj, np.ndarray):
        h.update(f"{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, nn.Module):
        h.update(type(obj).__qualname__.encode())
        _digest(h, obj.state_dict(), depth + 1)
    elif isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            h.update(f"<{k}>".encode())
            _digest(h, obj[k], depth + 1)
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}]".encode())
        for x in obj:
            _digest(h, x, depth + 1)
    elif isinstance(obj, Path):  # the name only: a moved table is the same table
        h.update(obj.name.encode())
    elif isinstance(obj, SearchSpace):
        h.update(obj.name.encode())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(type(obj).__qualname__.encode())
        for f in dataclasses.fields(obj):
            h.update(f"<{f.name}>".encode())
            _digest(h, getattr(obj, f.name), depth + 1)
    elif hasattr(obj, "tensors"):  # torch TensorDataset
        _digest(h, list(obj.tensors), depth + 1)
    else:
        raise TypeError(f"cannot fingerprint a search input of type {type(obj).__name__}")


def content_hash(obj: Any) -> str:
    """sha256 of an in-memory search input (a table, profiling rows, a dataset, a model)."""
    h = hashlib.sha256()
    _digest(h, obj)
    return h.hexdigest()


def file_hash(path: str | Path, field_name: str) -> str:
    """sha256 of a file's bytes; UserError naming ``field_name`` where it cannot be read."""
    p = Path(path)
    h = hashlib.sha256()
    try:
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise UserError(f"{field_name}: {p}: {e.strerror or e}") from None
    return h.hexdigest()


def _torch_file(path: str, field_name: str) -> Any:
    """The payload of a torch file (``weights_only=True``); UserError naming the field where it is not one."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{field_name}: {p}: no such file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure means "not a file of ours"
        raise UserError(f"{field_name}: {p}: not a readable torch file ({type(e).__name__})") from None


def _data_identity(name: str, root: str) -> dict[str, Any]:
    """A dataset by name and, for files under ``root``, their relative paths, sizes and mtimes."""
    out: dict[str, Any] = {"dataset": name, "root": str(Path(root).resolve()) if root else ""}
    if root and Path(root).is_dir():
        files = sorted(q for q in Path(root).rglob("*") if q.is_file())
        out["files"] = [(str(q.relative_to(root)), q.stat().st_size, q.stat().st_mtime_ns) for q in files]
    elif root and Path(root).is_file():  # e.g. an .npz
        out["file"] = (Path(root).stat().st_size, Path(root).stat().st_mtime_ns)
    return out


def _table_hashes(path: Path, field_name: str) -> tuple[str, str]:
    """Content hashes of a table file and of the devices.json beside it ("" where there is none)."""
    from .benchmarks import DEVICES_FILE

    devices = path.parent / DEVICES_FILE
    return file_hash(path, field_name), file_hash(devices, field_name) if devices.is_file() else ""


def search_inputs(cfg: SearchConfig, inject: Mapping[str, Any]) -> dict[str, str]:
    """Identity of everything outside the config that determines the search's result, by content hash: the
    benchmark table and its devices file or the profiling rows, the dataset, the predictor file (or injected
    predictor), the init weights, the space, and the torch / modnas_ops versions."""
    from . import __version__

    ids: dict[str, Any] = {"space": cfg.space, "torch": torch.__version__, "modnas_ops": __version__}
    if cfg.mode == "benchmark":
        prefix = "search.benchmark"
        if inject.get("table") is not None:
            ids["table"] = content_hash(inject["table"])
        else:
            ids["table"], ids["devices_file"] = _table_hashes(benchmark_table_file(cfg), f"{prefix}.table")
    else:
        s, prefix = cfg.supernet, "search.supernet"
        ids["profile_rows"] = content_hash(inject.get("profile_rows"))
        data = inject.get("data")
        ids["data"] = content_hash(data) if data is not None else content_hash(_data_identity(s.dataset, s.data_root))
        if s.init_weights:
            ids["init_weights"] = file_hash(s.init_weights, f"{prefix}.init_weights")
        if s.table_devices:
            from .latency_table import resolve_latency_table

            table = resolve_latency_table(cfg.space, s.latency_table or None)
            ids["latency_table"], ids["latency_table_devices"] = _table_hashes(table, f"{prefix}.latency_table")
    predictor_file = cfg.benchmark.predictor if cfg.mode == "benchmark" else cfg.supernet.predictor
    if inject.get("predictor") is not None:
        ids["predictor"] = content_hash(inject["predictor"])
    elif predictor_file:
        ids["predictor"] = file_hash(predictor_file, f"{prefix}.predictor")
    return {k: v if isinstance(v, str) else content_hash(v) for k, v in ids.items()}


def checkpoint_path(cfg: SearchConfig, fingerprint: str) -> Path | None:
    """Where the search with ``fingerprint`` keeps its checkpoint: one folder per fingerprint under
    ``cfg.checkpoint_dir`` (different inputs never share a checkpoint); None without a checkpoint_dir."""
    return Path(cfg.checkpoint_dir) / fingerprint / CHECKPOINT_FILE if cfg.checkpoint_dir else None


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
    checkpoint: Path | None = None  # the search's checkpoint file (None without a checkpoint_dir)
    fingerprint: str = ""
    reference: dict[str, np.ndarray] = field(default_factory=dict)  # device -> (R, M) judged reference archs
    unconfirmed_fronts: pd.DataFrame | None = None  # with search.shortlist: the fronts before confirmation
    objective: ErrorObjective | None = None  # the mode's provider (its models, measurements, judgement)
    rays: np.ndarray | None = None  # (R, M) evaluation preference rays
    scalarise: Callable[..., torch.Tensor] | None = None  # the architect's scalarisation


# ---- checkpoints -------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic ``torch.save`` (a kill mid-write leaves the previous checkpoint intact)."""
    atomic_torch_save(state, path)


CHECKPOINT_KEYS = ("fingerprint", "epoch", "architect", "scheduler", "objective", "history")


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (``weights_only=True``) of the unfinished search ``fingerprint``; None where
    there is none or its search finished (a finished search is never resumed: a rerun starts afresh).
    UserError naming the file where it is not a readable search checkpoint or belongs to another search."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure: corrupt, truncated or not ours
        raise UserError(
            f"{path}: not a readable search checkpoint ({type(e).__name__}); delete it to start afresh"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise UserError(f"{path}: not a search checkpoint; delete it to start afresh")
    if state["fingerprint"] != fingerprint:
        raise UserError(f"{path}: checkpoint of another search (fingerprint {state['fingerprint']!r})")
    if state.get("finished"):
        log.info("checkpoint %s is of a finished search: starting a fresh search (not resuming)", path)
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


ArchiveKey = tuple[str, Genotype]  # (device, genotype)


def add_to_archive(
    archive: dict[ArchiveKey, dict[str, float]], fronts: pd.DataFrame, space: SearchSpace, epoch: int
) -> None:
    """Record each (device, architecture) of an evaluation's rows with the preference and epoch it was first
    chosen at."""
    prefs = [c for c in fronts.columns if c.startswith("pref_")]
    for r in fronts.to_dict("records"):
        key = (str(r["device"]), space.from_string(str(r["arch"])))
        archive.setdefault(key, {**{p: float(r[p]) for p in prefs}, "epoch": float(epoch)})


def add_front_neighbours(
    archive: dict[ArchiveKey, dict[str, float]], fronts: pd.DataFrame, space: SearchSpace, epoch: int
) -> int:
    """Add every one-decision neighbour (canonical) of each device's on-front architectures to its archive,
    with the preference of the front architecture it neighbours; returns how many were new."""
    added = 0
    for r in fronts[fronts["on_front"]].to_dict("records"):
        info = {k: float(v) for k, v in r.items() if str(k).startswith("pref_")}
        for g in space.neighbours(space.from_string(str(r["arch"]))):
            key = (str(r["device"]), space.canonical(g))
            if key not in archive:
                archive[key] = {**info, "epoch": float(epoch), "neighbour": 1.0}
                added += 1
    return added


def evaluate_archive(
    objective: ErrorObjective, archive: Mapping[ArchiveKey, Mapping[str, float]]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every device's archived architectures judged together (one row each, with the preference and epoch that
    first chose it); ``on_front`` marks the non-dominated ones."""
    frames, metrics = [], {}
    for dev in objective.devices:
        entries = [(g, info) for (name, g), info in archive.items() if name == dev.name]
        if not entries:
            continue
        rows, m = objective.judge(dev, [g for g, _ in entries])
        for j, key in enumerate(k for k in entries[0][1] if k.startswith("pref_")):
            rows.insert(3 + j, key, [info[key] for _, info in entries])
        rows["epoch"] = [int(info["epoch"]) for _, info in entries]
        rows["source"] = ["neighbour" if info.get("neighbour") else "rays" for _, info in entries]
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


def confirmed_metrics(
    before: Mapping[str, float],
    after: Mapping[str, float],
    devices: Sequence[SearchDevice],
    confirmed: Sequence[str],
) -> dict[str, float]:
    """Per-device metrics after the measured shortlist (with aggregates): a confirmed device's figures are
    ``after``'s, its earlier (predicted) ones stay as ``<metric>_zero_shot/<device>`` on test devices (anchors
    only) and ``<metric>_unconfirmed/<device>`` on train devices; other devices keep ``before``'s."""
    split = {d.name: d.split for d in devices}
    out: dict[str, float] = {}
    for key, value in before.items():
        prefix, _, name = key.partition("/")
        if name in confirmed:
            out[f"{prefix}_{'zero_shot' if split[name] == 'test' else 'unconfirmed'}/{name}"] = value
        elif name in split:
            out[key] = value
    out.update({k: v for k, v in after.items() if k.partition("/")[2] in split})
    return with_aggregates(out, devices)


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


def _load_predictor_file(cfg: SearchConfig) -> nn.Module | None:
    """The MetaPredictor file the config names (None where it names none); UserError naming the field where
    the file is missing, not a predictor, or of other shapes / hyperparameters."""
    from .predictor import MetaPredictor

    field_name = f"search.{cfg.mode}.predictor"
    path = cfg.benchmark.predictor if cfg.mode == "benchmark" else cfg.supernet.predictor
    if not path:
        return None
    if not Path(path).is_file():
        raise UserError(f"{field_name}: {path}: no such file")
    try:
        return MetaPredictor.load(path)
    except (ValueError, RuntimeError, TypeError, KeyError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{field_name}: {text if text.startswith(path) else f'{path}: {text}'}") from None


def _check_init_weights(cfg: SearchConfig) -> None:
    """UserError naming ``search.supernet.init_weights`` where the file is missing or not a readable torch file
    (a corrupt or foreign file is refused before any work; its fit to the search is checked on loading)."""
    if cfg.mode == "supernet" and cfg.supernet.init_weights:
        payload = _torch_file(cfg.supernet.init_weights, "search.supernet.init_weights")
        if not isinstance(payload, dict):
            raise UserError(f"search.supernet.init_weights: {cfg.supernet.init_weights}: not a supernet file")


def benchmark_table_file(cfg: SearchConfig) -> Path:
    """The benchmark table file the config (or $MODNAS_NB201_TABLE) names; UserError naming the field."""
    from .benchmarks import resolve_table_path

    try:
        path = resolve_table_path(cfg.benchmark.table or None)
    except ValueError as e:
        raise UserError(f"search.benchmark.table: {str(e).splitlines()[0]}") from None
    if path is None or not path.is_file():
        raise UserError(
            f"search.benchmark.table: {cfg.benchmark.table or '$MODNAS_NB201_TABLE'}: no benchmark table file "
            "(pass a path or set $MODNAS_NB201_TABLE)"
        )
    return path


def preflight(cfg: SearchConfig) -> None:
    """The checks of :func:`run_search` that need no data, for entry points to run before expensive steps (a
    quick profile): the benchmark table, predictor and init-weights files exist and are readable. UserError
    naming the field otherwise. (The config fields themselves are validated on construction.)"""
    if cfg.mode == "benchmark":
        benchmark_table_file(cfg)
    _load_predictor_file(cfg)
    _check_init_weights(cfg)


def run_search(
    cfg: SearchConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    run_id: str = "",
    on_resume: Callable[[dict[str, Any]], None] | None = None,
    measure: Measure | None = None,
    shard: DeviceShard | None = None,
    **inject: Any,
) -> SearchResult:
    """Run (or resume) the search ``cfg`` describes; ``on_epoch(epoch, metrics)`` after each epoch's
    evaluation; ``inject``: prepared ``table`` / ``predictor`` (benchmark) or ``data`` / ``profile_rows`` /
    ``predictor`` (supernet).

    With a ``checkpoint_dir`` the search checkpoints every epoch under its fingerprint (config + content hashes
    of every input, :func:`search_inputs`) and resumes an unfinished checkpoint of the same fingerprint,
    calling ``on_resume(state)`` first (``state["history"]``: the metrics of the epochs done, ``state["run_id"]``:
    the ``run_id`` of the run that wrote it, e.g. an MLflow run to close). A finished search never resumes.
    With ``search.shortlist.k`` the fronts are confirmed by measurement at the end (:mod:`.shortlist`);
    ``measure(objective, device, genotypes)`` measures there (default: the mode's own, a table lookup in benchmark
    mode)."""
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    device = check_torch_device(cfg.device)
    space = get_search_space(cfg.space)
    if inject.get("predictor") is None:
        predictor = _load_predictor_file(cfg)
        if predictor is not None:
            inject["predictor"] = predictor
    _check_init_weights(cfg)
    fingerprint = config_fingerprint(cfg, search_inputs(cfg, inject))
    ckpt_path = checkpoint_path(cfg, fingerprint)
    if ckpt_path is not None:
        from .cli import ensure_writable

        ensure_writable(ckpt_path.parent, "search.checkpoint_dir")
    state = load_checkpoint(ckpt_path, fingerprint) if ckpt_path else None
    if state is not None and on_resume is not None:
        on_resume(state)

    context = SearchContext(seed=cfg.seed, epochs=cfg.epochs, steps_per_epoch=cfg.steps_per_epoch)
    objective = create_objective(cfg.mode, getattr(cfg, cfg.mode), context, space, device, **inject)
    if state is not None:
        objective.load_state_dict(state["objective"])
    rng = np.random.default_rng(cfg.seed)
    objective.setup(rng)
    setup_s = time.perf_counter() - start
    num_objectives = len(objective.objectives)
    metrics_names = tuple(getattr(objective.predictor, "metrics", ()))
    if (ERROR, *metrics_names) != objective.objectives:
        raise UserError(
            f"search.{cfg.mode}.predictor: predictor metrics {metrics_names} do not match the objectives "
            f"{objective.objectives[1:]}"
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
        embedding_dim=space.num_anchors,
        mask=space.mask.tolist(),
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
    archive: dict[ArchiveKey, dict[str, float]] = {}
    first_epoch = 0
    if state is not None:
        archive = {(d, tuple(g)): dict(info) for d, g, info in state.get("archive", [])}
        architect.load_state_dict(state["architect"])
        scheduler.load_state_dict(state["scheduler"])
        history = list(state["history"])
        first_epoch = int(state["epoch"]) + 1
        log.info("resuming the search at epoch %d from %s", first_epoch, ckpt_path)

    fronts, metrics = pd.DataFrame(), {}
    for epoch in range(first_epoch, cfg.epochs):
        architect.sampler.set_epoch(epoch, cfg.epochs)
        objective.set_epoch(epoch)
        architect.entropy_weight = annealed_entropy_weight(acfg.entropy_weight, acfg.entropy_decay, epoch / cfg.epochs)
        losses = []
        for _ in tqdm(range(cfg.steps_per_epoch), desc=f"epoch {epoch}", leave=False, disable=not progress):
            batch = objective.before_hypernet_step(architect, train_devices)
            if not objective.hypernet_frozen:
                stats = architect.hypernet_step(train_devices, batch, shard=shard)
                losses.append(float(np.mean(list(stats.loss.values()))))
                scheduler.step()
        epoch_metrics: dict[str, float] = {"epoch": float(epoch), **objective.extra_metrics()}
        if losses:
            epoch_metrics["hypernet_loss"] = float(np.mean(losses))
        epoch_metrics.update({f"sampler_{k}": v for k, v in architect.sampler.state().items()})
        if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
            fronts, metrics = evaluate_fronts(objective, architect, rays, device)
            epoch_metrics.update(metrics)
            if cfg.archive:
                add_to_archive(archive, fronts, space, epoch)
        epoch_metrics["wall_time_s"] = time.perf_counter() - start
        history.append(epoch_metrics)
        if shard is not None:  # every rank took the same steps: equal copies, or a loud error
            shard.check_in_sync(hypernet.parameters(), "the hypernetwork")
            supernet = objective.trained_supernet()
            if supernet is not None:
                shard.check_in_sync(supernet.parameters(), "the supernet weights")
        if ckpt_path is not None and (shard is None or shard.rank == 0):  # rank 0 checkpoints
            save_checkpoint(
                ckpt_path,
                {
                    "fingerprint": fingerprint,
                    "finished": epoch == cfg.epochs - 1,
                    "run_id": run_id,
                    "epoch": epoch,
                    "architect": architect.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "objective": objective.state_dict(),
                    "history": history,
                    "archive": [[d, list(g), info] for (d, g), info in archive.items()],
                },
            )
        if on_epoch is not None:
            on_epoch(epoch, epoch_metrics)
    if fronts.empty:  # resumed after the last epoch: evaluate once more
        fronts, metrics = evaluate_fronts(objective, architect, rays, device)
        if cfg.archive:
            add_to_archive(archive, fronts, space, cfg.epochs - 1)
    if cfg.archive:
        fronts, metrics = evaluate_archive(objective, archive)
        for _ in range(cfg.refine_rounds):
            if not add_front_neighbours(archive, fronts, space, cfg.epochs):
                break
            fronts, metrics = evaluate_archive(objective, archive)
    unconfirmed = None
    if cfg.shortlist.k:
        unconfirmed = fronts
        fronts, after, confirmed = confirm_fronts(
            objective, hypernet, rays, device, cfg.shortlist, architect.scalarise, fronts, measure
        )
        metrics = confirmed_metrics(metrics, after, objective.devices, confirmed)
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
        checkpoint=ckpt_path,
        fingerprint=fingerprint,
        reference={
            d.name: ref for d in objective.devices if (ref := objective.reference_points(d)) is not None
        },
        unconfirmed_fronts=unconfirmed,
        objective=objective,
        rays=rays,
        scalarise=architect.scalarise,
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
    "check_torch_device",
    "checkpoint_path",
    "config_fingerprint",
    "content_hash",
    "create_objective",
    "evaluate_fronts",
    "load_checkpoint",
    "preflight",
    "register_objective",
    "run_search",
    "save_checkpoint",
    "search_inputs",
]

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

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
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
from .config import config_to_dict
from .hypernetwork import HypernetworkBase, create_hypernetwork
from .objectives import (
    ERROR,
    BenchmarkObjective,
    ErrorObjective,
    SearchDevice,
    SupernetObjective,
    available_modes,
    create_objective,
    register_objective,
)
from .pareto import preference_rays
from .sampling import create_sampler
from .spaces import SearchSpace, get_search_space

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "search_checkpoint.pt"

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
        if self.mode not in available_modes():
            raise ValueError(f"unknown mode {self.mode!r}; available: {', '.join(available_modes())}")


def config_fingerprint(cfg: SearchConfig) -> str:
    """Hash of the config fields that shape the search state (a checkpoint only resumes the same search)."""
    d = config_to_dict(cfg)
    for volatile in ("checkpoint_dir", "threads", "eval_every"):
        d.pop(volatile, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


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
        architect.entropy_weight = annealed_entropy_weight(acfg.entropy_weight, acfg.entropy_decay, epoch / cfg.epochs)
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

"""Fitting (device mixup, early stopping) and evaluation (ranking metrics per device) of the MetaPredictor."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..predictor_baselines import ranking_metrics
from ..spaces import SearchSpace, get_search_space
from .data import ArchSplit, DeviceMeasurements, split_architectures
from .model import LATENCY, OPTIONAL_METRICS, MetaPredictor, denormalise
from .nets import PREDICTOR_NETS, available_predictor_nets

log = logging.getLogger(__name__)

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
    keys = np.unique(np.concatenate([space.index_batch(d.genotypes[r]) for d, r in zip(devices, rows, strict=True)]))
    pos = {int(k): i for i, k in enumerate(keys)}
    y = np.full((len(keys), len(devices), len(metrics)), np.nan, dtype=np.float32)
    for j, (d, r) in enumerate(zip(devices, rows, strict=True)):
        at = np.array([pos[int(k)] for k in space.index_batch(d.genotypes[r])], dtype=np.int64)
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
        metrics = [LATENCY] + [m for m in OPTIONAL_METRICS if all(m in d.anchor_values for d in train_devs)]
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
            is_anchor = np.isin(sp.index_batch(d.genotypes[r]), list(anchor_keys))
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

    # samples = (arch, device) pairs with a measurement of some metric
    a_idx, d_idx = torch.nonzero(torch.isfinite(train.y).any(-1), as_tuple=True)
    num_devices = train.emb.shape[0]
    steps_per_epoch = max(1, math.ceil(len(a_idx) / config.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    va_a, va_d = torch.nonzero(torch.isfinite(valid.y).any(-1), as_tuple=True)

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

"""Supernet weight pre-training with sampled architectures (single-path one-shot), and saving / loading the
trained supernet so a search can start from it (``search.supernet.init_weights``).

``uniform``: every step draws one architecture uniformly from the space, feeds its exact one-hot op weights
(so only the chosen ops run) and steps the shared weights on the task's loss of a train batch. ``sandwich``
(BigNAS; HW-GPT-Bench's super-transformer recipe): every step trains the space's largest and smallest
architecture and ``sandwich_random`` uniform ones on the same batch, one step on their mean loss, so the widest
slices are trained as often as the narrow ones (for spaces ordered by size: widths, depths, kernels). Momentum
SGD or AdamW (``optimizer``), cosine learning rate. After each epoch the mean valid error of a fixed set of
random architectures measures progress.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .atomic import atomic_torch_save
from .data import CLASSIFICATION, Task
from .errors import UserError
from .spaces import Genotype, get_search_space
from .standalone import WEIGHT_OPTIMIZERS, optimizer_step, weight_optimizer

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
SAMPLINGS = ("uniform", "sandwich")  # pre-training architecture sampling (module docstring)


@dataclass(frozen=True)
class PretrainConfig:
    """Uniform-sampling supernet training."""

    epochs: int = 20
    steps_per_epoch: int = 0  # 0 = one pass over the train split per epoch
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    eval_archs: int = 16  # fixed random architectures whose mean valid error is reported per epoch
    seed: int = 0
    sampling: str = "uniform"  # uniform | sandwich (module docstring)
    sandwich_random: int = 2  # sandwich: uniform architectures beside the largest and the smallest per step
    optimizer: str = "sgd"  # sgd | adamw (modnas_ops.standalone.WEIGHT_OPTIMIZERS)

    def __post_init__(self) -> None:
        if self.optimizer not in WEIGHT_OPTIMIZERS or not 0 <= self.momentum < 1:
            raise ValueError(f"pretrain: optimizer must be one of {WEIGHT_OPTIMIZERS} and 0 <= momentum < 1")
        if self.sampling not in SAMPLINGS or self.sandwich_random < 0:
            raise ValueError("pretrain: sampling must be 'uniform' or 'sandwich' and sandwich_random >= 0")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_archs < 1 or self.steps_per_epoch < 0:
            raise ValueError("pretrain: need epochs, batch_size, eval_archs >= 1 and steps_per_epoch >= 0")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("pretrain: need lr > 0, weight_decay >= 0, grad_clip >= 0")


@torch.no_grad()
def valid_error(
    supernet: nn.Module,
    genotypes: Sequence[Genotype],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 256,
    task: Task = CLASSIFICATION,
) -> np.ndarray:
    """(R,) error of each genotype on (x, y) under the shared weights (the task's: percent misclassified, or
    nats per token), with batch-statistics BN; the supernet's BN running statistics and train/eval mode are
    restored afterwards."""
    saved = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k or "num_batches" in k}
    was_training = supernet.training
    supernet.train()
    device = next(supernet.parameters()).device
    out = []
    try:
        for g in genotypes:
            w = torch.from_numpy(supernet.space.one_hot(g)).to(device)
            total = 0.0
            for i in range(0, len(x), batch_size):
                xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
                total += task.error_sum(supernet(xb, w), yb)
            out.append(total / max(1, len(x)))
    finally:
        supernet.load_state_dict(saved, strict=False)
        supernet.train(was_training)
    return np.asarray(out, dtype=np.float64)


def pretrain_supernet(
    supernet: nn.Module,
    train: Any,
    valid: Any,
    cfg: PretrainConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    task: Task = CLASSIFICATION,
) -> list[dict[str, float]]:
    """Train ``supernet`` in place on ``train`` (a TensorDataset) with sampled architectures (``cfg.sampling``);
    returns per-epoch ``train_loss`` (mean over the step's architectures) and ``valid_error_mean`` /
    ``valid_error_min`` (the task's error)."""
    device = next(supernet.parameters()).device
    space = supernet.space
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    x_all, y_all = train.tensors
    bs = min(cfg.batch_size, len(x_all))
    steps = cfg.steps_per_epoch or math.ceil(len(x_all) / bs)
    opt = weight_optimizer(supernet.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
    eval_set = [space.sample(rng) for _ in range(cfg.eval_archs)]
    fixed = list(space.smallest_and_largest()) if cfg.sampling == "sandwich" else []
    per_step = cfg.sandwich_random if fixed else 1
    history = []
    for epoch in tqdm(range(cfg.epochs), desc="supernet", disable=not progress, leave=False):
        supernet.train()
        order = torch.randperm(len(x_all), generator=gen)
        losses = []
        for step in range(steps):
            idx = order[(step * bs) % len(order) :][:bs]
            if len(idx) < bs:
                idx = torch.cat([idx, order[: bs - len(idx)]])
            xb, yb = x_all[idx].to(device), y_all[idx].to(device)
            archs = [*fixed, *(space.sample(rng) for _ in range(per_step))]
            loss = torch.stack(
                [task.loss(supernet(xb, torch.from_numpy(space.one_hot(g)).to(device)), yb) for g in archs]
            ).mean()
            losses.append(optimizer_step(loss, supernet.parameters(), opt, sched, cfg.grad_clip))
        errs = valid_error(supernet, eval_set, *valid.tensors, task=task)
        m = {
            "epoch": float(epoch),
            "train_loss": float(np.mean(losses)),
            "valid_error_mean": float(errs.mean()),
            "valid_error_min": float(errs.min()),
        }
        history.append(m)
        if on_epoch is not None:
            on_epoch(epoch, m)
    return history


def save_supernet(supernet: nn.Module, path: str | Path) -> Path:
    """Atomic ``torch.save`` of the supernet's space, the arguments that rebuild it
    (``space.build_supernet(**build_args)``) and its weights."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "space": supernet.space.name,
        "build_args": dict(supernet.build_args),
        "state_dict": {k: v.detach().cpu() for k, v in supernet.state_dict().items()},
    }
    atomic_torch_save(payload, p)
    return p


def load_supernet(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Inverse of :func:`save_supernet` (``weights_only=True``); a file that is not a supernet of this format
    is a :class:`UserError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such supernet file")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError, EOFError, RuntimeError of a corrupt zip ...
        raise UserError(f"{p}: not a readable supernet file ({type(e).__name__})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise UserError(f"{p}: not a supernet file of format {FORMAT_VERSION}")
    space = get_search_space(payload["space"])
    net = space.build_supernet(**payload["build_args"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise UserError(f"{p}: weights do not fit its {space.name} supernet: {str(e).splitlines()[0]}") from e
    return net.to(map_location)


def check_compatible(net: nn.Module, space_name: str, build_args: dict[str, Any], field: str = "init_weights") -> None:
    """UserError (naming ``field``) for the first mismatch between a loaded supernet and the one a search
    builds."""
    if net.space.name != space_name:
        raise UserError(f"{field}: the supernet is of space {net.space.name!r}, the config needs {space_name!r}")
    have = dict(net.build_args)
    for k, v in build_args.items():
        if have.get(k) != v:
            raise UserError(f"{field}: the supernet has {k}={have.get(k)}, the config needs {k}={v}")


__all__ = [
    "PretrainConfig",
    "check_compatible",
    "load_supernet",
    "pretrain_supernet",
    "save_supernet",
    "valid_error",
]

"""Standalone training: an architecture trained on its own (not inside the supernet) with one fixed recipe.

This is the ground truth the supernet search is checked against (``projects/bench_supernet.py``) and the
fine-tuning of the subnets a search registers: SGD with Nesterov momentum (or AdamW, ``optimizer``), cosine
learning rate over a fixed number of steps of uniformly drawn mini-batches, then the error on a held-out split.
A reference set of standalone results is written to (and read back from) a CSV file keyed by everything that
determines it, so later runs reuse it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from .atomic import atomic_write
from .config import FieldError, check_at_least, check_finite, check_positive, check_registered
from .data import CLASSIFICATION, Task
from .spaces import Genotype, SearchSpace

log = logging.getLogger(__name__)

CACHE_COLUMNS = ("arch", "seed", "error", "train_s")
WEIGHT_OPTIMIZERS = ("sgd", "adamw")  # sgd: momentum SGD; adamw: betas (momentum, 0.95), decoupled decay (GPT)


def weight_optimizer(
    params: Any, name: str, lr: float, momentum: float, weight_decay: float, nesterov: bool = False
) -> torch.optim.Optimizer:
    """The optimizer of network weights named ``name`` (one of :data:`WEIGHT_OPTIMIZERS`): SGD with
    ``momentum`` (Nesterov if asked and momentum > 0), or AdamW with ``momentum`` as its first beta and 0.95 as
    its second (nanoGPT's), the usual choice for transformers."""
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.95), weight_decay=weight_decay)
    raise ValueError(f"weight optimizer must be one of {', '.join(WEIGHT_OPTIMIZERS)}, got {name!r}")


@dataclass(frozen=True)
class TrainRecipe:
    """The standalone training recipe (the same for every architecture)."""

    steps: int = 400
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    seed: int = 0
    optimizer: str = "sgd"  # sgd (Nesterov) | adamw (WEIGHT_OPTIMIZERS)

    def __post_init__(self) -> None:
        check_finite(self)
        check_registered("optimizer", self.optimizer, "weight optimizer", WEIGHT_OPTIMIZERS)
        check_at_least(self, 1, "steps", "batch_size")
        check_positive(self, "lr")
        check_at_least(self, 0, "momentum", "weight_decay", "grad_clip", "seed")
        if not self.momentum < 1:
            raise FieldError("momentum", f"must be < 1, got {self.momentum}")


def optimizer_step(
    loss: torch.Tensor, params: Any, optimizer: torch.optim.Optimizer, scheduler: Any, grad_clip: float = 0.0
) -> float:
    """One step on ``loss``: zero grads, backward, optional norm clipping of ``params``, optimizer and
    scheduler steps; returns the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def train(
    net: nn.Module, data: TensorDataset, recipe: TrainRecipe, device: torch.device, task: Task = CLASSIFICATION
) -> list[float]:
    """Train ``net`` in place on ``data`` with ``recipe``; returns the per-step losses."""
    x_all, y_all = data.tensors
    gen = torch.Generator().manual_seed(recipe.seed)
    net.to(device).train()
    opt = weight_optimizer(
        net.parameters(), recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay, nesterov=True
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.steps)
    losses = []
    for _ in range(recipe.steps):
        idx = torch.randint(len(x_all), (min(recipe.batch_size, len(x_all)),), generator=gen)
        loss = task.loss(net(x_all[idx].to(device)), y_all[idx].to(device))
        losses.append(optimizer_step(loss, net.parameters(), opt, sched, recipe.grad_clip))
    return losses


@torch.no_grad()
def error_percent(
    net: nn.Module, data: TensorDataset, device: torch.device, batch_size: int = 512, task: Task = CLASSIFICATION
) -> float:
    """The task's error of ``net`` in eval mode on ``data`` (top-1 error in percent for classification, mean
    nats per token for a language model); train/eval mode restored afterwards."""
    was_training = net.training
    net.eval()
    x, y = data.tensors
    total = 0.0
    for i in range(0, len(x), batch_size):
        total += task.error_sum(net(x[i : i + batch_size].to(device)).cpu(), y[i : i + batch_size])
    net.train(was_training)
    return total / max(1, len(x))


def train_standalone(
    space: SearchSpace,
    genotype: Sequence[int],
    data: Any,
    network: Mapping[str, Any],
    recipe: TrainRecipe,
    device: torch.device | None = None,
    init: nn.Module | None = None,
) -> tuple[float, nn.Module]:
    """(test error in percent, trained network) of ``genotype`` trained on ``data.train`` with ``recipe``;
    fresh weights seeded by the recipe's seed and the architecture, or starting from ``init`` (fine-tuning,
    e.g. a supernet's ``subnet``). ``network``: the space's network hyper-parameters (C, N, ...)."""
    device = device or torch.device("cpu")
    g = space.canonical(genotype)
    if init is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(space.seed_of(g, recipe.seed * 100_003))
            net = space.build_network(g, data.input_shape, data.num_classes, **dict(network))
    else:
        net = init
    train(net, data.train, recipe, device, data.task)
    return error_percent(net, data.test, device, task=data.task), net


def cache_key(space: SearchSpace, data_name: str, network: Mapping[str, Any], recipe: TrainRecipe) -> str:
    """Short hash of everything a standalone result depends on (space, data, network, recipe but its seed, which
    the cache stores per row, torch)."""
    fields = {k: v for k, v in asdict(recipe).items() if k != "seed"}
    spec = {"space": space.describe(), "data": data_name, "network": dict(network), "recipe": fields}
    blob = json.dumps({**spec, "torch": torch.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def standalone_errors(
    space: SearchSpace,
    genotypes: Sequence[Genotype],
    data: Any,
    network: Mapping[str, Any],
    recipe: TrainRecipe,
    cache: str | Path | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict[tuple[Genotype, int], tuple[float, float]]:
    """``{(canonical genotype, seed): (test error %, train seconds)}`` of every genotype under ``recipe``
    (its seed), trained only where ``cache`` (a CSV of earlier results of the same key) lacks it; new results
    are appended to the cache after each architecture, so an interrupted run loses nothing."""
    path = Path(cache) if cache else None
    done: dict[tuple[Genotype, int], tuple[float, float]] = {}
    if path is not None and path.is_file():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                done[(space.from_string(row["arch"]), int(row["seed"]))] = (float(row["error"]), float(row["train_s"]))
    todo = [g for g in dict.fromkeys(space.canonical(g) for g in genotypes) if (g, recipe.seed) not in done]
    for g in tqdm(todo, desc="standalone training", disable=not progress, leave=False):
        t0 = time.perf_counter()
        err, _ = train_standalone(space, g, data, network, recipe, device)
        done[(g, recipe.seed)] = (err, time.perf_counter() - t0)
        if path is not None:
            _write_cache(path, space, done)
    return {(space.canonical(g), recipe.seed): done[(space.canonical(g), recipe.seed)] for g in genotypes}


def _write_cache(path: Path, space: SearchSpace, done: Mapping[tuple[Genotype, int], tuple[float, float]]) -> None:
    lines = [",".join(CACHE_COLUMNS)]
    for (g, seed), (err, secs) in sorted(done.items(), key=lambda kv: (space.index(kv[0][0]), kv[0][1])):
        lines.append(f"{space.to_string(g)},{seed},{err:.4f},{secs:.3f}")
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


__all__ = [
    "WEIGHT_OPTIMIZERS",
    "TrainRecipe",
    "cache_key",
    "error_percent",
    "optimizer_step",
    "standalone_errors",
    "train",
    "train_standalone",
    "weight_optimizer",
]

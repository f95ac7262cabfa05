"""Supernet validation error as a black-box objective: a uniformly trained one-shot supernet (single-path
uniform sampling, as in SPOS) and the error of any architecture under the shared weights."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from ..data import CLASSIFICATION, Task, cross_entropy
from ..spaces import Genotype, SearchSpace
from ..standalone import optimizer_step, weight_optimizer


def train_supernet_uniform(
    supernet: nn.Module,
    space: SearchSpace,
    train: TensorDataset,
    steps: int,
    device: torch.device,
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 3e-4,
    grad_clip: float = 5.0,
    seed: int = 0,
    progress: bool = False,
    optimizer: str = "sgd",
) -> list[float]:
    """``optimizer`` (momentum SGD or AdamW, :func:`modnas_ops.standalone.weight_optimizer`; cosine schedule)
    on ``train``; each step trains one architecture drawn uniformly at random.

    Returns the per-step cross-entropy losses.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"supernet training: need steps >= 1 and batch_size >= 1, got {steps} and {batch_size}")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = train.tensors
    opt = weight_optimizer(supernet.parameters(), optimizer, lr, momentum, weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    supernet.train()
    losses = []
    for _ in tqdm(range(steps), desc="supernet", disable=not progress, leave=False):
        idx = torch.randint(len(x_all), (min(batch_size, len(x_all)),), generator=gen)
        x, y = x_all[idx].to(device), y_all[idx].to(device)
        weights = torch.from_numpy(space.one_hot(space.sample(rng))).to(device)  # (E, K)
        loss = cross_entropy(supernet(x, weights), y)
        losses.append(optimizer_step(loss, supernet.parameters(), opt, scheduler, grad_clip))
    return losses


class SupernetValidError:
    """``genotype -> error`` (the task's: percent misclassified, or nats per token) on a validation set under
    the supernet's shared weights.

    BatchNorm uses batch statistics (the running statistics of a weight-sharing supernet mix all
    architectures); they are restored after each call, so evaluation never changes the supernet.
    """

    def __init__(
        self,
        supernet: nn.Module,
        space: SearchSpace,
        valid: TensorDataset,
        device: torch.device,
        batch_size: int = 256,
        task: Task = CLASSIFICATION,
    ) -> None:
        if batch_size < 2:
            raise ValueError(f"SupernetValidError: batch_size must be >= 2 (batch statistics), got {batch_size}")
        self.supernet = supernet
        self.space = space
        self.x, self.y = valid.tensors
        self.device = device
        self.batch_size = batch_size
        self.task = task

    @torch.no_grad()
    def __call__(self, genotype: Genotype) -> float:
        saved = {k: v.clone() for k, v in self.supernet.state_dict().items() if "running" in k or "num_batches" in k}
        was_training = self.supernet.training
        self.supernet.train()
        weights = torch.from_numpy(self.space.one_hot(genotype)).to(self.device)  # (E, K)
        total = 0.0
        try:
            for i in range(math.ceil(len(self.x) / self.batch_size)):
                x = self.x[i * self.batch_size : (i + 1) * self.batch_size].to(self.device)
                y = self.y[i * self.batch_size : (i + 1) * self.batch_size].to(self.device)
                total += self.task.error_sum(self.supernet(x, weights), y)
        finally:
            self.supernet.load_state_dict(saved, strict=False)
            self.supernet.train(was_training)
        return total / len(self.x)

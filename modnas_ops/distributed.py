"""The search over several processes (``torchrun``; gloo on CPU, NCCL on GPU): devices sharded over ranks.

Every rank holds the whole search (hypernetwork, optimiser, supernet, random streams) and takes the same
steps. In a hypernetwork step every rank draws the preferences and architectures of *all* devices (one
random stream, as a 1-rank search draws them), but evaluates the objectives and the per-device gradients of
its own contiguous block of devices only — the expensive part, which grows with the number of devices. One
flattened ``all_gather`` per step collects every device's gradient, loss and objectives in device order, so
every rank solves the same MGD problem and applies the same update: the hypernetworks stay equal without
broadcasting parameters. Supernet weight steps are taken by every rank on the same data from the same
seeds, so they stay equal too; :meth:`DeviceShard.check_in_sync` all-gathers a checksum of every parameter
each epoch and fails loudly on drift. Rank 0 alone logs and checkpoints (the entry point's job).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DeviceShard:
    """This process's place among ``world_size`` ranks (torch.distributed must be initialised)."""

    rank: int
    world_size: int

    def blocks(self, num_devices: int) -> list[np.ndarray]:
        """Contiguous device blocks, one per rank (ragged when the ranks do not divide the devices)."""
        return np.array_split(np.arange(num_devices), self.world_size)

    def devices(self, num_devices: int) -> list[int]:
        """Indices of the devices this rank evaluates."""
        return [int(i) for i in self.blocks(num_devices)[self.rank]]

    def gather(self, *shards: torch.Tensor, num_devices: int) -> list[torch.Tensor]:
        """Every rank's rows of each tensor (first dim = its devices) stacked in device order: one padded,
        flattened all_gather for all of them."""
        import torch.distributed as dist

        counts = [len(b) for b in self.blocks(num_devices)]
        widths = [int(np.prod(s.shape[1:])) for s in shards]
        packed = torch.cat([s.reshape(len(s), -1).to(torch.float32) for s in shards], dim=1)  # (T_r, W)
        padded = torch.zeros(max(counts), packed.shape[1], dtype=packed.dtype, device=packed.device)
        padded[: len(packed)] = packed
        out = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(out, padded)
        full = torch.cat([o[:c] for o, c in zip(out, counts, strict=True)])  # (T, W)
        pieces = torch.split(full, widths, dim=1)
        return [p.reshape(num_devices, *s.shape[1:]).to(s.dtype) for p, s in zip(pieces, shards, strict=True)]

    def check_in_sync(self, parameters: Iterable[torch.Tensor], what: str, rtol: float = 1e-5) -> None:
        """RuntimeError when the ranks' copies of ``parameters`` differ (sum and sum of squares)."""
        import torch.distributed as dist

        flat = [p.detach().reshape(-1).double() for p in parameters]
        if not flat:
            return
        v = torch.cat(flat)
        local = torch.stack([v.sum(), (v * v).sum()]).to(flat[0].device)
        out = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(out, local)
        ref = out[0]
        for r, o in enumerate(out[1:], start=1):
            if not torch.allclose(o, ref, rtol=rtol, atol=1e-8):
                raise RuntimeError(f"distributed search: {what} of rank {r} drifted from rank 0 ({o.tolist()} vs "
                                   f"{ref.tolist()})")  # fmt: skip


def from_environment(device: torch.device) -> DeviceShard | None:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): initialise the process group (NCCL for a CUDA device, else
    gloo) and return this rank's shard; None for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DeviceShard(dist.get_rank(), dist.get_world_size())


__all__ = ["DeviceShard", "from_environment"]

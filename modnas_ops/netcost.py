"""Cost counters of standalone networks: parameters and multiply-accumulates (for profiling tables)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, example: Sequence[int] | torch.Tensor) -> int:
    """Multiply-accumulates (MACs, not 2x FLOPs) of Conv2d and Linear layers in one forward pass of
    ``example`` (an input tensor, e.g. ``space.example_input(...)``, or the full shape of an all-zero image
    batch, batch included, e.g. ``(1, 3, 32, 32)``). Biases, BN,
    pooling, ReLU and adds are not counted. ``module(x)`` must take the input alone (a standalone
    network, not the supernet). Runs in eval mode under ``no_grad``; restores train/eval flags after."""
    total = 0

    def conv_hook(m: nn.Conv2d, inputs, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inputs, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    hook_of = {nn.Conv2d: conv_hook, nn.Linear: linear_hook}
    handles = [
        m.register_forward_hook(hook) for m in module.modules() for kind, hook in hook_of.items() if isinstance(m, kind)
    ]
    flags = {m: m.training for m in module.modules()}
    try:
        p = next(module.parameters(), None)
        like = {} if p is None else {"device": p.device, "dtype": p.dtype}
        if isinstance(example, torch.Tensor) and not example.is_floating_point():
            x = example.to(like["device"]) if like else example  # token ids keep their integer dtype
        elif isinstance(example, torch.Tensor):
            x = example.to(**like)
        else:
            x = torch.zeros(tuple(example), **like)
        module.eval()
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in flags.items():
            m.training = training
    return int(total)


__all__ = ["count_flops", "count_params"]

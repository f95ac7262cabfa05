"""A small ragged search space registered for the tests, so every registry-parametrised test runs on two spaces.

Decisions (2, 3 and 4 choices): ``depth`` in {1, 2} blocks, ``kernel`` of block 1 in {1, 3, 5}, ``op2`` of
block 2 in {identity, conv1x1, conv3x3, avgpool}. With depth 1 block 2 is inactive, so ``op2`` does not change
the network: the canonical form sets it to 0 and the string leaves it out. The network: conv3x3 stem -> N
copies of block 1 (ReLU -> conv k x k -> BN) -> block 2 (if active) -> global pool -> linear. The supernet holds
one 5x5 kernel per block-1 copy and slices its centre for k = 1, 3 (Once-for-All's elastic kernel, without the
learned transform), and all four block-2 ops.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from modnas_ops.spaces import Decision, Genotype, SearchSpace, register_search_space

KERNELS = (1, 3, 5)
OPS2 = ("identity", "conv1x1", "conv3x3", "avgpool")


def _op2(name: str, c: int) -> nn.Module:
    if name == "identity":
        return nn.Identity()
    if name == "avgpool":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    k = 1 if name == "conv1x1" else 3
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c))


class ToyNetwork(nn.Module):
    """Standalone network of one genotype: ``forward(x (B, C_in, H, W)) -> (B, classes)``."""

    def __init__(self, genotype: Genotype, in_channels: int, num_classes: int, C: int, N: int) -> None:
        super().__init__()
        depth, kernel, op2 = genotype
        k = KERNELS[kernel]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.block1 = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, k, padding=k // 2, bias=False), nn.BatchNorm2d(C))
            for _ in range(N)
        )
        self.block2 = _op2(OPS2[op2], C) if depth == 1 else None
        self.classifier = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for b in self.block1:
            h = b(h)
        if self.block2 is not None:
            h = self.block2(h)
        return self.classifier(h.mean(dim=(2, 3)))


class ToySupernet(nn.Module):
    """Weight-sharing supernet of the toy space: ``forward(x, weights (3, 4), dense=False)``."""

    def __init__(self, space: ToySpace, input_shape: Sequence[int], num_classes: int, C: int, N: int) -> None:
        super().__init__()
        self.space = space
        self.build_args = {"input_shape": [int(v) for v in input_shape], "num_classes": num_classes, "C": C, "N": N}
        self.stem = nn.Sequential(nn.Conv2d(int(input_shape[0]), C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.kernels = nn.ParameterList(nn.Parameter(torch.randn(C, C, 5, 5) * 0.1) for _ in range(N))
        self.bns = nn.ModuleList(nn.BatchNorm2d(C) for _ in range(N))
        self.ops2 = nn.ModuleList(_op2(name, C) for name in OPS2)
        self.classifier = nn.Linear(C, num_classes)

    @staticmethod
    def _crop(kernel: torch.Tensor, k: int) -> torch.Tensor:
        lo = (5 - k) // 2
        return kernel[:, :, lo : lo + k, lo : lo + k]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, dense: bool = False) -> torch.Tensor:
        if tuple(weights.shape) != self.space.shape:
            raise ValueError(f"weights of shape {tuple(weights.shape)}, expected {self.space.shape}")
        w = weights.to(dtype=x.dtype)
        sel = None if dense else _selection(w, self.space.num_choices)
        h = self.stem(x)
        for kernel, bn in zip(self.kernels, self.bns, strict=True):
            r = torch.relu(h)
            ks = range(len(KERNELS)) if sel is None else [sel[1]]
            h = bn(sum(w[1, j] * nn.functional.conv2d(r, self._crop(kernel, KERNELS[j]), padding=KERNELS[j] // 2)
                       for j in ks))  # fmt: skip
        js = range(len(OPS2)) if sel is None else [sel[2]]
        h2 = sum(w[2, j] * self.ops2[j](h) for j in js)
        h = w[0, 0] * h + w[0, 1] * h2 if sel is None else (w[0, sel[0]] * (h if sel[0] == 0 else h2))
        return self.classifier(h.mean(dim=(2, 3)))

    def subnet(self, genotype: Sequence[int]) -> ToyNetwork:
        g = self.space.canonical(genotype)
        a = self.build_args
        net = ToyNetwork(g, a["input_shape"][0], a["num_classes"], a["C"], a["N"])
        net.stem = copy.deepcopy(self.stem)
        k = KERNELS[g[1]]
        for b, kernel, bn in zip(net.block1, self.kernels, self.bns, strict=True):
            b[1].weight = nn.Parameter(self._crop(kernel, k).detach().clone())
            b[2] = copy.deepcopy(bn)
        if net.block2 is not None:
            net.block2 = copy.deepcopy(self.ops2[g[2]])
        net.classifier = copy.deepcopy(self.classifier)
        return net.train(self.training)


def _selection(w: torch.Tensor, num_choices: Sequence[int]) -> tuple[int, ...] | None:
    """The selected choice per decision if every valid row of ``w`` is exactly one-hot, else None."""
    out = []
    for d, n in enumerate(num_choices):
        row = w[d, :n].detach()
        if not bool(((row == 0) | (row == 1)).all()) or int((row == 1).sum()) != 1:
            return None
        out.append(int(row.argmax()))
    return tuple(out)


@register_search_space
class ToySpace(SearchSpace):
    name = "toy"
    decisions = (
        Decision("depth", ("1", "2")),
        Decision("kernel", tuple(str(k) for k in KERNELS)),
        Decision("op2", OPS2),
    )

    @property
    def num_distinct_architectures(self) -> int:
        return len(KERNELS) + len(KERNELS) * len(OPS2)  # depth 1: op2 inactive

    def canonical(self, genotype: Sequence[int]) -> Genotype:
        g = self.validate(genotype)
        return g if g[0] == 1 else (g[0], g[1], 0)

    def to_string(self, genotype: Sequence[int]) -> str:
        d, k, o = self.canonical(genotype)
        return f"d{d + 1}-k{KERNELS[k]}" + (f"-{OPS2[o]}" if d == 1 else "")

    def from_string(self, arch: str) -> Genotype:
        parts = arch.strip().split("-")
        try:
            depth = int(parts[0].removeprefix("d")) - 1
            kernel = KERNELS.index(int(parts[1].removeprefix("k")))
            op2 = OPS2.index(parts[2]) if depth == 1 else 0
        except (ValueError, IndexError):
            raise ValueError(f"toy: {arch!r} is not of the form d<depth>-k<kernel>[-<op2>]") from None
        if len(parts) != (3 if depth == 1 else 2):
            raise ValueError(f"toy: {arch!r}: depth {depth + 1} takes {3 if depth == 1 else 2} parts")
        return self.validate((depth, kernel, op2))

    def anchors(self) -> list[Genotype]:
        return [(0, 0, 0), (0, 2, 0), (1, 0, 1), (1, 1, 2), (1, 2, 3)]

    def build_supernet(self, input_shape: Sequence[int], num_classes: int, C: int = 4, N: int = 1) -> nn.Module:
        return ToySupernet(self, input_shape, num_classes, C, N)

    def build_network(
        self, genotype: Sequence[int], input_shape: Sequence[int], num_classes: int, C: int = 4, N: int = 1
    ) -> nn.Module:
        return ToyNetwork(self.canonical(genotype), int(input_shape[0]), num_classes, C, N)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "inactive": "op2 when depth = 1"}

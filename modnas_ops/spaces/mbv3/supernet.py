"""The elastic MobileNetV3 supernet of the ``mbv3`` space (Once-for-All's weight sharing, widths scaled down).

    input -> resize to px(r) -> stem conv3x3 (C) -> N fixed depthwise-separable blocks (C)
          -> 5 elastic stages (2C, 3C, 4C, 6C, 8C; strides 1, 2, 2, 1, 2; ReLU, ReLU, h-swish x 3; SE on 1, 3, 4)
          -> 1x1 conv to 6 x 8C -> global pool -> linear 16C -> h-swish -> classifier

Elastic kernel: one 7x7 depthwise weight per block; 5x5 and 3x3 are its centre crops chained through learned
per-block transforms (25x25, 9x9, initialised to the identity; OFA's ``KERNEL_TRANSFORM_MODE``). Elastic
expand: the first ``round(c_in * e)`` middle channels of the expand conv, BN, depthwise, SE and project conv
(``F.batch_norm`` on slices of the running statistics). Elastic depth: a stage runs its first d blocks.
Resolution: the input is resized (bilinear) to ``round(resolution * r / 224)`` pixels.

One discrete subnet per forward (MODNAS): the masked argmax of each decision's weights is run, and the
selected entry of each decision's (straight-through) weight multiplies what it chose — the resized input by
its r entry, a block's residual branch by its kernel and expand entries, a stage's output by its depth
entry — so gradients reach the chosen logits while no mixture is computed. ``dense=True`` computes every
kernel x expand branch of every block slot and every depth's output (9 branches per block); the resolution
stays the selected one (25 forwards per step would be absurd), so its unselected entries get gradient from
finite differences only. ``subnet(genotype)`` copies the sliced weights into a static network (plain
convolutions of the chosen sizes: no slicing in the exported graph).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..base import Genotype, SearchSpace
from .space import D0, E0, KS0, MBV3_DEPTHS, MBV3_EXPANDS, MBV3_KERNELS, MBV3_MAX_DEPTH, MBV3_RESOLUTIONS, R

STAGE_WIDTHS = (2, 3, 4, 6, 8)  # x C
STAGE_STRIDES = (1, 2, 2, 1, 2)
STAGE_HSWISH = (False, False, True, True, True)
STAGE_SE = (False, True, False, True, True)
FINAL_EXPAND = 6  # x the last stage's width
FEATURE_MIX = 16  # x C
MAX_KERNEL = max(MBV3_KERNELS)


def _act(hswish: bool) -> nn.Module:
    return nn.Hardswish() if hswish else nn.ReLU()


def resolution_px(resolution: int, r: int) -> int:
    """Pixels of the resized input for the space's resolution choice ``r`` (128..224)."""
    return max(4, round(resolution * r / max(MBV3_RESOLUTIONS)))


def _sliced_bn(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn`` on the first ``x.shape[1]`` channels (running statistics of those channels, OFA's dynamic BN)."""
    c = x.shape[1]
    assert bn.running_mean is not None and bn.running_var is not None
    return F.batch_norm(
        x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
        bn.training, bn.momentum if bn.momentum is not None else 0.1, bn.eps,
    )  # fmt: skip


def _copy_bn(bn: nn.BatchNorm2d, c: int) -> nn.BatchNorm2d:
    out = nn.BatchNorm2d(c, eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        out.weight.copy_(bn.weight[:c])
        out.bias.copy_(bn.bias[:c])
        assert bn.running_mean is not None and bn.running_var is not None
        assert out.running_mean is not None and out.running_var is not None
        out.running_mean.copy_(bn.running_mean[:c])
        out.running_var.copy_(bn.running_var[:c])
        out.num_batches_tracked.copy_(bn.num_batches_tracked)
    return out.train(bn.training)


class SqueezeExcite(nn.Module):
    """x * h-sigmoid(expand(relu(reduce(mean(x))))): static, of ``channels`` and ``mid`` channels."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.expand = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


def se_width(channels: int) -> int:
    return max(4, channels // 4)


class DepthwiseSeparable(nn.Module):
    """The fixed first block(s): dw3x3 -> BN -> ReLU -> 1x1 -> BN, residual."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.pw(F.relu(self.bn1(self.dw(x)))))


class MBConv(nn.Module):
    """A static inverted-residual block: 1x1 expand -> BN -> act -> dw kxk -> BN -> act [-> SE] -> 1x1 -> BN."""

    def __init__(self, c_in: int, c_out: int, mid: int, kernel: int, stride: int, hswish: bool, se: bool) -> None:
        super().__init__()
        self.expand = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.dw = nn.Conv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.act = _act(hswish)
        self.se = SqueezeExcite(mid, se_width(mid)) if se else nn.Identity()
        self.project = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn1(self.expand(x)))
        h = self.se(self.act(self.bn2(self.dw(h))))
        h = self.bn3(self.project(h))
        return x + h if self.residual else h


class ElasticMBConv(nn.Module):
    """An inverted-residual block slot with elastic kernel (3/5/7) and expand ratio (3/4/6)."""

    def __init__(self, c_in: int, c_out: int, stride: int, hswish: bool, se: bool) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride, self.hswish = c_in, c_out, stride, hswish
        mid = self.mid(max(MBV3_EXPANDS))
        self.expand = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.dw_weight = nn.Parameter(torch.empty(mid, 1, MAX_KERNEL, MAX_KERNEL))
        nn.init.kaiming_normal_(self.dw_weight, mode="fan_out")
        # learned transforms of the centre crops, 7 -> 5 -> 3 (identity at start), shared over channels
        self.transforms = nn.ParameterDict(
            {f"{k}": nn.Parameter(torch.eye(k * k)) for k in sorted(MBV3_KERNELS, reverse=True)[1:]}
        )
        self.bn2 = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, se_width(mid)) if se else None
        self.project = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.residual = stride == 1 and c_in == c_out

    def mid(self, expand: int) -> int:
        return round(self.c_in * expand)

    def kernel(self, k: int, c: int) -> torch.Tensor:
        """(c, 1, k, k) depthwise weight for kernel k: centre crops chained through the transforms."""
        w = self.dw_weight[:c]
        size = MAX_KERNEL
        for nxt in sorted(MBV3_KERNELS, reverse=True)[1:]:
            if size == k:
                break
            lo = (size - nxt) // 2
            crop = w[:, :, lo : lo + nxt, lo : lo + nxt].reshape(c, nxt * nxt)
            w = (crop @ self.transforms[f"{nxt}"]).reshape(c, 1, nxt, nxt)
            size = nxt
        return w

    def branch(self, x: torch.Tensor, k: int, e: int) -> torch.Tensor:
        c = self.mid(e)
        act = F.hardswish if self.hswish else F.relu
        h = act(_sliced_bn(self.bn1, F.conv2d(x, self.expand.weight[:c])))
        h = act(_sliced_bn(self.bn2, F.conv2d(h, self.kernel(k, c), stride=self.stride, padding=k // 2, groups=c)))
        if self.se is not None:
            s = se_width(c)
            z = F.relu(
                F.conv2d(h.mean(dim=(2, 3), keepdim=True), self.se.reduce.weight[:s, :c], self.se.reduce.bias[:s])
            )
            h = h * F.hardsigmoid(F.conv2d(z, self.se.expand.weight[:c, :s], self.se.expand.bias[:c]))
        return self.bn3(F.conv2d(h, self.project.weight[:, :c]))

    def forward(self, x: torch.Tensor, wk: torch.Tensor, we: torch.Tensor, sel: tuple[int, int] | None) -> torch.Tensor:
        """``wk`` (3,) / ``we`` (3,): the slot's kernel and expand weights; ``sel``: the selected (k, e)
        indices (one branch), or None: every branch weighted by wk[i] * we[j]."""
        pairs = (
            [sel] if sel is not None else [(i, j) for i in range(len(MBV3_KERNELS)) for j in range(len(MBV3_EXPANDS))]
        )
        h = sum(wk[i] * we[j] * self.branch(x, MBV3_KERNELS[i], MBV3_EXPANDS[j]) for i, j in pairs)
        assert isinstance(h, torch.Tensor)
        return x + h if self.residual else h

    def static(self, k: int, e: int) -> MBConv:
        """The chosen kernel and expand as a static block with copied weights."""
        c = self.mid(e)
        blk = MBConv(self.c_in, self.c_out, c, k, self.stride, self.hswish, self.se is not None)
        with torch.no_grad():
            blk.expand.weight.copy_(self.expand.weight[:c])
            blk.dw.weight.copy_(self.kernel(k, c))
            blk.project.weight.copy_(self.project.weight[:, :c])
            if self.se is not None:
                s = se_width(c)
                assert isinstance(blk.se, SqueezeExcite)
                blk.se.reduce.weight.copy_(self.se.reduce.weight[:s, :c])
                blk.se.reduce.bias.copy_(self.se.reduce.bias[:s])
                blk.se.expand.weight.copy_(self.se.expand.weight[:c, :s])
                blk.se.expand.bias.copy_(self.se.expand.bias[:c])
        blk.bn1, blk.bn2, blk.bn3 = _copy_bn(self.bn1, c), _copy_bn(self.bn2, c), _copy_bn(self.bn3, self.c_out)
        return blk.train(self.training)


class _Head(nn.Module):
    def __init__(self, c_last: int, C: int, num_classes: int) -> None:
        super().__init__()
        c = FINAL_EXPAND * c_last
        self.conv = nn.Conv2d(c_last, c, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.mix = nn.Linear(c, FEATURE_MIX * C)
        self.classifier = nn.Linear(FEATURE_MIX * C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.hardswish(self.bn(self.conv(x))).mean(dim=(2, 3))  # (B, 6 * c_last)
        return self.classifier(F.hardswish(self.mix(h)))


class _Stem(nn.Module):
    def __init__(self, in_channels: int, C: int, N: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, C, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(C)
        self.blocks = nn.Sequential(*(DepthwiseSeparable(C) for _ in range(N)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.hardswish(self.bn(self.conv(x))))


class MobileNetV3(nn.Module):
    """A static MobileNetV3 of one architecture: ``forward(x (B, C_in, H, W)) -> (B, classes)``."""

    def __init__(
        self, size: int, input_size: int, stem: nn.Module, blocks: Sequence[nn.Module], head: nn.Module
    ) -> None:
        super().__init__()
        self.size = int(size)
        self.resize = self.size != int(input_size)
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.head(self.blocks(self.stem(x)))


class ElasticMobileNetV3(nn.Module):
    """The weight-sharing supernet: ``forward(x, weights (46, 25), dense=False) -> (B, classes)``."""

    def __init__(
        self,
        space: SearchSpace,
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 8,
        N: int = 1,
        resolution: int = 0,
    ) -> None:
        super().__init__()
        if C < 1 or N < 0 or resolution < 0:
            raise ValueError(f"mbv3: need C >= 1, N >= 0, resolution >= 0, got {C}, {N}, {resolution}")
        self.space = space
        shape = [int(v) for v in input_shape]
        self.input_size = shape[1]
        self.resolution = int(resolution) or self.input_size
        self.build_args = {
            "input_shape": shape,
            "num_classes": int(num_classes),
            "C": C,
            "N": N,
            "resolution": resolution,
        }
        self.stem = _Stem(shape[0], C, N)
        self.stages = nn.ModuleList()
        c_in = C
        for s, width in enumerate(STAGE_WIDTHS):
            c_out = width * C
            self.stages.append(nn.ModuleList(
                ElasticMBConv(c_in if i == 0 else c_out, c_out, STAGE_STRIDES[s] if i == 0 else 1,
                              STAGE_HSWISH[s], STAGE_SE[s])
                for i in range(MBV3_MAX_DEPTH)
            ))  # fmt: skip
            c_in = c_out
        self.head = _Head(c_in, C, num_classes)
        self.to(memory_format=torch.channels_last)  # with channels-last activations: 2x faster steps on CPU

    def forward(self, x: torch.Tensor, weights: torch.Tensor, dense: bool = False) -> torch.Tensor:
        space = self.space
        if tuple(weights.shape) != space.shape:
            raise ValueError(f"mbv3: weights of shape {tuple(weights.shape)}, expected {space.shape}")
        w = weights.to(device=x.device, dtype=x.dtype)  # (D, K)
        mask = space.mask_tensor(w.device)
        chosen = w.detach().masked_fill(~mask, float("-inf")).argmax(-1).tolist()  # the one subnet run
        r = chosen[R]
        size = resolution_px(self.resolution, MBV3_RESOLUTIONS[r])
        h = x if size == self.input_size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        h = self.stem((h * w[R, r]).contiguous(memory_format=torch.channels_last))  # 2-3x faster depthwise on CPU
        for s, stage in enumerate(self.stages):
            wd = w[D0 + s, : len(MBV3_DEPTHS)]
            depth_idx = chosen[D0 + s]
            run = MBV3_DEPTHS[depth_idx] if not dense else max(MBV3_DEPTHS)
            outs = {}
            for i in range(run):
                b = s * MBV3_MAX_DEPTH + i
                pair = None if dense else (chosen[KS0 + b], chosen[E0 + b])
                h = stage[i](h, w[KS0 + b, : len(MBV3_KERNELS)], w[E0 + b, : len(MBV3_EXPANDS)], pair)
                outs[i + 1] = h
            if dense:
                h = sum(wd[j] * outs[d] for j, d in enumerate(MBV3_DEPTHS))  # type: ignore[assignment]
            else:
                h = h * wd[depth_idx]
        return self.head(h)

    def subnet(self, genotype: Sequence[int]) -> MobileNetV3:
        """The static network of ``genotype`` with the supernet's (sliced, transformed) weights."""
        g: Genotype = self.space.canonical(genotype)
        blocks: list[nn.Module] = []
        for s, stage in enumerate(self.stages):
            for i in range(MBV3_DEPTHS[g[D0 + s]]):
                b = s * MBV3_MAX_DEPTH + i
                blocks.append(stage[i].static(MBV3_KERNELS[g[KS0 + b]], MBV3_EXPANDS[g[E0 + b]]))
        size = resolution_px(self.resolution, MBV3_RESOLUTIONS[g[R]])
        net = MobileNetV3(size, self.input_size, copy.deepcopy(self.stem), blocks, copy.deepcopy(self.head))
        return net.train(self.training)

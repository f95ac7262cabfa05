"""MobileNetV3-elastic space of Once-for-All (Cai et al., ICLR 2020), on the grid of HELP's / MODNAS's OFA table.

5 elastic stages of up to 4 inverted-residual blocks (20 block slots). Every block slot chooses a depthwise
kernel {3, 5, 7} and an expand ratio {3, 4, 6}; every stage a depth {2, 3, 4} (it runs its first d blocks);
the network an input resolution r in {128, 132, ..., 224} (25 values). Decisions, in order: ``ks_<s>.<i>``
(20), ``e_<s>.<i>`` (20), ``d_<s>`` (5), ``r`` (1): D = 46, K_max = 25 (resolution), every other decision
masked beyond its 3 choices.

Block i of stage s is active iff i < d[s]. The kernel and expand choices of inactive blocks do not change
the network: :meth:`MBV3Space.canonical` sets them to 0 and the string writes them as ``x``. Strings read
``ks=7-5-3-x-...|e=6-4-3-x-...|d=3-2-4-2-2|r=176`` (block slot ``4*s + i``); :meth:`from_string` also
accepts the table's filler values for inactive slots.

The predictor encoding is HELP's 160 features ``[ks 60 | e 60 | r 25 | d 15]`` with the kernel and expand
one-hots of inactive blocks zeroed (``preprocess_for_predictor``), a differentiable function of the (D, K)
weights (:meth:`MBV3Space.features`). Anchors: the 10 architectures HELP and MODNAS embed a device with
(rows 1316, 1587, 1621, 1636, 1980, 2329, 2487, 3355, 3740, 4948 of the OFA table).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base import Decision, Genotype, SearchSpace, register_search_space

MBV3_STAGES = 5
MBV3_MAX_DEPTH = 4
MBV3_BLOCKS = MBV3_STAGES * MBV3_MAX_DEPTH  # 20 block slots
MBV3_KERNELS = (3, 5, 7)
MBV3_EXPANDS = (3, 4, 6)
MBV3_DEPTHS = (2, 3, 4)
MBV3_RESOLUTIONS = tuple(range(128, 225, 4))  # 25 values; the table's r one-hot index is (r - 128) // 4
# Rows of the OFA table whose latencies embed a device (HELP's hardware_embedding_index.pt), as (ks, e, d, r)
MBV3_ANCHOR_INDICES = (1316, 1587, 1621, 1636, 1980, 2329, 2487, 3355, 3740, 4948)
MBV3_ANCHORS = (
    ("7-7-5-5-7-7-3-5-7-7-5-7-3-5-3-3-3-5-5-7", "3-6-3-6-6-4-3-6-4-6-6-3-3-4-4-3-3-3-3-4", "4-3-3-4-2", 196),
    ("7-3-3-7-5-3-7-3-5-7-7-7-3-7-5-5-3-5-7-7", "4-3-6-6-6-6-4-3-3-6-3-4-6-3-3-4-6-3-4-3", "3-2-2-3-2", 172),
    ("7-5-7-3-3-3-7-3-7-7-5-7-5-5-7-7-7-7-7-3", "4-4-6-6-4-4-4-6-6-3-6-6-3-6-3-3-3-6-4-6", "2-2-2-2-3", 204),
    ("3-7-5-7-3-3-5-7-3-3-5-3-7-5-3-7-7-5-5-3", "4-3-3-6-3-3-4-4-6-6-4-6-3-6-6-6-4-4-4-6", "4-3-4-4-4", 200),
    ("5-7-3-5-7-7-3-7-7-3-7-7-7-7-7-3-7-7-5-5", "4-6-6-3-4-6-6-6-4-3-3-3-6-4-4-3-4-6-4-4", "2-2-2-3-2", 136),
    ("7-7-5-7-3-7-3-5-3-7-7-5-3-3-7-7-3-5-7-7", "6-4-3-6-6-6-6-3-6-4-6-6-6-6-4-3-4-6-6-3", "4-2-3-4-4", 224),
    ("5-5-7-3-3-3-3-7-7-3-3-5-7-3-3-7-3-3-3-5", "6-3-4-4-3-3-3-6-3-3-4-4-3-3-6-4-3-6-6-3", "4-2-4-2-3", 132),
    ("7-3-7-3-3-7-5-7-7-3-3-3-3-3-3-7-7-7-3-7", "3-6-6-4-6-4-3-4-6-4-4-3-6-3-4-3-4-3-3-6", "2-4-2-4-4", 152),
    ("7-3-3-5-3-7-3-5-5-5-5-3-5-5-3-5-5-5-3-7", "4-4-4-6-6-3-6-4-4-4-4-4-3-4-6-4-6-3-3-3", "2-4-3-4-4", 152),
    ("3-3-7-7-7-7-7-7-5-7-3-7-3-5-5-3-3-7-3-5", "3-3-4-6-6-6-4-3-6-3-3-3-3-3-6-3-6-6-6-3", "4-4-3-4-2", 200),
)

KS0, E0, D0, R = 0, MBV3_BLOCKS, 2 * MBV3_BLOCKS, 2 * MBV3_BLOCKS + MBV3_STAGES  # first decision of each group


def _labels(values: Sequence[int]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@register_search_space
class MBV3Space(SearchSpace):
    """OFA MobileNetV3: 20 kernel + 20 expand decisions (per block slot), 5 depths, 1 resolution."""

    name = "mbv3"
    ordered_by_size = True  # kernels, expands, depths, resolutions all ascending
    decisions = (
        *(Decision(f"ks_{b // 4}.{b % 4}", _labels(MBV3_KERNELS)) for b in range(MBV3_BLOCKS)),
        *(Decision(f"e_{b // 4}.{b % 4}", _labels(MBV3_EXPANDS)) for b in range(MBV3_BLOCKS)),
        *(Decision(f"d_{s}", _labels(MBV3_DEPTHS)) for s in range(MBV3_STAGES)),
        Decision("r", _labels(MBV3_RESOLUTIONS)),
    )

    # ---- genotype facts ----------------------------------------------------------------------------
    @staticmethod
    def depths(genotype: Sequence[int]) -> tuple[int, ...]:
        """(5,) blocks run by each stage."""
        return tuple(MBV3_DEPTHS[int(genotype[D0 + s])] for s in range(MBV3_STAGES))

    @staticmethod
    def active_blocks(genotype: Sequence[int]) -> tuple[bool, ...]:
        """(20,) whether each block slot runs."""
        d = MBV3Space.depths(genotype)
        return tuple(b % MBV3_MAX_DEPTH < d[b // MBV3_MAX_DEPTH] for b in range(MBV3_BLOCKS))

    def canonical(self, genotype: Sequence[int]) -> Genotype:
        g = list(self.validate(genotype))
        for b, active in enumerate(self.active_blocks(g)):
            if not active:
                g[KS0 + b] = g[E0 + b] = 0
        return tuple(g)

    @property
    def num_distinct_architectures(self) -> int:
        per_stage = sum((len(MBV3_KERNELS) * len(MBV3_EXPANDS)) ** d for d in MBV3_DEPTHS)
        return per_stage**MBV3_STAGES * len(MBV3_RESOLUTIONS)

    def config(self, genotype: Sequence[int]) -> dict[str, Any]:
        """The architecture as OFA's dict: ``ks`` / ``e`` (20, None for inactive slots), ``d`` (5), ``r``."""
        g = self.canonical(genotype)
        act = self.active_blocks(g)
        return {
            "ks": [MBV3_KERNELS[g[KS0 + b]] if act[b] else None for b in range(MBV3_BLOCKS)],
            "e": [MBV3_EXPANDS[g[E0 + b]] if act[b] else None for b in range(MBV3_BLOCKS)],
            "d": list(self.depths(g)),
            "r": MBV3_RESOLUTIONS[g[R]],
        }

    def from_config(self, ks: Sequence[Any], e: Sequence[Any], d: Sequence[Any], r: Any) -> Genotype:
        """Genotype of OFA's (ks, e, d, r) (lists or '-'-joined strings); inactive slots may hold any filler
        (a valid value, 'x' or None). ValueError naming the bad part."""

        def parts(v: Any, n: int, what: str) -> list[str]:
            items = v.split("-") if isinstance(v, str) else ["x" if x is None else str(x) for x in v]
            if len(items) != n:
                raise ValueError(f"mbv3: {what} has {len(items)} entries, expected {n}")
            return [s.strip() for s in items]

        def choice(s: str, values: Sequence[int], what: str) -> int:
            try:
                return values.index(int(s))
            except ValueError:
                raise ValueError(f"mbv3: {what} {s!r} not in {list(values)}") from None

        depth = [choice(s, MBV3_DEPTHS, "depth") for s in parts(d, MBV3_STAGES, "d")]
        g = [0] * self.num_decisions
        for s, x in enumerate(depth):
            g[D0 + s] = x
        g[R] = choice(str(r).strip(), MBV3_RESOLUTIONS, "resolution")
        act = self.active_blocks(g)
        for name, values, first in (("ks", MBV3_KERNELS, KS0), ("e", MBV3_EXPANDS, E0)):
            for b, s in enumerate(parts(ks if name == "ks" else e, MBV3_BLOCKS, name)):
                if s in ("x", "None", "0") and not act[b]:
                    continue
                c = choice(s, values, f"{name} of block {b}")
                g[first + b] = c if act[b] else 0
        return self.validate(g)

    def to_string(self, genotype: Sequence[int]) -> str:
        c = self.config(genotype)

        def join(v: Sequence[Any]) -> str:
            return "-".join("x" if x is None else str(x) for x in v)

        return f"ks={join(c['ks'])}|e={join(c['e'])}|d={join(c['d'])}|r={c['r']}"

    def from_string(self, arch: str) -> Genotype:
        fields = {}
        for part in arch.strip().split("|"):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in ("ks", "e", "d", "r") or key.strip() in fields:
                raise ValueError(f"mbv3: {arch!r} is not of the form ks=...|e=...|d=...|r=...")
            fields[key.strip()] = value
        if len(fields) != 4:
            raise ValueError(f"mbv3: {arch!r} needs the four parts ks, e, d and r")
        return self.from_config(fields["ks"], fields["e"], fields["d"], fields["r"])

    table_columns = ("ks", "e", "d", "r")  # OFA's table

    def from_table_row(self, *cells: Any) -> Genotype:
        return self.from_config(*cells)

    def anchors(self) -> list[Genotype]:
        return [self.from_config(*a) for a in MBV3_ANCHORS]

    # ---- predictor encoding ------------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        return 2 * MBV3_BLOCKS * 3 + len(MBV3_RESOLUTIONS) + MBV3_STAGES * len(MBV3_DEPTHS)  # 160

    def features(self, arch: torch.Tensor) -> torch.Tensor:
        """(B, D, K) one-hot (or soft / straight-through) weights -> (B, 160) HELP features ``[ks | e | r | d]``,
        kernel and expand rows of inactive blocks scaled by the probability that the block runs (0 or 1 for a
        one-hot)."""
        b = arch.shape[0]
        depth = arch[:, D0 : D0 + MBV3_STAGES, : len(MBV3_DEPTHS)]  # (B, 5, 3)
        # P(block i of a stage runs) = P(depth > i): columns of depth choices 2, 3, 4
        runs = torch.stack(
            [depth[:, :, [j for j, d in enumerate(MBV3_DEPTHS) if d > i]].sum(-1) for i in range(MBV3_MAX_DEPTH)],
            dim=2,
        ).reshape(b, MBV3_BLOCKS, 1)  # (B, 20, 1)
        ks = arch[:, KS0 : KS0 + MBV3_BLOCKS, : len(MBV3_KERNELS)] * runs  # (B, 20, 3)
        e = arch[:, E0 : E0 + MBV3_BLOCKS, : len(MBV3_EXPANDS)] * runs  # (B, 20, 3)
        r = arch[:, R, : len(MBV3_RESOLUTIONS)]  # (B, 25)
        return torch.cat([ks.flatten(1), e.flatten(1), r, depth.flatten(1)], dim=1)  # (B, 160)

    def decision_graph(self) -> np.ndarray:
        """Resolution -> the block slots in network order (each slot's kernel and expand decisions joined,
        and joined to its stage's depth decision) -> output."""
        n = self.num_decisions + 2
        adj = np.eye(n, dtype=np.float64)
        prev = 1 + R  # the resolution decision feeds the first block
        adj[0, prev] = 1.0
        for blk in range(MBV3_BLOCKS):
            k, e, d = 1 + KS0 + blk, 1 + E0 + blk, 1 + D0 + blk // MBV3_MAX_DEPTH
            for a, c in ((prev, k), (k, e), (e, d)):
                adj[a, c] = 1.0
            prev = e
        adj[prev, n - 1] = 1.0
        return ((adj + adj.T) > 0).astype(np.float64)

    # ---- networks ----------------------------------------------------------------------------------
    def build_supernet(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 8,
        N: int = 1,
        resolution: int = 0,
    ) -> nn.Module:
        """The elastic supernet (:mod:`.supernet`): base width ``C`` (stem; stages 2C/3C/4C/6C/8C), ``N`` fixed
        first blocks (OFA: 1), ``resolution`` pixels at r = 224 (0 = the input's height; r scales it)."""
        from .supernet import ElasticMobileNetV3

        return ElasticMobileNetV3(self, input_shape, num_classes, C=C, N=N, resolution=resolution)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "inactive": "ks and e of block i of stage s when i >= d[s]"}

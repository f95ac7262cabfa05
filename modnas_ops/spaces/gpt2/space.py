"""GPT-2 decoder-only elastic space of HW-GPT-Bench (Sukthanker et al., NeurIPS 2024), its small grid "s".

Decisions, in order: ``embed`` {192, 384, 768}, ``layers`` {10, 11, 12}, per layer slot i = 0..11 an MLP
ratio ``mlp_<i>`` {2, 3, 4} and a head count ``heads_<i>`` {4, 8, 12}, and ``bias`` {False, True} (whether
the Linear layers have biases): D = 27, K_max = 3, every decision but ``bias`` with 3 choices.

Layer slot i runs iff i < layers. The MLP ratio and heads of slots that do not run do not change the
network: :meth:`GPT2Space.canonical` sets them to 0 and the string leaves them out, exactly as the
HW-GPT-Bench table writes its rows: ``embed=384|layers=11|mlp=2-3-...|heads=4-8-...|bias=False`` with
``layers`` entries in ``mlp`` and ``heads``. The table's columns (``embed_dim, n_layer, mlp_ratio, n_head,
bias``) parse with :meth:`from_table_row`.

The predictor encoding is MODNAS's 80-d one-hot of this space ``[embed 3 | layers 3 | mlp 12x3 | heads 12x3 |
bias 2]`` with the rows of layer slots that do not run zeroed, a differentiable function of the (D, K)
weights (:meth:`GPT2Space.features`). Anchors: the table's rows 0..9 (sorted by parameter count, from the
smallest to the GPT-2-small shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base import Decision, Genotype, SearchSpace, register_search_space

GPT2_EMBEDS = (192, 384, 768)
GPT2_LAYERS = (10, 11, 12)
GPT2_MAX_LAYERS = max(GPT2_LAYERS)
GPT2_MLP_RATIOS = (2, 3, 4)
GPT2_HEADS = (4, 8, 12)
GPT2_BIAS = (False, True)
GPT2_HEAD_SIZE = 64  # HW-GPT-Bench: fixed, so the QKV width is 3 * heads * 64 whatever the embedding
GPT2_ANCHOR_INDICES = tuple(range(10))
# Rows 0..9 of the HW-GPT-Bench "s" latency table, as (embed, layers, mlp ratios, heads, bias)
GPT2_ANCHORS = (
    (192, 10, "2-2-2-2-2-2-2-2-2-2", "4-4-4-4-4-4-4-4-4-4", False),
    (192, 11, "2-2-2-3-2-4-4-3-2-4-3", "4-4-4-8-12-12-12-4-8-12-4", False),
    (192, 11, "2-3-4-3-2-2-4-3-2-4-3", "12-8-4-12-8-12-12-4-8-4-12", True),
    (384, 10, "3-4-2-2-2-4-2-2-4-2", "8-4-4-4-12-4-8-8-4-4", True),
    (384, 11, "2-3-2-3-2-4-3-4-4-4-3", "4-8-8-8-4-8-8-8-8-8-4", False),
    (384, 12, "2-2-4-2-2-4-4-2-4-4-4-2", "4-8-4-12-8-12-4-8-4-4-12-8", False),
    (768, 10, "2-2-3-3-3-2-3-2-2-2", "8-8-12-8-4-4-12-4-4-4", False),
    (768, 10, "4-3-4-3-2-4-2-2-4-4", "12-12-4-4-12-8-4-12-8-4", True),
    (768, 11, "4-2-2-3-4-3-3-4-4-3-2", "12-4-12-12-12-8-12-4-8-8-4", False),
    (768, 12, "4-4-4-4-4-4-4-4-4-4-4-4", "12-12-12-12-12-12-12-12-12-12-12-12", True),
)

EMBED, LAYERS = 0, 1
MLP0 = 2
HEADS0 = MLP0 + GPT2_MAX_LAYERS
BIAS = HEADS0 + GPT2_MAX_LAYERS  # 26


def _labels(values: Sequence[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _parse_bool(v: Any) -> bool:
    s = str(v).strip()
    if s in ("True", "true", "1"):
        return True
    if s in ("False", "false", "0"):
        return False
    raise ValueError(f"gpt2: bias {v!r} is not True or False")


@register_search_space
class GPT2Space(SearchSpace):
    """HW-GPT-Bench GPT-S: embedding width, layer count, per-layer MLP ratio and heads, Linear biases."""

    name = "gpt2"
    dynamic_input_axes = True  # token ids of any batch and sequence length (up to the context)
    ordered_by_size = True  # every choice list runs small to large (bias: without, with)
    decisions = (
        Decision("embed", _labels(GPT2_EMBEDS)),
        Decision("layers", _labels(GPT2_LAYERS)),
        *(Decision(f"mlp_{i}", _labels(GPT2_MLP_RATIOS)) for i in range(GPT2_MAX_LAYERS)),
        *(Decision(f"heads_{i}", _labels(GPT2_HEADS)) for i in range(GPT2_MAX_LAYERS)),
        Decision("bias", _labels(GPT2_BIAS)),
    )

    # ---- genotype facts ----------------------------------------------------------------------------
    @staticmethod
    def num_layers(genotype: Sequence[int]) -> int:
        return GPT2_LAYERS[int(genotype[LAYERS])]

    def canonical(self, genotype: Sequence[int]) -> Genotype:
        g = list(self.validate(genotype))
        for i in range(self.num_layers(g), GPT2_MAX_LAYERS):
            g[MLP0 + i] = g[HEADS0 + i] = 0
        return tuple(g)

    @property
    def num_distinct_architectures(self) -> int:
        per_layer = len(GPT2_MLP_RATIOS) * len(GPT2_HEADS)
        return len(GPT2_EMBEDS) * len(GPT2_BIAS) * sum(per_layer**n for n in GPT2_LAYERS)

    def config(self, genotype: Sequence[int]) -> dict[str, Any]:
        """The architecture as HW-GPT-Bench's dict: ``embed_dim``, ``n_layer``, ``mlp_ratio`` / ``n_head``
        (``n_layer`` entries each) and ``bias``."""
        g = self.canonical(genotype)
        n = self.num_layers(g)
        return {
            "embed_dim": GPT2_EMBEDS[g[EMBED]],
            "n_layer": n,
            "mlp_ratio": [GPT2_MLP_RATIOS[g[MLP0 + i]] for i in range(n)],
            "n_head": [GPT2_HEADS[g[HEADS0 + i]] for i in range(n)],
            "bias": GPT2_BIAS[g[BIAS]],
        }

    def from_config(self, embed_dim: Any, n_layer: Any, mlp_ratio: Any, n_head: Any, bias: Any) -> Genotype:
        """Genotype of HW-GPT-Bench's config (lists or '-'-joined strings of ``n_layer`` entries; 12 entries
        are accepted too, those beyond ``n_layer`` ignored). ValueError naming the bad part."""

        def choice(v: Any, values: Sequence[int], what: str) -> int:
            try:
                return values.index(int(str(v).strip()))
            except ValueError:
                raise ValueError(f"gpt2: {what} {v!r} not in {list(values)}") from None

        g = [0] * self.num_decisions
        g[EMBED] = choice(embed_dim, GPT2_EMBEDS, "embed_dim")
        g[LAYERS] = choice(n_layer, GPT2_LAYERS, "n_layer")
        n = GPT2_LAYERS[g[LAYERS]]
        per_layer = (("mlp_ratio", GPT2_MLP_RATIOS, MLP0, mlp_ratio), ("n_head", GPT2_HEADS, HEADS0, n_head))
        for name, values, first, v in per_layer:
            items = v.split("-") if isinstance(v, str) else list(v)
            if len(items) not in (n, GPT2_MAX_LAYERS):
                raise ValueError(f"gpt2: {name} has {len(items)} entries, expected n_layer = {n}")
            for i, s in enumerate(items[:n]):
                g[first + i] = choice(s, values, f"{name} of layer {i}")
        g[BIAS] = GPT2_BIAS.index(_parse_bool(bias))
        return self.validate(g)

    def to_string(self, genotype: Sequence[int]) -> str:
        c = self.config(genotype)

        def join(v: Sequence[int]) -> str:
            return "-".join(str(x) for x in v)

        return (
            f"embed={c['embed_dim']}|layers={c['n_layer']}|mlp={join(c['mlp_ratio'])}|heads={join(c['n_head'])}"
            f"|bias={c['bias']}"
        )

    def from_string(self, arch: str) -> Genotype:
        keys = ("embed", "layers", "mlp", "heads", "bias")
        fields: dict[str, str] = {}
        for part in arch.strip().split("|"):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in keys or key.strip() in fields:
                raise ValueError(f"gpt2: {arch!r} is not of the form embed=...|layers=...|mlp=...|heads=...|bias=...")
            fields[key.strip()] = value.strip()
        if len(fields) != len(keys):
            raise ValueError(f"gpt2: {arch!r} needs the five parts {', '.join(keys)}")
        return self.from_config(*(fields[k] for k in keys))

    table_columns = ("embed_dim", "n_layer", "mlp_ratio", "n_head", "bias")  # HW-GPT-Bench's table

    def from_table_row(self, *cells: Any) -> Genotype:
        return self.from_config(*cells)

    def anchors(self) -> list[Genotype]:
        return [self.from_config(*a) for a in GPT2_ANCHORS]

    # ---- predictor encoding ------------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        return 3 + 3 + 2 * GPT2_MAX_LAYERS * 3 + 2  # 80

    def features(self, arch: torch.Tensor) -> torch.Tensor:
        """(B, D, K) one-hot (or soft / straight-through) weights -> (B, 80) ``[embed | layers | mlp | heads |
        bias]``, the MLP and head rows of layer slot i scaled by the probability that it runs (0 or 1 for a
        one-hot)."""
        layers = arch[:, LAYERS, : len(GPT2_LAYERS)]  # (B, 3)
        runs = torch.stack(
            [layers[:, [j for j, n in enumerate(GPT2_LAYERS) if n > i]].sum(-1) for i in range(GPT2_MAX_LAYERS)],
            dim=1,
        ).unsqueeze(-1)  # (B, 12, 1)
        mlp = arch[:, MLP0 : MLP0 + GPT2_MAX_LAYERS, : len(GPT2_MLP_RATIOS)] * runs  # (B, 12, 3)
        heads = arch[:, HEADS0 : HEADS0 + GPT2_MAX_LAYERS, : len(GPT2_HEADS)] * runs  # (B, 12, 3)
        return torch.cat(
            [arch[:, EMBED, :3], layers, mlp.flatten(1), heads.flatten(1), arch[:, BIAS, : len(GPT2_BIAS)]], dim=1
        )  # (B, 80)

    def decision_graph(self) -> np.ndarray:
        """Input -> embed -> the layer slots in order (each slot's heads then MLP ratio; every slot joined to
        the layer-count decision) -> bias -> output."""
        n = self.num_decisions + 2
        adj = np.eye(n, dtype=np.float64)
        prev = 1 + EMBED
        adj[0, prev] = 1.0
        for i in range(GPT2_MAX_LAYERS):
            h, m = 1 + HEADS0 + i, 1 + MLP0 + i
            for a, c in ((prev, h), (h, m), (m, 1 + LAYERS)):
                adj[a, c] = 1.0
            prev = m
        adj[prev, 1 + BIAS] = 1.0
        adj[1 + BIAS, n - 1] = 1.0
        return ((adj + adj.T) > 0).astype(np.float64)

    # ---- networks ----------------------------------------------------------------------------------
    def example_input(self, input_shape: Sequence[int], batch: int = 1) -> torch.Tensor:
        """(batch, T) int64 token ids in {0, 1} (valid for any vocabulary of >= 2 tokens)."""
        (t,) = (int(x) for x in input_shape)
        return (torch.arange(batch * t).reshape(batch, t) * 7 // 3) % 2

    def build_supernet(
        self, input_shape: Sequence[int], num_classes: int, C: int = 16, N: int = 1, rotary: float = 0.25
    ) -> nn.Module:
        """The weight-sliced super-transformer (:mod:`.supernet`): head size ``C`` (HW-GPT-Bench: 64), embedding
        widths ``C / 64`` of the table's (C = 16: 48 / 96 / 192), ``N`` must be 1 (no fixed layers),
        ``rotary``: share of each head's dimensions rotated. ``input_shape`` = (context,), ``num_classes`` =
        the vocabulary."""
        from .supernet import SuperGPT

        return SuperGPT(self, input_shape, num_classes, C=C, N=N, rotary=rotary)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "inactive": "mlp_i and heads_i of layer slots i >= layers"}

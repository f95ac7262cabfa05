"""The weight-sliced super-transformer of the ``gpt2`` space (HW-GPT-Bench's GPT, widths scaled down).

    tokens (B, T) -> wte[:, :E] -> L parallel-residual blocks -> LayerNorm[:E] -> tied head wte[:, :E]^T

Block i (GPT-NeoX, parallel residual): ``x + attn(ln1(x)) + mlp(ln2(x))``. Attention: ``h`` heads of fixed
size ``C`` (HW-GPT-Bench: 64), causal, rotary position embedding on the first ``rotary`` share of each head's
dimensions; QKV rows laid out head-major (``[head][q, k, v][C]``) so the first h heads are a prefix slice of
one (3 * 12 * C, E_max) weight, and the output projection takes its first h * C input columns. MLP:
``fc2(gelu(fc1(x)))`` with the first ``r * E`` hidden units. LayerNorms use their first E weights. The
embedding widths are the table's scaled by ``C / 64`` (C = 16: 48 / 96 / 192 for 192 / 384 / 768); head
counts, MLP ratios and layer counts are the table's. ``bias`` = False skips every Linear's bias.

One discrete subnet per forward (MODNAS): the masked argmax of each decision's weights is run, and the
selected entry of each decision's (straight-through) weight multiplies what it chose — the token embedding by
its ``embed`` entry, a block's attention and MLP branches by its ``heads_i`` and ``mlp_i`` entries, the final
(normalised) hidden state by its ``layers`` and ``bias`` entries — so gradients reach the chosen logits
while no mixture is computed. ``dense=True`` computes every head count and MLP ratio of every layer slot
(weighted by their entries) and the output after 10, 11 and 12 layers (weighted by the layer entries); the
embedding width and the bias stay the selected ones (their other entries get gradient from finite
differences only). ``subnet(genotype)`` copies the sliced weights into a static model of plain
``nn.Linear`` / ``nn.Embedding`` / ``nn.LayerNorm`` of the chosen sizes (no slicing in an exported graph).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..base import Genotype, SearchSpace
from .space import (
    BIAS,
    EMBED,
    GPT2_BIAS,
    GPT2_EMBEDS,
    GPT2_HEAD_SIZE,
    GPT2_HEADS,
    GPT2_LAYERS,
    GPT2_MAX_LAYERS,
    GPT2_MLP_RATIOS,
    HEADS0,
    LAYERS,
    MLP0,
)

MAX_HEADS = max(GPT2_HEADS)
MAX_RATIO = max(GPT2_MLP_RATIOS)


def rotary_tables(t: int, rot: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, rot) cos and sin of the rotary angles (base 10000) for positions 0..T-1."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, rot, 2, device=device, dtype=torch.float32) / rot))  # (rot / 2,)
    ang = torch.arange(t, device=device, dtype=torch.float32)[:, None] * inv[None, :]  # (T, rot / 2)
    ang = torch.cat([ang, ang], dim=-1)  # (T, rot)
    return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rot: int) -> torch.Tensor:
    """Rotate the first ``rot`` dims of x (B, H, T, C) by (T, rot) tables (GPT-NeoX's rotate-half)."""
    xr, xp = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated = torch.cat([-xr[..., half:], xr[..., :half]], dim=-1)
    return torch.cat([xr * cos + rotated * sin, xp], dim=-1)


def causal_attention(
    x: torch.Tensor, qkv_w: torch.Tensor, qkv_b: torch.Tensor | None, heads: int, head_size: int, rot: int
) -> torch.Tensor:
    """x (B, T, E), head-major QKV weight (3 * heads * C, E) -> (B, T, heads * C) causal attention outputs."""
    b, t, _ = x.shape
    qkv = F.linear(x, qkv_w, qkv_b).view(b, t, heads, 3, head_size)  # (B, T, H, 3, C)
    q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (B, H, T, C)
    if rot:
        cos, sin = rotary_tables(t, rot, x.device)
        q, k = apply_rotary(q, cos, sin, rot), apply_rotary(k, cos, sin, rot)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, C)
    return y.transpose(1, 2).reshape(b, t, heads * head_size)


class Block(nn.Module):
    """A static GPT-NeoX block of ``heads`` heads and MLP width ``hidden``."""

    def __init__(self, e: int, heads: int, head_size: int, hidden: int, bias: bool, rot: int) -> None:
        super().__init__()
        self.heads, self.head_size, self.rot = heads, head_size, rot
        self.ln1, self.ln2 = nn.LayerNorm(e), nn.LayerNorm(e)
        self.qkv = nn.Linear(e, 3 * heads * head_size, bias=bias)
        self.proj = nn.Linear(heads * head_size, e, bias=bias)
        self.fc1 = nn.Linear(e, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, e, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = causal_attention(self.ln1(x), self.qkv.weight, self.qkv.bias, self.heads, self.head_size, self.rot)
        return x + self.proj(a) + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    """A static GPT of one architecture: ``forward(tokens (B, T)) -> logits (B, T, vocab)`` (tied head)."""

    def __init__(self, vocab: int, e: int, blocks: Sequence[Block]) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, e)
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(e)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.wte(tokens)  # (B, T, E)
        for blk in self.blocks:
            h = blk(h)
        return F.linear(self.ln_f(h), self.wte.weight)  # (B, T, V)


class SuperBlock(nn.Module):
    """A layer slot: QKV / projection for up to 12 heads, MLP for ratio up to 4, LayerNorms of E_max."""

    def __init__(self, e_max: int, head_size: int, rot: int) -> None:
        super().__init__()
        self.head_size, self.rot = head_size, rot
        self.ln1, self.ln2 = nn.LayerNorm(e_max), nn.LayerNorm(e_max)
        self.qkv = nn.Linear(e_max, 3 * MAX_HEADS * head_size)
        self.proj = nn.Linear(MAX_HEADS * head_size, e_max)
        self.fc1 = nn.Linear(e_max, MAX_RATIO * e_max)
        self.fc2 = nn.Linear(MAX_RATIO * e_max, e_max)
        for lin in (self.qkv, self.proj, self.fc1, self.fc2):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    @staticmethod
    def _ln(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        e = x.shape[-1]
        return F.layer_norm(x, (e,), ln.weight[:e], ln.bias[:e], ln.eps)

    def attention(self, x: torch.Tensor, heads: int, bias: bool) -> torch.Tensor:
        e, q = x.shape[-1], 3 * heads * self.head_size
        a = causal_attention(
            x, self.qkv.weight[:q, :e], self.qkv.bias[:q] if bias else None, heads, self.head_size, self.rot
        )  # (B, T, heads * C)
        return F.linear(a, self.proj.weight[:e, : heads * self.head_size], self.proj.bias[:e] if bias else None)

    def mlp(self, x: torch.Tensor, ratio: int, bias: bool) -> torch.Tensor:
        e = x.shape[-1]
        hidden = ratio * e
        h = F.gelu(F.linear(x, self.fc1.weight[:hidden, :e], self.fc1.bias[:hidden] if bias else None))
        return F.linear(h, self.fc2.weight[:e, :hidden], self.fc2.bias[:e] if bias else None)

    def forward(
        self, x: torch.Tensor, wh: torch.Tensor, wm: torch.Tensor, sel: tuple[int, int] | None, bias: bool
    ) -> torch.Tensor:
        """``wh`` (3,) / ``wm`` (3,): the slot's heads and MLP-ratio weights; ``sel``: the selected (heads,
        ratio) indices, or None: every head count and ratio, weighted by its entry."""
        a_in, m_in = self._ln(self.ln1, x), self._ln(self.ln2, x)
        hs = [sel[0]] if sel is not None else range(len(GPT2_HEADS))
        ms = [sel[1]] if sel is not None else range(len(GPT2_MLP_RATIOS))
        attn = sum(wh[i] * self.attention(a_in, GPT2_HEADS[i], bias) for i in hs)
        mlp = sum(wm[j] * self.mlp(m_in, GPT2_MLP_RATIOS[j], bias) for j in ms)
        return x + attn + mlp  # type: ignore[return-value]

    def static(self, e: int, heads: int, ratio: int, bias: bool) -> Block:
        """The chosen widths as a static block with copied weights."""
        q, hidden = 3 * heads * self.head_size, ratio * e
        blk = Block(e, heads, self.head_size, hidden, bias, self.rot)
        with torch.no_grad():
            for dst, src in ((blk.ln1, self.ln1), (blk.ln2, self.ln2)):
                dst.weight.copy_(src.weight[:e])
                dst.bias.copy_(src.bias[:e])
            for dst, src, rows, cols in (
                (blk.qkv, self.qkv, q, e),
                (blk.proj, self.proj, e, heads * self.head_size),
                (blk.fc1, self.fc1, hidden, e),
                (blk.fc2, self.fc2, e, hidden),
            ):
                dst.weight.copy_(src.weight[:rows, :cols])
                if bias:
                    dst.bias.copy_(src.bias[:rows])
        return blk


class SuperGPT(nn.Module):
    """The weight-sharing super-transformer: ``forward(tokens (B, T), weights (27, 3), dense=False) -> (B, T, V)``."""

    def __init__(
        self,
        space: SearchSpace,
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 16,
        N: int = 1,
        rotary: float = 0.25,
    ) -> None:
        super().__init__()
        shape = [int(v) for v in input_shape]
        if len(shape) != 1 or shape[0] < 1:
            raise ValueError(f"gpt2: input_shape must be (context,), got {tuple(shape)}")
        if C < 2 or C % 2 or N != 1 or not 0.0 <= rotary <= 1.0 or num_classes < 2:
            raise ValueError(
                f"gpt2: need an even head size C >= 2, N = 1 (no fixed layers), 0 <= rotary <= 1 and a "
                f"vocabulary >= 2; got C={C}, N={N}, rotary={rotary}, vocabulary {num_classes}"
            )
        self.space = space
        self.head_size = int(C)
        self.embeds = tuple(e * self.head_size // GPT2_HEAD_SIZE for e in GPT2_EMBEDS)  # (48, 96, 192) at C = 16
        self.rot = 2 * round(rotary * self.head_size / 2)
        self.build_args = {"input_shape": shape, "num_classes": int(num_classes), "C": C, "N": N, "rotary": rotary}
        e_max = max(self.embeds)
        self.wte = nn.Embedding(int(num_classes), e_max)
        nn.init.normal_(self.wte.weight, std=0.02)
        self.blocks = nn.ModuleList(SuperBlock(e_max, self.head_size, self.rot) for _ in range(GPT2_MAX_LAYERS))
        self.ln_f = nn.LayerNorm(e_max)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor, dense: bool = False) -> torch.Tensor:
        space = self.space
        if tuple(weights.shape) != space.shape:
            raise ValueError(f"gpt2: weights of shape {tuple(weights.shape)}, expected {space.shape}")
        w = weights.to(device=tokens.device, dtype=self.wte.weight.dtype)  # (D, K)
        chosen = w.detach().masked_fill(~space.mask_tensor(w.device), float("-inf")).argmax(-1).tolist()
        e = self.embeds[chosen[EMBED]]
        bias = GPT2_BIAS[chosen[BIAS]]
        n = GPT2_LAYERS[chosen[LAYERS]]
        wte = self.wte.weight[:, :e]  # (V, E)
        h = F.embedding(tokens, wte) * w[EMBED, chosen[EMBED]]  # (B, T, E)
        outs = {}
        for i in range(GPT2_MAX_LAYERS if dense else n):
            sel = None if dense else (chosen[HEADS0 + i], chosen[MLP0 + i])
            h = self.blocks[i](h, w[HEADS0 + i, : len(GPT2_HEADS)], w[MLP0 + i, : len(GPT2_MLP_RATIOS)], sel, bias)
            outs[i + 1] = h
        ln = self.ln_f
        final = (lambda x: F.layer_norm(x, (e,), ln.weight[:e], ln.bias[:e], ln.eps))  # noqa: E731
        if dense:
            z = sum(w[LAYERS, j] * final(outs[m]) for j, m in enumerate(GPT2_LAYERS))
        else:
            z = final(h) * w[LAYERS, chosen[LAYERS]]
        return F.linear(z * w[BIAS, chosen[BIAS]], wte)  # (B, T, V)

    def subnet(self, genotype: Sequence[int]) -> GPT:
        """The static GPT of ``genotype`` with the super-transformer's sliced weights."""
        g: Genotype = self.space.canonical(genotype)
        e, bias = self.embeds[g[EMBED]], GPT2_BIAS[g[BIAS]]
        blocks = [
            self.blocks[i].static(e, GPT2_HEADS[g[HEADS0 + i]], GPT2_MLP_RATIOS[g[MLP0 + i]], bias)
            for i in range(GPT2_LAYERS[g[LAYERS]])
        ]
        net = GPT(self.wte.num_embeddings, e, blocks)
        with torch.no_grad():
            net.wte.weight.copy_(self.wte.weight[:, :e])
            net.ln_f.weight.copy_(self.ln_f.weight[:e])
            net.ln_f.bias.copy_(self.ln_f.bias[:e])
        return net.train(self.training)

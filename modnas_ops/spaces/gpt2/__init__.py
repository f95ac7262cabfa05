"""The GPT-2 decoder-only elastic space (HW-GPT-Bench's "s" grid): :mod:`.space` (decisions, strings, the
80-d encoding, anchors) and :mod:`.supernet` (weight-sliced super-transformer and static subnets)."""

from .space import GPT2_ANCHOR_INDICES, GPT2Space

__all__ = ["GPT2_ANCHOR_INDICES", "GPT2Space"]

"""The NAS-Bench-201 cell space: the space (decisions, strings, NB201 index, anchors) and its supernet."""

from .space import NB201_ANCHOR_INDICES, NB201_EDGES, NB201_OPS, NB201Space

__all__ = ["NB201_ANCHOR_INDICES", "NB201_EDGES", "NB201_OPS", "NB201Space"]

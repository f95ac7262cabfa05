"""Search spaces: one registered class per space."""

from .base import Genotype, SearchSpace, available_search_spaces, get_search_space, register_search_space
from .nb201 import NB201_ANCHOR_INDICES, NB201Space

__all__ = [
    "NB201_ANCHOR_INDICES",
    "Genotype",
    "NB201Space",
    "SearchSpace",
    "available_search_spaces",
    "get_search_space",
    "register_search_space",
]

"""Search spaces: one registered class (and its own modules) per space."""

from .base import (
    MASKED_LOGIT,
    SPACES,
    Decision,
    Genotype,
    SearchSpace,
    available_search_spaces,
    get_search_space,
    register_search_space,
)
from .nb201 import NB201_ANCHOR_INDICES, NB201Space

__all__ = [
    "MASKED_LOGIT",
    "NB201_ANCHOR_INDICES",
    "SPACES",
    "Decision",
    "Genotype",
    "NB201Space",
    "SearchSpace",
    "available_search_spaces",
    "get_search_space",
    "register_search_space",
]

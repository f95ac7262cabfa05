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
from .gpt2 import GPT2_ANCHOR_INDICES, GPT2Space
from .mbv3 import MBV3_ANCHOR_INDICES, MBV3Space
from .nb201 import NB201_ANCHOR_INDICES, NB201Space

__all__ = [
    "GPT2_ANCHOR_INDICES",
    "MASKED_LOGIT",
    "MBV3_ANCHOR_INDICES",
    "NB201_ANCHOR_INDICES",
    "SPACES",
    "Decision",
    "GPT2Space",
    "Genotype",
    "MBV3Space",
    "NB201Space",
    "SearchSpace",
    "available_search_spaces",
    "get_search_space",
    "register_search_space",
]

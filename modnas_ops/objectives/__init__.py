"""Search modes as error objective providers (registry): ``benchmark`` (NB201 table) and ``supernet``."""

from .base import (
    ERROR,
    LATENCY,
    ErrorObjective,
    SearchDevice,
    available_modes,
    create_objective,
    register_objective,
)
from .benchmark import BenchmarkObjective
from .supernet import SupernetObjective, reference_normaliser

__all__ = [
    "ERROR",
    "LATENCY",
    "BenchmarkObjective",
    "ErrorObjective",
    "SearchDevice",
    "SupernetObjective",
    "available_modes",
    "create_objective",
    "reference_normaliser",
    "register_objective",
]

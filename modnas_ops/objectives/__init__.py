"""Search modes as error objective providers (registry): ``benchmark`` (NB201 table) and ``supernet``."""

from .base import (
    ERROR,
    LATENCY,
    ErrorObjective,
    SearchContext,
    SearchDevice,
    available_modes,
    create_objective,
    register_objective,
)
from .benchmark import BenchmarkConfig, BenchmarkObjective
from .supernet import SupernetConfig, SupernetObjective, reference_normaliser

__all__ = [
    "ERROR",
    "LATENCY",
    "BenchmarkConfig",
    "BenchmarkObjective",
    "ErrorObjective",
    "SearchContext",
    "SearchDevice",
    "SupernetConfig",
    "SupernetObjective",
    "available_modes",
    "create_objective",
    "reference_normaliser",
    "register_objective",
]

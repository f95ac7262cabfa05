"""NVML access (the only place that imports pynvml): initialisation and GPU names. Energy meters
(:mod:`profiling.energy`) and device descriptions (:mod:`profiling.latency`) both use it."""

from __future__ import annotations

from typing import Any


class EnergyUnavailable(RuntimeError):
    """No usable energy counter; the message says why."""


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise EnergyUnavailable("nvidia-ml-py (pynvml) is not installed") from None
    return pynvml


def nvml_init() -> Any:
    pynvml = _import_pynvml()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise EnergyUnavailable(f"NVML not usable: {e}") from None
    return pynvml


def nvml_gpu_name(index: int = 0) -> str:
    """GPU name through NVML, or "" when NVML is not usable."""
    try:
        pynvml = nvml_init()
    except EnergyUnavailable:
        return ""
    try:
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
        return name.decode() if isinstance(name, bytes) else str(name)
    except pynvml.NVMLError:
        return ""


__all__ = ["EnergyUnavailable", "nvml_gpu_name", "nvml_init"]

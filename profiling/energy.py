"""Energy per inference from hardware counters, or ``None`` with one warning saying why. Never estimated.

- CUDA configs: NVML. ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer) read
  before and after the window; where that is not supported, ``nvmlDeviceGetPowerUsage`` (mW) is sampled by a
  background thread and integrated (trapezoids) over the window.
- CPU configs: Intel RAPL through ``/sys/class/powercap/intel-rapl:<n>/energy_uj`` (package domains, summed),
  with wrap-around at ``max_energy_range_uj``. Package energy includes everything else running on the socket.

:func:`measure_energy_mj` runs the runner back to back for at least ``min_seconds`` and returns the counter's
energy difference divided by the number of calls: gross (idle not subtracted) mJ per call (one batch).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .latency import DeviceConfig, Runner
from .nvml import EnergyUnavailable, nvml_init

log = logging.getLogger(__name__)

RAPL_ROOT = Path("/sys/class/powercap")


class EnergyMeter(Protocol):
    source: str

    def start(self) -> None: ...

    def stop(self) -> float:
        """Energy in mJ since :meth:`start`."""
        ...


# ---- RAPL --------------------------------------------------------------------------------------------------


@dataclass
class RaplDomain:
    path: Path
    name: str
    max_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def rapl_delta_uj(start_uj: int, end_uj: int, max_range_uj: int) -> int:
    """Counter difference allowing one wrap-around at ``max_range_uj``."""
    return end_uj - start_uj if end_uj >= start_uj else end_uj + max_range_uj - start_uj


@dataclass
class RaplMeter:
    """Sum of the package-level RAPL domains (``intel-rapl:<n>``, not the ``:<n>:<m>`` sub-domains)."""

    domains: list[RaplDomain]
    source: str = "rapl"
    _start: list[int] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, root: str | Path | None = None) -> RaplMeter:
        """Meter over the package domains under ``root`` (default :data:`RAPL_ROOT`)."""
        root = Path(RAPL_ROOT if root is None else root)
        if not root.is_dir():
            raise EnergyUnavailable(f"no RAPL: {root} does not exist")
        domains = []
        for d in sorted(root.glob("intel-rapl:*")):
            if d.name.count(":") != 1:  # sub-domains (core, uncore, dram) are inside the package figure
                continue
            try:
                name = (d / "name").read_text().strip() if (d / "name").exists() else d.name
                dom = RaplDomain(d, name, int((d / "max_energy_range_uj").read_text().strip()))
                dom.read_uj()
            except (OSError, ValueError) as e:
                raise EnergyUnavailable(f"RAPL domain {d} is not readable: {e}") from None
            domains.append(dom)
        if not domains:
            raise EnergyUnavailable(f"no RAPL package domains (intel-rapl:<n>) under {root}")
        return cls(domains)

    def start(self) -> None:
        self._start = [d.read_uj() for d in self.domains]

    def stop(self) -> float:
        end = [d.read_uj() for d in self.domains]
        total_uj = sum(
            rapl_delta_uj(s, e, d.max_range_uj)
            for s, e, d in zip(self._start, end, self.domains, strict=True)
        )
        return total_uj / 1000.0


# ---- NVML --------------------------------------------------------------------------------------------------


@dataclass
class NvmlEnergyMeter:
    """Total-energy counter (mJ) of one GPU."""

    pynvml: Any
    handle: Any
    source: str = "nvml-total-energy"
    _start: int = 0

    def start(self) -> None:
        self._start = int(self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def stop(self) -> float:
        return float(int(self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) - self._start)


@dataclass
class NvmlPowerMeter:
    """Power samples (mW) from a background thread, integrated over the window (mW * s = mJ)."""

    pynvml: Any
    handle: Any
    interval_s: float = 0.005
    source: str = "nvml-power-integral"
    _samples: list[tuple[float, float]] = field(default_factory=list, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def _sample(self) -> None:
        self._samples.append((time.perf_counter(), float(self.pynvml.nvmlDeviceGetPowerUsage(self.handle))))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        self._samples = []
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return integrate_power_mj(self._samples)


def integrate_power_mj(samples: list[tuple[float, float]]) -> float:
    """Trapezoidal integral of (time s, power mW) samples, in mJ."""
    return float(sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in itertools.pairwise(samples)))


def open_nvml_meter(config: DeviceConfig) -> EnergyMeter:
    pynvml = nvml_init()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(config.device_index)
    except pynvml.NVMLError as e:
        raise EnergyUnavailable(f"NVML has no GPU {config.device_index}: {e}") from None
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return NvmlEnergyMeter(pynvml, handle)
    except pynvml.NVMLError as total_error:
        try:
            pynvml.nvmlDeviceGetPowerUsage(handle)
        except pynvml.NVMLError as e:
            raise EnergyUnavailable(
                f"NVML GPU {config.device_index} reports neither total energy ({total_error}) nor power ({e})"
            ) from None
        return NvmlPowerMeter(pynvml, handle)


def open_rapl_meter(config: DeviceConfig) -> EnergyMeter:
    return RaplMeter.open()


METERS: dict[str, Callable[[DeviceConfig], EnergyMeter]] = {"cpu": open_rapl_meter, "cuda": open_nvml_meter}


def create_energy_meter(config: DeviceConfig) -> EnergyMeter | None:
    """The meter for ``config.hardware``, or None after ONE warning saying why energy is not measured."""
    opener = METERS.get(config.hardware)
    try:
        if opener is None:
            raise EnergyUnavailable(f"no energy counter known for hardware {config.hardware!r}")
        return opener(config)
    except EnergyUnavailable as e:
        log.warning("energy on %s not measured (energy_mj left empty): %s", meter_key(config), e)
        return None


def meter_key(config: DeviceConfig) -> str:
    """What a meter measures: ``cpu`` (all packages) or ``cuda:<index>``; configs sharing it share a meter."""
    return f"cuda:{config.device_index}" if config.hardware == "cuda" else config.hardware


def measure_energy_mj(runner: Runner, meter: EnergyMeter, min_seconds: float = 1.0, warmup: int = 5) -> float:
    """Gross energy per call (mJ): calls back to back for at least ``min_seconds`` between two meter reads."""
    runner.setup()
    for _ in range(warmup):
        runner()
    calls = 0
    meter.start()
    t_end = time.perf_counter() + min_seconds
    while calls == 0 or time.perf_counter() < t_end:
        runner()
        calls += 1
    return meter.stop() / calls

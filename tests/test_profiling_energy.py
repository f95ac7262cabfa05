"""Energy: RAPL (fake sysfs, wrap-around), NVML (fake pynvml), the unavailable path with one warning."""

from __future__ import annotations

import ctypes
import logging
import sys
import time
import types
from pathlib import Path

import pytest

from profiling import energy, nvml
from profiling.energy import (
    EnergyUnavailable,
    NvmlEnergyMeter,
    NvmlPowerMeter,
    RaplMeter,
    create_energy_meter,
    integrate_power_mj,
    measure_energy_mj,
    rapl_delta_uj,
)
from profiling.latency import DeviceConfig, Runner


def _domain(root: Path, name: str, label: str, energy_uj: int, max_uj: int) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def test_rapl_delta_wraps_once():
    assert rapl_delta_uj(100, 250, 1000) == 150
    assert rapl_delta_uj(900, 50, 1000) == 150  # 900 -> 1000 (wrap) -> 50
    assert rapl_delta_uj(5, 5, 1000) == 0


def test_rapl_meter_sums_packages_with_wraparound_and_skips_subdomains(tmp_path):
    p0 = _domain(tmp_path, "intel-rapl:0", "package-0", 999_000, 1_000_000)
    p1 = _domain(tmp_path, "intel-rapl:1", "package-1", 10_000, 1_000_000)
    core = _domain(tmp_path, "intel-rapl:0:0", "core", 0, 1_000_000)
    meter = RaplMeter.open(tmp_path)
    assert [d.name for d in meter.domains] == ["package-0", "package-1"]
    meter.start()
    (p0 / "energy_uj").write_text("4000\n")  # wrapped: 1000 uJ to the top + 4000 uJ
    (p1 / "energy_uj").write_text("12500\n")  # +2500 uJ
    (core / "energy_uj").write_text("999999\n")  # sub-domain: already inside package-0
    assert meter.stop() == pytest.approx((5000 + 2500) / 1000.0)  # mJ


def test_rapl_unavailable_reasons(tmp_path):
    with pytest.raises(EnergyUnavailable, match="does not exist"):
        RaplMeter.open(tmp_path / "nope")
    with pytest.raises(EnergyUnavailable, match="no RAPL package domains"):
        RaplMeter.open(tmp_path)
    d = _domain(tmp_path, "intel-rapl:0", "package-0", 1, 10)
    (d / "energy_uj").write_text("not a number")
    with pytest.raises(EnergyUnavailable, match="is not readable"):
        RaplMeter.open(tmp_path)


def test_cpu_energy_unavailable_here_logs_one_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path / "powercap")  # as on this VM: no powercap at all
    with caplog.at_level(logging.WARNING, logger="profiling.energy"):
        assert create_energy_meter(DeviceConfig()) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert (
        msg.startswith("energy on cpu not measured") and "powercap does not exist" in msg and "\n" not in msg
    )


def test_cpu_energy_from_fake_rapl(monkeypatch, tmp_path):
    _domain(tmp_path, "intel-rapl:0", "package-0", 0, 10**9)
    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path)
    meter = create_energy_meter(DeviceConfig())
    assert isinstance(meter, RaplMeter) and meter.source == "rapl"


# ---- NVML ----------------------------------------------------------------------------------------------


def _fake_pynvml(*, init_error: bool = False, total: bool = True, power: bool = True) -> types.ModuleType:
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    m.NVMLError = NVMLError
    m.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    m.NVMLError_NotSupported = NVMLError_NotSupported
    m.energy_mj = 1_000
    m.power_mw = 2_000.0

    def nvmlInit():
        if init_error:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    def total_energy(handle):
        if not total:
            raise NVMLError_NotSupported("Not Supported")
        return m.energy_mj

    def power_usage(handle):
        if not power:
            raise NVMLError_NotSupported("Not Supported")
        return m.power_mw

    m.nvmlInit = nvmlInit
    m.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)
    m.nvmlDeviceGetName = lambda h: b"Fake GPU"
    m.nvmlDeviceGetTotalEnergyConsumption = total_energy
    m.nvmlDeviceGetPowerUsage = power_usage
    return m


CUDA = DeviceConfig.from_name("cuda-ort-t1-b1")


def test_nvml_total_energy_counter(monkeypatch):
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = create_energy_meter(CUDA)
    assert isinstance(meter, NvmlEnergyMeter) and meter.source == "nvml-total-energy"
    meter.start()
    fake.energy_mj += 750
    assert meter.stop() == 750.0
    assert nvml.nvml_gpu_name(0) == "Fake GPU"


def test_nvml_power_integration_when_total_energy_unsupported(monkeypatch):
    fake = _fake_pynvml(total=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = create_energy_meter(CUDA)
    assert isinstance(meter, NvmlPowerMeter) and meter.source == "nvml-power-integral"
    meter.interval_s = 0.001
    meter.start()
    fake.power_mw = 2_000.0  # constant power: energy = 2000 mW x window
    import time

    time.sleep(0.05)
    got = meter.stop()
    t0, t1 = meter._samples[0][0], meter._samples[-1][0]
    assert got == pytest.approx(2_000.0 * (t1 - t0))
    assert len(meter._samples) > 2


def test_integrate_power_exact():
    assert integrate_power_mj([(0.0, 1000.0), (1.0, 3000.0), (3.0, 3000.0)]) == pytest.approx(2000.0 + 6000.0)
    assert integrate_power_mj([(0.0, 5.0)]) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"init_error": True}, "NVML not usable: NVML Shared Library Not Found"),
        ({"total": False, "power": False}, "reports neither total energy"),
    ],
)
def test_nvml_unavailable_is_none_with_one_warning(monkeypatch, caplog, kwargs, reason):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(**kwargs))
    with caplog.at_level(logging.WARNING, logger="profiling.energy"):
        assert create_energy_meter(CUDA) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and reason in warnings[0] and warnings[0].startswith("energy on cuda:0 not")


def _nvml_library_loads() -> bool:
    """Whether this host's NVML shared library loads (asked of the OS, not of the code under test)."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_real_nvml_matches_what_the_host_has(caplog):
    """With the real pynvml: where the OS cannot load libnvidia-ml (this VM) no meter and one warning that
    names NVML; where it can (a GPU host) a meter whose counter gives a non-negative energy over 50 ms."""
    with caplog.at_level(logging.WARNING, logger="profiling.energy"):
        meter = create_energy_meter(CUDA)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if _nvml_library_loads():
        assert meter is not None and not warnings
        meter.start()
        time.sleep(0.05)
        assert meter.stop() >= 0.0
    else:
        assert meter is None
        assert len(warnings) == 1 and "NVML" in warnings[0] and warnings[0].startswith("energy on cuda:0 not measured")


def test_measure_energy_divides_by_calls():
    class FixedMeter:
        source = "fake"

        def start(self) -> None:
            pass

        def stop(self) -> float:
            return 100.0

    calls = []
    runner = Runner(lambda: calls.append(1))
    per_call = measure_energy_mj(runner, FixedMeter(), min_seconds=0.01, warmup=3)
    timed = len(calls) - 3
    assert timed >= 1 and per_call == pytest.approx(100.0 / timed)

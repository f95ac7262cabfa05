"""Device configs (names, parsing, validation), runtimes, interleaved timing and its statistics."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from modnas_ops.errors import UserError
from profiling.export import export_onnx
from profiling.latency import (
    MIN_ROUNDS,
    RUNTIMES,
    Candidate,
    DeviceConfig,
    LatencyStats,
    OnnxLoadError,
    Runner,
    cpu_model,
    device_description,
    get_runtime,
    parse_device_configs,
    time_candidates,
    time_runners,
    versions,
)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).eval()


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("cpu-ort-t1-b1", {"hardware": "cpu", "runtime": "ort", "threads": 1, "batch": 1,
                           "provider": "CPUExecutionProvider"}),
        ("cpu-ort-t2-b32", {"threads": 2, "batch": 32}),
        ("cpu-torch-t1-b8", {"runtime": "torch", "provider": "cpu", "batch": 8}),
        ("cuda-ort-t1-b1", {"hardware": "cuda", "provider": "CUDAExecutionProvider"}),
        ("cuda-ort-t1-b1-tensorrt", {"hardware": "cuda", "provider": "TensorrtExecutionProvider"}),
    ],
)  # fmt: skip
def test_name_round_trip(name, fields):
    cfg = DeviceConfig.from_name(name, repeats=7)
    assert cfg.name == name
    assert cfg.repeats == 7
    for k, v in fields.items():
        assert getattr(cfg, k) == v
    assert DeviceConfig.from_name(cfg.name, repeats=7) == cfg


def test_defaults_and_canonical_name():
    cfg = DeviceConfig()
    assert (cfg.name, cfg.provider, cfg.graph_optimization) == (
        "cpu-ort-t1-b1",
        "CPUExecutionProvider",
        "all",
    )
    assert DeviceConfig(threads=4, batch=16).name == "cpu-ort-t4-b16"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("cpu-ort-t1", "malformed device config name 'cpu-ort-t1'"),
        ("cpu_ort_t1_b1", "malformed device config name"),
        ("CPU-ort-t1-b1", "malformed device config name"),
        ("cpu-ort-tx-b1", "malformed device config name"),
        ("tpu-ort-t1-b1", "unknown hardware 'tpu'"),
        ("cpu-tvm-t1-b1", "unknown runtime 'tvm'; available: ort, torch"),
        ("cpu-ort-t0-b1", "'cpu-ort-t0-b1': threads: must be an integer >= 1, got 0"),
        ("cpu-ort-t1-b0", "batch: must be an integer >= 1"),
        ("cpu-ort-t1-b1-warp", "unknown provider 'warp'"),
        ("cpu-torch-t1-b1-cuda", "the torch runtime has no provider"),
    ],
)
def test_bad_names_are_one_line_value_errors(name, match):
    with pytest.raises(UserError, match=match) as e:
        DeviceConfig.from_name(name)
    assert "\n" not in str(e.value)


def test_bad_fields():
    with pytest.raises(ValueError, match="unknown graph_optimization 'max'"):
        DeviceConfig(graph_optimization="max")
    with pytest.raises(UserError, match="rounds: must be an integer >= 1, got 0"):
        DeviceConfig(rounds=0)
    for bad in (math.nan, math.inf, -1.0, "5"):
        with pytest.raises(UserError, match=r"max_seconds: must be a finite number >= 0, got "):
            DeviceConfig(max_seconds=bad)
    with pytest.raises(ValueError, match="listed twice"):
        parse_device_configs(["cpu-ort-t1-b1", "cpu-ort-t1-b1"])


def test_unavailable_provider_is_one_line_error():
    cfg = DeviceConfig.from_name("cuda-ort-t1-b1")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(ValueError, match="provider CUDAExecutionProvider is not available") as e:
        cfg.check_available()
    assert "\n" not in str(e.value)
    assert "CPUExecutionProvider" in str(e.value)  # lists what is available


def test_unloadable_onnx_names_it(tmp_path):
    rt = get_runtime("ort")
    cfg = DeviceConfig()
    with pytest.raises(OnnxLoadError, match="cannot load ONNX model candidate-7: ") as e:
        rt.session(b"garbage", cfg, name="candidate-7")
    assert "\n" not in str(e.value)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01")
    with pytest.raises(OnnxLoadError, match=f"cannot load ONNX model {bad}"):
        rt.runner(bad, cfg)
    with pytest.raises(OnnxLoadError, match="cannot read ONNX file .*missing.onnx"):
        rt.runner(tmp_path / "missing.onnx", cfg)


def test_registry_has_both_runtimes():
    assert set(RUNTIMES) == {"ort", "torch"}


def test_latency_stats_exact():
    samples = [1.0, 2.0, 3.0, 4.0, 10.0, 1.0, 2.0, 3.0, 4.0, 10.0]
    s = LatencyStats.from_samples_ms(samples)
    a = np.asarray(samples)
    assert s.median_ms == 3.0
    assert s.p90_ms == pytest.approx(np.percentile(a, 90))
    assert s.iqr_ms == pytest.approx(4.0 - 2.0)
    assert s.cv == pytest.approx(a.std(ddof=1) / a.mean())
    assert (s.mean_ms, s.n) == (pytest.approx(4.0), 10)
    # 5 time-ordered splits of 2 samples: (1, 2) (3, 4) (10, 1) (2, 3) (4, 10)
    medians = np.array([1.5, 3.5, 5.5, 2.5, 7.0])
    assert s.split_cv == pytest.approx(medians.std(ddof=1) / medians.mean())
    assert LatencyStats.from_samples_ms([2.0] * 7).split_cv == 0.0
    assert LatencyStats.from_samples_ms([2.0]).split_cv == 0.0
    with pytest.raises(ValueError, match="no latency samples"):
        LatencyStats.from_samples_ms([])


def test_time_runners_interleaves_rounds_and_counts_calls():
    calls: list[str] = []
    setups: list[str] = []

    def make(tag: str) -> Runner:
        return Runner(lambda: calls.append(tag), setup=lambda: setups.append(tag))

    cfg = DeviceConfig(warmup=1, repeats=2, rounds=3)
    stats = time_runners([make("a"), make("b")], cfg)
    assert [s.n for s in stats] == [6, 6]
    # per round: each runner warmup + repeats in a block, rotated start
    assert "".join(calls) == "aaabbbbbbaaaaaabbb"
    assert setups == ["a", "b", "b", "a", "a", "b"]


def test_time_budget_stops_at_a_round_boundary_after_min_rounds():
    import time

    counts = {"a": 0, "b": 0}

    def make(tag: str) -> Runner:
        def call() -> None:
            counts[tag] += 1
            time.sleep(0.001)

        return Runner(call)

    cfg = DeviceConfig(warmup=0, repeats=2, rounds=50, max_seconds=0.001)
    stats = time_runners([make("a"), make("b")], cfg)
    assert [s.n for s in stats] == [2 * MIN_ROUNDS] * 2  # the budget ran out in round 1: MIN_ROUNDS rounds
    assert counts == {"a": 2 * MIN_ROUNDS, "b": 2 * MIN_ROUNDS}
    assert [s.n for s in time_runners([make("a")], DeviceConfig(warmup=0, repeats=1, rounds=7))] == [7]


def test_ort_and_torch_runtimes_time_a_candidate():
    torch.set_num_threads(1)
    cand = Candidate("tiny", _tiny(), (1, 4, 4))
    for name in ("cpu-ort-t1-b2", "cpu-torch-t1-b2"):
        (s,) = time_candidates([cand], DeviceConfig.from_name(name, warmup=1, repeats=3, rounds=2))
        assert s.n == 6
        assert 0 < s.median_ms <= s.p90_ms
    assert set(cand._onnx) == {2}  # exported once, at the config's batch


def test_input_free_graph_runs_with_empty_feed():
    class Const(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 3) + 1.0

    payload = export_onnx(Const(), torch.randn(2, 1, 4, 4))
    runner = get_runtime("ort").runner(payload, DeviceConfig(batch=2))
    runner()


def test_cpu_model_and_description(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Fake CPU @ 1.00GHz\n")
    assert cpu_model(info) == "Fake CPU @ 1.00GHz"
    arm = tmp_path / "cpuinfo-arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\n")
    assert cpu_model(arm) == "BCM2835"
    desc = device_description(DeviceConfig())
    assert cpu_model() in desc and ort.__version__ in desc and "\n" not in desc
    assert versions() == {"onnxruntime_version": ort.__version__, "torch_version": torch.__version__}


@pytest.mark.parametrize("spinning", [False, True])
def test_session_spinning_follows_config(spinning):
    # idle sessions of an interleaved chunk must not spin-wait (the default) or they steal the timed one's cores
    onnx_bytes = export_onnx(_tiny(), torch.zeros(1, 1, 4, 4))
    sess = get_runtime("ort").session(onnx_bytes, DeviceConfig(threads=2, spinning=spinning))
    opts = sess.get_session_options()
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert opts.get_session_config_entry(key) == ("1" if spinning else "0")

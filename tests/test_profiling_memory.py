"""Peak inference memory (profiling.memory): measured in a fresh process, grows with the weights a session
holds, fails clearly where the counters cannot be read, and lands in the campaign table as ``memory_mb``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from modnas_ops.errors import UserError
from profiling import campaign as campaign_mod
from profiling import memory
from profiling.config import CampaignConfig
from profiling.export import export_onnx

needs_counters = pytest.mark.skipif(
    not memory.memory_counters_readable(), reason="VmHWM / clear_refs not readable on this machine"
)


def _mlp(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 64)).eval()


@needs_counters
def test_peak_memory_grows_with_the_weights_the_session_holds() -> None:
    x = torch.randn(4, 64)
    small = memory.peak_memory_mb(export_onnx(_mlp(16), x), x.numpy())
    big = memory.peak_memory_mb(export_onnx(_mlp(16384), x), x.numpy())  # 2 x 64 x 16384 floats = 8 MiB
    assert 0 < small < big
    assert big - small > 7.0  # at least the weights onnxruntime copied in (measured, not counted)
    again = memory.peak_memory_mb(export_onnx(_mlp(16384), x), x.numpy())
    assert abs(again - big) < 0.1 * big  # a fresh process each time: repeatable


def test_unreadable_counters_are_a_clear_error(monkeypatch, tmp_path) -> None:
    missing = tmp_path / "no" / "clear_refs"
    monkeypatch.setattr(memory, "CLEAR_REFS", missing)
    assert not memory.memory_counters_readable()
    x = torch.randn(2, 64)
    (tmp_path / "m.onnx").write_bytes(export_onnx(_mlp(8), x))
    np.save(tmp_path / "x.npy", x.numpy())
    with pytest.raises(memory.MemoryUnavailable, match="cannot reset the high-water mark"):
        memory._probe(str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"), 1, 1)
    monkeypatch.setattr(campaign_mod, "memory_counters_readable", lambda: False)
    cfg = CampaignConfig(space="nb201", anchors=False, num_archs=1, devices=("cpu-ort-t1-b1",), memory=True,
                         add_cuda_devices=False, output=str(tmp_path / "p.csv"))  # fmt: skip
    with pytest.raises(UserError, match="memory: true, but this machine's peak-memory counters"):
        campaign_mod.run_campaign(cfg, progress=False)


@needs_counters
def test_campaign_writes_memory_of_token_networks(tmp_path) -> None:
    out = tmp_path / "p.csv"
    cfg = CampaignConfig(
        space="gpt2", C=4, sample_shape=(8,), num_classes=16, anchors=False, num_archs=2,
        devices=("cpu-ort-t1-b1",), add_cuda_devices=False, memory=True, energy=False, rounds=5, repeats=2,
        output=str(out),
    )  # fmt: skip
    assert cfg.network == "C4-N1-8-16"
    res = campaign_mod.run_campaign(cfg, progress=False)
    assert res.new_rows == 2
    rows = campaign_mod.read_table(out)
    assert all(r["memory_mb"] is not None and r["memory_mb"] > 0 for r in rows)
    assert all(r["latency_ms"] > 0 for r in rows)


def test_a_table_of_the_earlier_version_is_appended_as_is(tmp_path) -> None:
    out = tmp_path / "old.csv"
    old = campaign_mod.COLUMNS[: campaign_mod.COLUMNS.index("memory_mb")]
    with open(out, "w", newline="") as f:
        csv.writer(f).writerow(old)
    writer = campaign_mod.TableWriter(out)
    assert writer.columns == old  # rows keep that table's columns
    cfg = CampaignConfig(space="nb201", anchors=False, num_archs=1, devices=("cpu-ort-t1-b1",), memory=True,
                         add_cuda_devices=False, output=str(out))  # fmt: skip
    if memory.memory_counters_readable():
        with pytest.raises(UserError, match="no memory_mb column; use a new output"):
            campaign_mod.run_campaign(cfg, progress=False)
    other = tmp_path / "other.csv"
    with open(other, "w", newline="") as f:
        csv.writer(f).writerow([*old[:-1], "something_else"])
    with pytest.raises(UserError, match="other columns than this version writes"):
        campaign_mod.TableWriter(other)


def test_sample_shape_is_validated() -> None:
    with pytest.raises(UserError, match=r"sample_shape\[0\]"):
        CampaignConfig(space="gpt2", sample_shape=(0,))
    assert CampaignConfig(space="gpt2", sample_shape=(64,)).input_shape == (64,)
    assert CampaignConfig().input_shape == (1, 8, 8)
    assert np.prod(CampaignConfig(in_channels=3, input_size=4).input_shape) == 48

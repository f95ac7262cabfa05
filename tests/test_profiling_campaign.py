"""Campaigns: architecture selection, the table (read/write/concat, one-line errors), resume after kill -9."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modnas_ops.spaces import get_search_space
from profiling.campaign import (
    COLUMNS,
    REQUIRED_COLUMNS,
    TableError,
    TableWriter,
    concat_tables,
    read_table,
    run_campaign,
    sample_stratified,
    select_architectures,
    write_table,
)
from profiling.config import CampaignConfig

ROOT = Path(__file__).resolve().parents[1]
SPACE = get_search_space("nb201")


def tiny_builder(space, genotype, config) -> nn.Module:
    """A network whose width grows with the op indices: fast to export, distinct latencies."""
    width = 1 + sum(genotype)
    return nn.Sequential(
        nn.Conv2d(config.in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(width, config.num_classes),
    )  # fmt: skip


def _config(tmp_path: Path, **kw) -> CampaignConfig:
    base = dict(devices=("cpu-ort-t1-b1",), add_cuda_devices=False, anchors=False, num_archs=4, warmup=1,
                repeats=2, rounds=2, chunk_size=2, output=str(tmp_path / "t.csv"))  # fmt: skip
    base.update(kw)
    return CampaignConfig(**base)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ---- architectures -------------------------------------------------------------------------------------


def test_selection_anchors_first_distinct_deterministic():
    archs = select_architectures(SPACE, 30, seed=3)
    assert [a.genotype for a in archs[:10]] == SPACE.anchors()
    assert {a.role for a in archs[:10]} == {"anchor"} and {a.role for a in archs[10:]} == {"sample"}
    assert len({a.genotype for a in archs}) == 40
    assert Counter(a.sampler for a in archs[10:]) == {"uniform": 15, "stratified": 15}
    assert archs == select_architectures(SPACE, 30, seed=3)
    assert archs != select_architectures(SPACE, 30, seed=4)
    assert select_architectures(SPACE, 31, seed=3)[:40] == archs  # prefix-stable: campaigns can grow
    assert all(a.arch == SPACE.to_string(a.genotype) for a in archs)
    only_uniform = select_architectures(SPACE, 5, seed=0, stratified_fraction=0.0, anchors=False)
    assert {a.sampler for a in only_uniform} == {"uniform"}
    with pytest.raises(ValueError, match="exceeds the 15615 architectures"):
        select_architectures(SPACE, 15_616)


def test_stratified_histograms_are_uniform():
    E, K = SPACE.shape
    n_hist = math.comb(E + K - 1, K - 1)  # 210 op-count histograms for NB201
    rng = np.random.default_rng(0)
    draws = 21_000
    counts = Counter(tuple(np.bincount(sample_stratified(SPACE, rng), minlength=K)) for _ in range(draws))
    assert len(counts) == n_hist  # every histogram reached
    freq = np.array(list(counts.values()))
    expected = draws / n_hist
    chi2 = float(((freq - expected) ** 2 / expected).sum())
    assert chi2 < 300  # 209 dof: mean 209, sd ~20; the uniform sampler's histograms give > 10^4
    # uniform sampling essentially never gives an all-conv3x3 cell (1/15625); stratified: ~1/210 of draws
    assert counts[(0, 0, 0, E, 0)] > draws / n_hist / 2


# ---- the table -----------------------------------------------------------------------------------------


def _row(**kw) -> dict:
    row = {c: "" for c in COLUMNS}
    row.update(space="nb201", arch="a", device="cpu-ort-t1-b1", latency_ms=0.5, latency_ms_p90=0.6,
               latency_ms_iqr=0.1, latency_cv=0.2, params=10, flops=100, runtime="ort",
               provider="CPUExecutionProvider", threads=1, batch=1, device_description="x, y",
               onnxruntime_version="1", torch_version="2", timestamp="t", role="anchor", host="h",
               network="n", latency_ms_mean=0.55, latency_split_cv=0.01, warmup=1, repeats=2,
               rounds=2, opset=18)  # fmt: skip
    row.update(kw)
    return row


def test_write_read_round_trip_types(tmp_path):
    rows = [_row(arch="a"), _row(arch="b", energy_mj=1.25, role="sample")]
    write_table(rows, tmp_path / "sub" / "t.csv")
    got = read_table(tmp_path / "sub" / "t.csv")
    assert [r["arch"] for r in got] == ["a", "b"]
    assert got[0]["energy_mj"] is None and got[1]["energy_mj"] == 1.25
    assert got[0]["latency_ms"] == 0.5 and got[0]["params"] == 10 and got[0]["device_description"] == "x, y"
    assert not list((tmp_path / "sub").glob("*.tmp"))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("arch,device\na,b\n", "lacks columns: space, latency_ms"),
        (None, "line 2: column latency_ms holds 'fast', expected a number"),
        (None, "line 2: role 'probe' is not one of anchor, sample"),
    ],
)
def test_read_table_one_line_errors(tmp_path, text, match):
    p = tmp_path / "t.csv"
    if text is None:
        write_table([_row(latency_ms="fast") if "fast" in match else _row(role="probe")], p)
    else:
        p.write_text(text)
    with pytest.raises(TableError, match=match) as e:
        read_table(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_read_missing_table():
    with pytest.raises(TableError, match="cannot read profiling table /nonexistent/t.csv"):
        read_table("/nonexistent/t.csv")


def test_concat_tables_from_hosts_and_duplicates(tmp_path):
    write_table([_row(arch="a", host="h1"), _row(arch="b", host="h1")], tmp_path / "h1.csv")
    write_table([_row(arch="a", host="h2")], tmp_path / "h2.csv")
    rows = concat_tables([tmp_path / "h1.csv", tmp_path / "h2.csv"])
    assert [(r["host"], r["arch"]) for r in rows] == [("h1", "a"), ("h1", "b"), ("h2", "a")]
    with pytest.raises(TableError, match="tables 0 and 1 both hold"):
        concat_tables([tmp_path / "h1.csv", tmp_path / "h1.csv"])


def test_writer_drops_torn_last_line_and_appends(tmp_path):
    p = tmp_path / "t.csv"
    w = TableWriter(p)
    w.append([_row(arch="a")])
    with open(p, "a") as f:
        f.write("nb201,b,cpu-ort-t1-b1,0.4")  # a write cut short by kill -9
    assert [r["arch"] for r in read_table(p)] == ["a"]  # readers ignore it too
    w2 = TableWriter(p)
    assert p.read_text().endswith("\n")
    w2.append([_row(arch="c")])
    assert [r["arch"] for r in read_table(p)] == ["a", "c"]


def test_writer_rejects_other_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(",".join(REQUIRED_COLUMNS) + "\n")
    with pytest.raises(TableError, match="has other columns"):
        TableWriter(p)


# ---- campaigns -----------------------------------------------------------------------------------------


def _no_build(*args):
    raise AssertionError("work started")


def test_unwritable_output_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = _config(tmp_path, output=str(blocker / "t.csv"))
    with pytest.raises(TableError, match=f"cannot write profiling table {blocker}/t.csv") as e:
        run_campaign(cfg, build_network=_no_build, progress=False)
    assert "\n" not in str(e.value)
    with pytest.raises(TableError, match="is a directory"):
        run_campaign(_config(tmp_path, output=str(tmp_path)), build_network=_no_build, progress=False)


def test_unavailable_device_fails_before_any_work(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA provider present")
    cfg = _config(tmp_path, devices=("cpu-ort-t1-b1", "cuda-ort-t1-b1"))
    with pytest.raises(ValueError, match="provider CUDAExecutionProvider is not available"):
        run_campaign(cfg, build_network=_no_build, progress=False)
    assert not Path(cfg.output).exists()


def test_bad_config_fields():
    with pytest.raises(ValueError, match="malformed device config name 'cpu'"):
        CampaignConfig(devices=("cpu",))
    with pytest.raises(ValueError, match="unknown exporter 'x'"):
        CampaignConfig(exporter="x")
    with pytest.raises(ValueError, match="unknown search space 'nope'"):
        CampaignConfig(space="nope")


def test_campaign_rows_and_resume(tmp_path):
    cfg = _config(tmp_path, devices=("cpu-ort-t1-b1", "cpu-torch-t1-b2"), num_archs=3, anchors=False)
    res = run_campaign(cfg, build_network=tiny_builder, progress=False)
    assert (res.new_rows, res.skipped) == (6, 0)
    rows = read_table(cfg.output)
    assert len(rows) == 6 and list(rows[0]) == list(COLUMNS)
    expected = [a.arch for a in select_architectures(SPACE, 3, 0, 0.5, anchors=False)]
    for device in ("cpu-ort-t1-b1", "cpu-torch-t1-b2"):
        mine = [r for r in rows if r["device"] == device]
        assert sorted(r["arch"] for r in mine) == sorted(expected)
        for r in mine:
            assert r["latency_ms"] > 0 and r["latency_ms"] <= r["latency_ms_p90"] and r["energy_mj"] is None
            assert r["network"] == "C8-N1-1x8x8-10" and r["role"] == "sample" and r["repeats"] == 2
            width = 1 + sum(SPACE.from_string(r["arch"]))
            assert r["params"] == 1 * width * 9 + width + width * 10 + 10  # conv + linear, with biases
    assert {r["batch"] for r in rows} == {1, 2} and {r["runtime"] for r in rows} == {"ort", "torch"}
    assert res.devices["cpu-ort-t1-b1"].profiled == 3 and res.devices["cpu-ort-t1-b1"].subnets_per_min > 0
    again = run_campaign(cfg, build_network=_no_build, progress=False)  # everything done: no work
    assert (again.new_rows, again.skipped, len(again.rows)) == (0, 6, 6)
    more = run_campaign(_config(tmp_path, devices=cfg.devices, num_archs=4, anchors=False),
                        build_network=tiny_builder, progress=False)  # fmt: skip
    assert (more.new_rows, more.skipped) == (2, 6)


def test_one_energy_warning_for_all_cpu_configs(tmp_path, monkeypatch, caplog):
    from profiling import energy

    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path / "no-powercap")
    cfg = _config(tmp_path, devices=("cpu-ort-t1-b1", "cpu-ort-t2-b1"), num_archs=1)
    with caplog.at_level("WARNING", logger="profiling.energy"):
        run_campaign(cfg, build_network=tiny_builder, progress=False)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "energy on cpu not measured (energy_mj left empty)"
    ]
    assert [r["energy_mj"] for r in read_table(cfg.output)] == [None, None]


def test_energy_column_from_a_meter(tmp_path, monkeypatch):
    from profiling import energy

    class FakeMeter:
        source = "fake-counter"

        def start(self) -> None:
            pass

        def stop(self) -> float:
            return 6.0

    monkeypatch.setitem(energy.METERS, "cpu", lambda config: FakeMeter())
    cfg = _config(tmp_path, num_archs=2, energy_seconds=0.01)
    run_campaign(cfg, build_network=tiny_builder, progress=False)
    rows = read_table(cfg.output)
    assert all(r["energy_source"] == "fake-counter" and 0 < r["energy_mj"] <= 6.0 for r in rows)


_KILLED_CAMPAIGN = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import torch
    from test_profiling_campaign import tiny_builder, _config
    from profiling.campaign import run_campaign
    from pathlib import Path

    def slow_builder(space, genotype, config):
        time.sleep(0.3)
        return tiny_builder(space, genotype, config)

    run_campaign(_config(Path({tmp!r}), num_archs=12), build_network=slow_builder, progress=False)
    """
)


def test_kill_9_mid_campaign_then_resume_loses_nothing(tmp_path):
    script = _KILLED_CAMPAIGN.format(root=str(ROOT), tests=str(ROOT / "tests"), tmp=str(tmp_path))
    out = tmp_path / "t.csv"
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:  # wait for the first chunk(s) to be written
            if out.exists() and out.read_text().count("\n") >= 1 + 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"campaign exited early with {proc.returncode}")
            time.sleep(0.05)
        else:
            pytest.fail("no rows within 60 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = read_table(out)
    assert 2 <= len(before) < 12  # killed mid-campaign
    res = run_campaign(_config(tmp_path, num_archs=12), build_network=tiny_builder, progress=False)
    after = read_table(out)
    assert after[: len(before)] == before  # nothing finished was lost or rewritten
    assert res.skipped == len(before) and res.new_rows == 12 - len(before)
    assert sorted(r["arch"] for r in after) == sorted(
        a.arch for a in select_architectures(SPACE, 12, anchors=False)
    )

"""Profiling tables as files: one writer at a time (flock on ``<table>.lock``), concurrent campaigns, duplicate
keys, disk full during an append, file modes from the umask, compressed / empty / header-only tables, numeric
config fields, and predictor files with NaN weights."""

from __future__ import annotations

import errno
import gzip
import math
import multiprocessing
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from modnas_ops.atomic import atomic_torch_save, atomic_write
from modnas_ops.errors import UserError
from modnas_ops.predictor import MetaPredictor, measurements_from_profile, predict_latency_ms
from modnas_ops.spaces import get_search_space
from profiling import campaign
from profiling.campaign import TableError, TableWriter, read_table, run_campaign, select_architectures, write_table
from profiling.config import CampaignConfig
from tests.test_predictor_cli import _rows as synthetic_profile_rows
from tests.test_profiling_campaign import _config, _no_build, _row, tiny_builder

SPACE = get_search_space("nb201")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """``umask(value)`` sets the process umask for the test; the old one is restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda value: os.umask(value)
    os.umask(old)


# ---- one writer at a time --------------------------------------------------------------------------------

_TRY_LOCK = "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)"


def test_lock_excludes_other_processes_and_is_reentrant(tmp_path):
    w = TableWriter(tmp_path / "t.csv")
    assert w.lock_path == tmp_path / "t.csv.lock"

    def other_process_gets_lock() -> bool:
        res = subprocess.run([sys.executable, "-c", _TRY_LOCK, str(w.lock_path)], capture_output=True, timeout=30)
        return res.returncode == 0

    with w.lock():
        with w.lock():  # re-entrant: append() inside a campaign's chunk lock
            w.append([_row(arch="a")])
        assert not other_process_gets_lock()
    assert other_process_gets_lock()
    assert [r["arch"] for r in read_table(w.path)] == ["a"]


def test_append_rereads_keys_and_skips_rows_another_writer_wrote(tmp_path, caplog):
    p = tmp_path / "t.csv"
    first, second = TableWriter(p), TableWriter(p)
    assert first.append([_row(arch="a"), _row(arch="b")]) == 2
    with caplog.at_level("WARNING", logger="profiling.campaign"):
        assert second.append([_row(arch="b", latency_ms=9.0), _row(arch="c")]) == 1
    assert "1 of 2 rows already written by another campaign" in caplog.text
    rows = read_table(p)
    assert [(r["arch"], r["latency_ms"]) for r in rows] == [("a", 0.5), ("b", 0.5), ("c", 0.5)]


def _campaign_process(tmp: str, num_archs: int, go: str, out: str) -> None:
    """Child of a fork: wait for ``go``, run a campaign on ``tmp/t.csv``, write ``new_rows skipped`` to ``out``."""
    import time as _time

    while not os.path.exists(go):
        _time.sleep(0.005)

    def slow_builder(space, genotype, config):
        _time.sleep(0.02)  # chunks long enough for the two campaigns to overlap
        return tiny_builder(space, genotype, config)

    res = run_campaign(_config(Path(tmp), num_archs=num_archs), build_network=slow_builder, progress=False)
    Path(out).write_text(f"{res.new_rows} {res.skipped}")


def test_two_concurrent_campaigns_end_with_exactly_the_union(tmp_path):
    """Two real processes on one table, started together: 6 and 8 archs (prefix-stable, so the 6 are among the
    8) end with the 8 rows once each, and their reported new rows add up to 8."""
    go = tmp_path / "go"
    ctx = multiprocessing.get_context("fork")  # torch is imported already: forked children start in ms
    jobs = [(6, tmp_path / "a.out"), (8, tmp_path / "b.out")]
    procs = [ctx.Process(target=_campaign_process, args=(str(tmp_path), n, str(go), str(out))) for n, out in jobs]
    for proc in procs:
        proc.start()
    go.touch()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    rows = read_table(tmp_path / "t.csv")
    keys = [(r["host"], r["network"], r["device"], r["arch"]) for r in rows]
    assert len(keys) == len(set(keys)) == 8
    assert sorted(r["arch"] for r in rows) == sorted(a.arch for a in select_architectures(SPACE, 8, anchors=False))
    (new_a, skipped_a), (new_b, skipped_b) = (map(int, out.read_text().split()) for _, out in jobs)
    assert new_a + new_b == 8 and new_a + skipped_a == 6 and new_b + skipped_b == 8
    # a third campaign finds everything measured
    again = run_campaign(_config(tmp_path, num_archs=8), build_network=_no_build, progress=False)
    assert (again.new_rows, again.skipped, len(again.rows)) == (0, 8, 8)


# ---- duplicates ------------------------------------------------------------------------------------------


def test_read_table_keeps_one_of_identical_rows_and_says_so(tmp_path, caplog):
    p = tmp_path / "t.csv"
    write_table([_row(arch="a"), _row(arch="b"), _row(arch="a")], p)
    with caplog.at_level("WARNING", logger="profiling.campaign"):
        rows = read_table(p)
    assert [r["arch"] for r in rows] == ["a", "b"]
    assert f"{p}: ignoring 1 exact duplicate row(s) (lines 4)" in caplog.text


def test_read_table_refuses_conflicting_measurements_naming_the_key(tmp_path):
    p = tmp_path / "t.csv"
    write_table([_row(arch="a"), _row(arch="b"), _row(arch="a", latency_ms=25.0)], p)
    with pytest.raises(TableError) as e:
        read_table(p)
    msg = str(e.value)
    assert msg == (
        f"profiling table {p} lines 2 and 4: two measurements of host=h, network=n, device=cpu-ort-t1-b1, arch=a "
        "(latency_ms 0.5 vs 25.0); keep one of them"
    )
    with pytest.raises(TableError, match="two measurements of"):  # a campaign refuses to resume on it
        run_campaign(_config(tmp_path, output=str(p)), build_network=_no_build, progress=False)


def test_measurements_from_profile_duplicates_exact_vs_conflicting(caplog):
    df = pd.DataFrame(synthetic_profile_rows(20))
    baseline = {d.name: d.values["latency_ms"] for d in measurements_from_profile(df)}
    with caplog.at_level("WARNING", logger="modnas_ops.predictor"):
        doubled = measurements_from_profile(pd.concat([df, df.iloc[[3, 5]]]), source="t.csv")
    assert "t.csv: ignoring 2 exact duplicate row(s)" in caplog.text
    assert {d.name: d.values["latency_ms"].tolist() for d in doubled} == {k: v.tolist() for k, v in baseline.items()}
    conflict = df.iloc[[3]].assign(latency_ms=df["latency_ms"].iloc[3] * 50)
    device, arch = df["device"].iloc[3], df["arch"].iloc[3]
    with pytest.raises(UserError) as e:
        measurements_from_profile(pd.concat([df, conflict]), source="t.csv")
    assert str(e.value).startswith(f"t.csv: device {device!r} arch {arch!r} is measured 2 times with different")


# ---- disk full -------------------------------------------------------------------------------------------


def _disk_full_after(monkeypatch, table: Path, nbytes: int, calls: list[int]) -> None:
    """``os.write`` to ``table`` writes ``nbytes`` bytes, then fails with ENOSPC; other fds write normally."""
    real = os.write

    def write(fd: int, data) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") != str(table):
            return real(fd, data)
        calls.append(len(data))
        if len(calls) == 1 and nbytes:
            return real(fd, bytes(data[:nbytes]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(campaign.os, "write", write)


def test_disk_full_during_append_is_one_line_naming_the_table_and_leaves_it_whole(tmp_path, monkeypatch):
    p = (tmp_path / "t.csv").resolve()
    w = TableWriter(p)
    w.append([_row(arch="a")])
    before = p.read_bytes()
    calls: list[int] = []
    _disk_full_after(monkeypatch, p, 30, calls)  # half a row reaches the file before the disk fills
    with pytest.raises(TableError) as e:
        w.append([_row(arch="b"), _row(arch="c")])
    assert str(e.value) == (
        f"cannot append 2 rows to profiling table {p}: No space left on device; the rows measured before are "
        "kept, re-run to resume"
    )
    assert len(calls) == 2 and p.read_bytes() == before  # the partial write was cut off again
    monkeypatch.undo()
    w.append([_row(arch="b")])
    assert [r["arch"] for r in read_table(p)] == ["a", "b"]


def test_campaign_stopped_by_a_full_disk_resumes(tmp_path, monkeypatch):
    cfg = _config(tmp_path, num_archs=4, chunk_size=2)
    p = Path(cfg.output).resolve()
    real = os.write
    appends: list[int] = []

    def write(fd: int, data) -> int:  # the second chunk's append meets a full disk
        if os.readlink(f"/proc/self/fd/{fd}") == str(p):
            appends.append(len(data))
            if len(appends) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(campaign.os, "write", write)
    with pytest.raises(TableError, match=f"cannot append 2 rows to profiling table {p}: No space left on device"):
        run_campaign(cfg, build_network=tiny_builder, progress=False)
    assert len(read_table(p)) == 2
    monkeypatch.undo()
    res = run_campaign(cfg, build_network=tiny_builder, progress=False)
    assert (res.new_rows, res.skipped, len(res.rows)) == (2, 2, 4)


# ---- file modes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    write_table([_row()], tmp_path / "written.csv")
    w = TableWriter(tmp_path / "appended.csv")
    atomic_write(tmp_path / "atomic.txt", lambda tmp: Path(tmp).write_text("x"))
    atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "model.pt")
    for name in ("written.csv", "appended.csv", "appended.csv.lock", "atomic.txt", "model.pt"):
        assert _mode(tmp_path / name) == mode, name
    w.append([_row()])
    assert _mode(w.path) == mode


def test_rewrites_keep_the_existing_file_mode(tmp_path, umask):
    umask(0o022)
    p = tmp_path / "t.csv"
    TableWriter(p).append([_row(arch="a")])
    p.chmod(0o640)
    with open(p, "a") as f:
        f.write("nb201,b,cpu")  # torn last line: the next writer rewrites the file atomically
    TableWriter(p)
    assert p.read_text().endswith("\n") and _mode(p) == 0o640
    model = tmp_path / "m.pt"
    atomic_torch_save({"x": torch.zeros(1)}, model)
    model.chmod(0o600)
    atomic_torch_save({"x": torch.ones(1)}, model)
    assert _mode(model) == 0o600


# ---- what kind of file -----------------------------------------------------------------------------------


def test_gzip_table_is_read_but_not_appended_to(tmp_path):
    plain = write_table([_row(arch="a"), _row(arch="b")], tmp_path / "t.csv")
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_table(gz) == read_table(plain)
    with pytest.raises(TableError, match=f"profiling table {gz} is gzip-compressed; a campaign appends to a plain"):
        TableWriter(gz)
    bench = tmp_path / "nb201.csv.gz"  # a benchmark table given as profiling table
    bench.write_bytes(gzip.compress(b"index,arch,latency_cpu,accuracy\n0,x,1.0,90\n"))
    with pytest.raises(TableError) as e:
        read_table(bench)
    assert str(e.value).startswith(f"profiling table {bench} lacks columns: space, device, latency_ms")
    assert str(e.value).endswith("(its header: index, arch, latency_cpu, accuracy)")


def test_binary_empty_and_header_only_tables(tmp_path):
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TableError, match=f"profiling table {binary}: not a UTF-8 text CSV"):
        read_table(binary)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(b"space,arch\n" * 50)[:20])
    with pytest.raises(TableError, match=f"profiling table {broken}: corrupt gzip data"):
        read_table(broken)
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(TableError, match=f"profiling table {empty} is empty"):
        read_table(empty)
    header_only = write_table([], tmp_path / "h.csv")
    assert read_table(header_only) == []
    with pytest.raises(UserError, match=f"^{header_only}: no rows"):
        measurements_from_profile(read_table(header_only), source=str(header_only))


# ---- numeric config fields -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("max_seconds", math.nan, "max_seconds: must be a finite number >= 0, got nan"),
        ("max_seconds", math.inf, "max_seconds: must be a finite number >= 0, got inf"),
        ("max_seconds", -1.0, "max_seconds: must be a finite number >= 0, got -1.0"),
        ("energy_seconds", math.nan, "energy_seconds: must be a finite number > 0, got nan"),
        ("energy_seconds", 0.0, "energy_seconds: must be a finite number > 0, got 0.0"),
        ("stratified_fraction", math.nan, "stratified_fraction: must be a finite number >= 0 and <= 1, got nan"),
        ("rounds", 2.5, "rounds: must be an integer >= 1, got 2.5"),
        ("num_archs", -1, "num_archs: must be an integer >= 0, got -1"),
        ("seed", True, "seed: must be an integer >= 0, got True"),
        ("chunk_size", "5", "chunk_size: must be an integer >= 1, got '5'"),
        ("output", "p.csv.gz", "output: p.csv.gz ends in .gz, but a campaign appends to a plain CSV file"),
    ],
)
def test_non_finite_mistyped_or_bad_config_fields_are_named(field, value, match):
    with pytest.raises(UserError) as e:
        CampaignConfig(add_cuda_devices=False, **{field: value})
    assert str(e.value) == match


def test_profile_entry_point_rejects_nan_max_seconds(mlflow_uri, tmp_path, capsys):
    from projects import profile

    args = ["--set", "devices=[cpu-ort-t1-b1]", "--set", "add_cuda_devices=false", "--set", "max_seconds=.nan",
            "--set", f"output={tmp_path / 'p.csv'}"]  # fmt: skip
    assert profile.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "max_seconds" in err and "nan" in err
    assert not (tmp_path / "p.csv").exists()


# ---- predictor files -------------------------------------------------------------------------------------

ANCHORS = np.linspace(1.0, 2.0, 10)


def _saved_predictor(path: Path) -> MetaPredictor:
    torch.manual_seed(0)
    model = MetaPredictor(hidden=8, layers=1)
    model.set_target_statistics(np.random.default_rng(0).random((20, 1)))
    model.save(path)
    return model


def _tamper(path: Path, edit) -> Path:
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def test_predictor_file_with_nan_weights_is_refused_naming_file_and_tensor(tmp_path):
    p = tmp_path / "p.pt"
    model = _saved_predictor(p)
    name = next(k for k, v in model.state_dict().items() if v.is_floating_point() and v.dim() == 2)
    _tamper(p, lambda payload: payload["state_dict"][name].view(-1).__setitem__(0, math.nan))
    with pytest.raises(UserError) as e:
        MetaPredictor.load(p)
    assert str(e.value) == f"{p}: {name} holds NaN or inf; the file is unusable (retrain or restore it)"
    model.nets[0].state_dict()[name.removeprefix("nets.0.")].fill_(math.inf)
    with pytest.raises(ValueError, match=rf"MetaPredictor.save {tmp_path / 'q.pt'}: {name} holds NaN or inf"):
        model.save(tmp_path / "q.pt")
    assert not (tmp_path / "q.pt").exists()


def test_predictor_file_with_other_shapes_or_hparams_names_the_file(tmp_path):
    p = tmp_path / "p.pt"
    _saved_predictor(p)
    _tamper(p, lambda payload: payload["hparams"].update(hidden=16))
    with pytest.raises(UserError, match=rf"^{p}: weights do not fit its hyper-parameters \(size mismatch"):
        MetaPredictor.load(p)
    _tamper(p, lambda payload: payload["hparams"].update(hidden=8, net="transformer"))
    with pytest.raises(UserError, match=rf"^{p}: unusable hyper-parameters"):
        MetaPredictor.load(p)
    _tamper(p, lambda payload: payload["hparams"].update(net="factorised", colour="red"))
    with pytest.raises(UserError, match=rf"^{p}: unusable hyper-parameters .*colour"):
        MetaPredictor.load(p)
    with pytest.raises(UserError, match="no such predictor file") as e:
        MetaPredictor.load(tmp_path / "missing.pt")
    assert isinstance(e.value, FileNotFoundError)


def test_non_finite_prediction_raises(tmp_path):
    p = tmp_path / "p.pt"
    _saved_predictor(p)
    model = MetaPredictor.load(p)
    archs = [SPACE.to_string(g) for g in SPACE.anchors()[:3]]
    assert np.isfinite(predict_latency_ms(model, ANCHORS, archs)).all()
    model.target_std.fill_(math.inf)  # finite weights cannot give this; a corrupted buffer in memory can
    with pytest.raises(ValueError, match=rf"^{p}: non-finite latency_ms prediction .* \(3 of 3 rows\)"):
        predict_latency_ms(model, ANCHORS, archs)


def test_predict_latency_cli_with_nan_weights_exits_2(tmp_path, capsys):
    from projects.predict_latency import main

    p = tmp_path / "p.pt"
    _saved_predictor(p)
    _tamper(p, lambda payload: payload["state_dict"]["target_mean"].fill_(math.nan))
    anchors = ",".join(map(str, ANCHORS))
    assert main(["--model", str(p), "--anchors", anchors, "--arch", SPACE.to_string(SPACE.anchors()[0])]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == (
        f"error: {p}: target_mean holds NaN or inf; the file is unusable (retrain or restore it)"
    )


def test_lock_waiter_is_told_and_proceeds(tmp_path, caplog):
    """A writer that finds the lock held logs that it waits, then gets it once the holder lets go."""
    w = TableWriter(tmp_path / "t.csv")
    hold = _TRY_LOCK + "; import time; print('held', flush=True); time.sleep(0.4)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(w.lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        t0 = time.monotonic()
        with caplog.at_level("INFO", logger="profiling.campaign"), w.lock():
            waited = time.monotonic() - t0
    finally:
        holder.wait(30)
    assert waited >= 0.1
    assert f"another campaign is writing it; waiting for {w.lock_path}" in caplog.text

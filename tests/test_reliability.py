"""Issue 17, run lifecycle: fault injection per defect. Stale checkpoints never fabricate a result, runs never
stay RUNNING, validation that needs no data happens before any expensive step, and bad input is one line
``error: <file or field>: <what is wrong>`` with exit code 2."""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from modnas_ops.benchmarks import BenchmarkTable
from modnas_ops.config import ConfigError, load_config
from modnas_ops.errors import Terminated, UserError
from modnas_ops.search import (
    CHECKPOINT_FILE,
    SearchConfig,
    checkpoint_path,
    config_fingerprint,
    load_checkpoint,
    preflight,
    run_search,
    search_inputs,
)
from tests import test_search
from tests.test_search import ExactPredictor

world = test_search.world  # the synthetic NB201 world (module fixture)

TINY = {
    "mode": "benchmark",
    "epochs": 2,
    "steps_per_epoch": 2,
    "num_rays": 4,
    "benchmark.query_budget": 40,
    "benchmark.initial_queries": 30,
    "benchmark.query_rounds": 1,
    "benchmark.surrogate_models": 1,
    "benchmark.surrogate_hidden": 8,
    "benchmark.surrogate_epochs": 5,
    "architect.prefs_per_device": 2,
}


class _Kill(Exception):
    pass


def _cfg(ckpt: Path | None, **over: object) -> SearchConfig:
    items = {**TINY, **({"checkpoint_dir": str(ckpt)} if ckpt else {}), **over}
    return load_config(SearchConfig, None, [f"{k}={v}" for k, v in items.items()])


def _kill_after_epoch_0(epoch: int, metrics: dict) -> None:
    if epoch == 0:
        raise _Kill


def _slower_table(table: BenchmarkTable) -> BenchmarkTable:
    """The same architectures and accuracies on other hardware: every latency doubled on dev_a."""
    latency = {d: (2.0 * v if d == "dev_a" else v) for d, v in table.latency_ms.items()}
    return BenchmarkTable(**{**{f: getattr(table, f) for f in table.__dataclass_fields__}, "latency_ms": latency})


def _search(cfg, world, table=None, **kw):
    t, costs = world
    t = table or t
    return run_search(cfg, progress=False, table=t, predictor=ExactPredictor(t, costs), **kw)


# ---- stale checkpoints ---------------------------------------------------------------------------------


def test_different_table_same_config_does_not_resume(world, tmp_path) -> None:
    cfg = _cfg(tmp_path)
    with pytest.raises(_Kill):
        _search(cfg, world, on_epoch=_kill_after_epoch_0)
    (written,) = tmp_path.glob(f"*/{CHECKPOINT_FILE}")
    seen: list[int] = []
    other = _search(cfg, world, table=_slower_table(world[0]), on_epoch=lambda e, m: seen.append(e))
    assert seen == [0, 1]  # trained from scratch, not "resumed at epoch 1"
    assert other.checkpoint is not None and other.checkpoint != written and written.is_file()
    same: list[int] = []
    _search(cfg, world, on_epoch=lambda e, m: same.append(e))
    assert same == [1]  # the original inputs do resume their own checkpoint


def test_fingerprint_covers_every_input(world) -> None:
    table, costs = world
    cfg = _cfg(None)

    def fingerprint(t: BenchmarkTable, predictor: torch.nn.Module) -> str:
        return config_fingerprint(cfg, search_inputs(cfg, {"table": t, "predictor": predictor}))

    base = fingerprint(table, ExactPredictor(table, costs))
    assert base == fingerprint(table, ExactPredictor(table, costs))  # content, not identity
    assert base != fingerprint(_slower_table(table), ExactPredictor(table, costs))
    pred = ExactPredictor(table, costs)
    with torch.no_grad():
        pred.scale.fill_(2.0)
    assert base != fingerprint(table, pred)
    assert base != config_fingerprint(_cfg(None, seed=1), search_inputs(cfg, {"table": table, "predictor": pred}))
    ids = search_inputs(cfg, {"table": table})
    assert {"space", "torch", "modnas_ops", "table"} <= set(ids)


def test_finished_search_never_resumes(world, tmp_path, caplog) -> None:
    cfg = _cfg(tmp_path)
    first = _search(cfg, world)
    assert first.checkpoint is not None and first.checkpoint.is_file()
    assert load_checkpoint(first.checkpoint, first.fingerprint) is None  # finished: not resumable
    seen: list[int] = []
    with caplog.at_level("INFO", logger="modnas_ops.search"):
        again = _search(cfg, world, on_epoch=lambda e, m: seen.append(e))
    assert seen == [0, 1] and "finished search: starting a fresh search" in caplog.text
    assert again.metrics["hv/dev_a"] == pytest.approx(first.metrics["hv/dev_a"])


def test_corrupt_or_foreign_checkpoint_is_refused_naming_the_file(world, tmp_path) -> None:
    cfg = _cfg(tmp_path)
    with pytest.raises(_Kill):
        _search(cfg, world, on_epoch=_kill_after_epoch_0)
    (path,) = tmp_path.glob(f"*/{CHECKPOINT_FILE}")
    path.write_bytes(b"\x80\x04garbage, not a checkpoint")
    with pytest.raises(UserError, match=f"^{path}: not a readable search checkpoint"):
        _search(cfg, world)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UserError, match=f"^{path}: not a search checkpoint"):
        _search(cfg, world)


def test_benchmark_config_checkpoints_by_default() -> None:
    root = Path(__file__).resolve().parents[1] / "projects" / "configs"
    from projects.search_job import SearchRunConfig

    for name in ("search.yaml", "search_nb201.yaml", "search_mbv3.yaml"):
        cfg = load_config(SearchRunConfig, root / name)
        assert cfg.search.checkpoint_dir, name
        assert checkpoint_path(cfg.search, "abc") == Path(cfg.search.checkpoint_dir) / "abc" / CHECKPOINT_FILE


def test_resume_hands_over_the_history_and_the_run_that_wrote_it(world, tmp_path) -> None:
    cfg = _cfg(tmp_path)
    killed: list[dict] = []
    with pytest.raises(_Kill):
        _search(cfg, world, run_id="run-A", on_epoch=lambda e, m: (killed.append(m), _kill_after_epoch_0(e, m)))
    states: list[dict] = []
    res = _search(cfg, world, run_id="run-B", on_resume=states.append)
    (state,) = states
    assert state["run_id"] == "run-A" and state["epoch"] == 0
    assert [h["epoch"] for h in state["history"]] == [0.0]
    assert state["history"][0]["hv/dev_a"] == pytest.approx(killed[0]["hv/dev_a"])
    assert [h["epoch"] for h in res.history] == [0.0, 1.0]  # the whole history, not just the resumed epochs


# ---- bad files -------------------------------------------------------------------------------------------


def test_bad_predictor_and_init_weights_files_are_user_errors(world, tmp_path) -> None:
    from modnas_ops.predictor import FORMAT_VERSION

    table, _ = world
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=f"^search.benchmark.predictor: {junk}: not a MetaPredictor file"):
        run_search(_cfg(None, **{"benchmark.predictor": junk}), progress=False, table=table)
    wrong = tmp_path / "wrong.pt"
    torch.save({"format": FORMAT_VERSION, "hparams": {"bogus": 1}, "state_dict": {}}, wrong)
    with pytest.raises(UserError, match=f"^search.benchmark.predictor: {wrong}: "):
        run_search(_cfg(None, **{"benchmark.predictor": wrong}), progress=False, table=table)
    with pytest.raises(UserError, match="^search.supernet.predictor: .*missing.pt: no such file"):
        preflight(_cfg(None, mode="supernet", **{"supernet.predictor": tmp_path / "missing.pt"}))
    with pytest.raises(UserError, match=f"^search.supernet.init_weights: {junk}: not a readable torch file"):
        preflight(_cfg(None, mode="supernet", **{"supernet.init_weights": junk}))


def test_disk_full_during_a_checkpoint_save_names_the_file(world, tmp_path, monkeypatch) -> None:
    import modnas_ops.atomic as atomic

    real_open = open
    state = {"full": False}

    class FullFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return FullFile(f) if state["full"] and "w" in mode else f

    monkeypatch.setattr(atomic, "open", fake_open, raising=False)

    def fill_disk_after_epoch_0(epoch: int, metrics: dict) -> None:
        state["full"] = True

    cfg = _cfg(tmp_path)
    with pytest.raises(UserError, match=f"{CHECKPOINT_FILE}: no space left on device") as e:
        _search(cfg, world, on_epoch=fill_disk_after_epoch_0)
    (path,) = tmp_path.glob(f"*/{CHECKPOINT_FILE}")
    assert str(path) in str(e.value)
    assert torch.load(path, weights_only=True)["epoch"] == 0  # the previous checkpoint is intact
    assert not list(path.parent.glob("*.tmp"))  # no half-written file left behind


# ---- config validation before any work --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search.architect.sampler=foo", "search.architect.sampler: unknown sampler 'foo'; available: gdas, reinmax"),
        ("search.architect.combine=avg", "search.architect.combine: unknown gradient combination 'avg'"),
        ("search.architect.scalarisation=max", "search.architect.scalarisation: unknown scalarisation 'max'"),
        ("search.hypernet.kind=rnn", "search.hypernet.kind: unknown hypernetwork 'rnn'; available: kernel, mlp"),
        ("search.architect.tau=nan", "search.architect.tau: expected a finite number, got 'nan'"),
        ("search.architect.tau=0", "search.architect.tau: must be > 0"),
        ("search.device=tpu9", "search.device: 'tpu9' is not a torch device"),
        ("search.seed=-1", "search.seed: must be >= 0, got -1"),
        ("search.space=nope", "search.space: unknown search space 'nope'"),
        ("search.supernet.dataset=mnist", "search.supernet.dataset: unknown dataset 'mnist'"),
        ("search.benchmark.dataset=svhn", "search.benchmark.dataset: unknown benchmark dataset 'svhn'"),
        ("search.supernet.C=0", "search.supernet.C: must be >= 1, got 0"),
        ("search.supernet.uniform_fraction=1.5", "search.supernet.uniform_fraction: must lie in [0, 1], got 1.5"),
        ("search.benchmark.initial_queries=5000", "search.benchmark.initial_queries: must lie in 1..query_budget"),
        ("search.hypernet.lr=0", "search.hypernet.lr: must be > 0, got 0"),
        ("search.architect.entropy_decay=2", "search.architect.entropy_decay: must lie in (0, 1], got 2"),
    ],
)
def test_bad_fields_fail_in_under_3_s_naming_the_field(mlflow_uri, capsys, override, message) -> None:
    from projects import search as entry

    start = time.perf_counter()
    assert entry.main(["--set", override]) == 2
    assert time.perf_counter() - start < 3.0  # was 74.5 s: after the quick profile
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {err[0][len('error: '):]}"] and message in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_field_error() -> None:
    with pytest.raises(ConfigError, match="^device: 'cuda': CUDA is not available on this machine"):
        SearchConfig(device="cuda")


def test_unwritable_paths_and_unknown_run_fail_before_any_run(mlflow_uri, tmp_path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    from projects import search as entry

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (["--set", f"output_dir={blocker}/out"], f"error: output_dir: {blocker}/out is not a writable directory"),
        (["--set", f"search.checkpoint_dir={blocker}/ck"], "error: search.checkpoint_dir: "),
        (["--profile-run-id", "0123abcd"], "error: profile_run_id: no MLflow run '0123abcd'"),
        (["--profile-table", str(tmp_path / "none.csv")], "error: profile_table: "),
        (["--benchmark", str(tmp_path / "none.csv.gz")], "error: search.benchmark.table: "),
    ]
    for argv, message in cases:
        start = time.perf_counter()
        base = ["--set", f"output_dir={tmp_path / 'out'}", "--set", f"search.checkpoint_dir={tmp_path / 'ck'}"]
        assert entry.main([*base, *argv]) == 2
        assert time.perf_counter() - start < 3.0
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message)
    client = MlflowClient()
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


# ---- run lifecycle: SIGTERM, orphans --------------------------------------------------------------------


def _runs():
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_sigterm_ends_the_run_killed_and_exits_143(mlflow_uri, capsys) -> None:
    from modnas_ops import tracking
    from modnas_ops.cli import run_main

    before = signal.getsignal(signal.SIGTERM)

    def main(argv):
        with tracking.start_run("victim", experiment="lifecycle"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted at once by the handler
        return 0

    start = time.perf_counter()
    assert run_main(main, []) == 143
    assert time.perf_counter() - start < 3.0
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    _, (run,) = _runs()
    assert run.info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
    with pytest.raises(Terminated):
        with tracking.start_run("victim2", experiment="lifecycle"):
            raise Terminated
    assert {r.info.status for r in _runs()[1]} == {"KILLED"}


def test_rerun_closes_the_orphan_and_carries_its_history(mlflow_uri) -> None:
    from modnas_ops import tracking

    client, _ = _runs()
    exp = client.create_experiment("lifecycle")
    orphan = client.create_run(exp).info.run_id  # what kill -9 leaves: RUNNING forever
    history = [{"epoch": 0.0, "hv/dev_a": 0.25, "hypernet_loss": 1.5}, {"epoch": 1.0, "hv/dev_a": 0.5}]
    with tracking.start_run("resumed", experiment="lifecycle") as run:
        assert tracking.adopt_orphan(orphan, history) == "KILLED"
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(orphan).data.tags["resumed_by_run_id"] == run.info.run_id
    new = client.get_run(run.info.run_id)
    assert new.info.status == "FINISHED" and new.data.tags["resumed_from_run_id"] == orphan
    series = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "hv/dev_a")]
    assert sorted(series) == [(0, 0.25), (1, 0.5)]


def test_entry_point_resume_closes_the_killed_run_and_keeps_the_history(world, mlflow_uri, tmp_path, monkeypatch,
                                                                      capsys) -> None:
    """projects/search.py in benchmark mode: a run killed after epoch 0 and left RUNNING (as after kill -9), then
    the same command again: the orphan ends KILLED, the new run FINISHED with the metrics of both epochs. (The
    search gets the synthetic world's table and exact predictor injected; the command names a table file.)"""
    from modnas_ops.search import run_search as real_run_search
    from projects import search as entry
    from tests.test_benchmarks import write_fake_table

    table, costs = world
    argv = [
        "--benchmark", str(write_fake_table(tmp_path / "nb201")),
        "--set", f"output_dir={tmp_path / 'out'}",
        "--set", f"search.checkpoint_dir={tmp_path / 'ckpt'}",
        *[a for k, v in TINY.items() if k != "mode" for a in ("--set", f"search.{k}={v}")],
        "--set", "generator_model_name=", "--set", "plots=false",
    ]  # fmt: skip
    kill = {"after_epoch_0": True}

    def search_in_the_world(cfg, on_epoch=None, **kw):
        def on_epoch_maybe_die(epoch, metrics):
            on_epoch(epoch, metrics)
            if epoch == 0 and kill["after_epoch_0"]:
                raise _Kill

        return real_run_search(cfg, on_epoch=on_epoch_maybe_die, table=table, predictor=ExactPredictor(table, costs),
                               **kw)  # fmt: skip

    monkeypatch.setattr("modnas_ops.search.run_search", search_in_the_world)
    with pytest.raises(_Kill):
        entry.main(argv)
    client, (orphan,) = _runs()
    client.update_run(orphan.info.run_id, status="RUNNING")  # as after kill -9: nobody closed it
    kill["after_epoch_0"] = False
    assert entry.main(argv) == 0
    assert "resuming the search at epoch 1" in capsys.readouterr().out
    client, runs = _runs()
    by_id = {r.info.run_id: r for r in runs}
    assert by_id[orphan.info.run_id].info.status == "KILLED"
    (new,) = [r for r in runs if r.info.run_id != orphan.info.run_id]
    assert new.info.status == "FINISHED" and new.data.tags["resumed_from_run_id"] == orphan.info.run_id
    steps = sorted(m.step for m in client.get_metric_history(new.info.run_id, "hv/dev_a"))
    assert steps[:2] == [0, 1]  # epoch 0 copied from the checkpoint, epoch 1 trained here
    assert np.isfinite(new.data.metrics["hv/dev_a"])

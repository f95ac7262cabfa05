"""The ``profile`` entry point: a small campaign logged to MLflow (params, table, dataset, metrics)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from projects import profile

ROOT = Path(__file__).resolve().parents[1]


def _args(tmp_path: Path, *extra: str) -> list[str]:
    sets = ["devices=[cpu-ort-t1-b1]", "add_cuda_devices=false", "anchors=false", "num_archs=2", "warmup=1",
            "repeats=2", "rounds=2", "C=4", f"output={tmp_path / 'p.csv'}", *extra]  # fmt: skip
    return [a for s in sets for a in ("--set", s)]


def test_profile_logs_table_dataset_and_metrics(mlflow_uri, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    assert profile.main(_args(tmp_path)) == 0
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("profile").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["num_archs"] == "2" and run.data.params["devices"] == "cpu-ort-t1-b1"
    m = run.data.metrics
    assert m["rows_new"] == 2 and m["rows_total"] == 2
    assert m["subnets_per_min/cpu-ort-t1-b1"] > 0 and m["median_cv/cpu-ort-t1-b1"] >= 0
    assert [a.path for a in client.list_artifacts(run.info.run_id, "profile")] == ["profile/p.csv"]
    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.name == "profile-p" and {t.value for t in ds.tags} >= {"profiling"}
    out = capsys.readouterr().out
    assert "cpu-ort-t1-b1" in out and "2 new rows" in out


def test_profile_bad_input_is_one_line_exit_2(mlflow_uri, tmp_path, capsys):
    assert profile.main(_args(tmp_path, "devices=[cpu-ort-b1]")) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: ") and "malformed device config name 'cpu-ort-b1'" in err and "\n" not in err
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert profile.main(_args(tmp_path, f"output={blocker}/p.csv")) == 2
    assert "cannot write profiling table" in capsys.readouterr().err


@pytest.mark.slow
def test_help_is_fast_and_script_runs_from_anywhere(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "projects" / "profile.py"), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0 and "--set" in res.stdout

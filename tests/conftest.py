"""Shared fixtures and the test-only "toy" space: the NB201 table (real, when MODNAS_NB201_TABLE is set) and an
isolated MLflow store."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import toy_space  # noqa: F401 - registers the ragged "toy" space, so registry-parametrised tests see two spaces

TABLE_ENV = "MODNAS_NB201_TABLE"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.gpu`` tests run where torch sees CUDA and skip, saying so, everywhere else."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is False on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny networks run fastest and most predictably on one intra-op thread (CI has 2 shared cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def nb201_table_path() -> Path:
    """Path of the shared NB201 table; skips (saying why) when the environment does not name one."""
    value = os.environ.get(TABLE_ENV)
    if not value:
        pytest.skip(f"{TABLE_ENV} is not set: point it at ../shared/benchmarks/nb201/nb201_cifar10_latency.csv.gz")
    path = Path(value)
    if not path.exists():
        pytest.skip(f"{TABLE_ENV}={value} does not exist")
    return path


@pytest.fixture(scope="session")
def _mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow sqlite store, created once (migrations take seconds) and copied per test."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _mlflow_template_db: Path) -> str:
    """A fresh sqlite tracking store + artifact root for one test; no run or experiment left active afterwards."""
    import mlflow
    import mlflow.tracking.fluent as fluent

    db = tmp_path / "mlflow.db"
    shutil.copy(_mlflow_template_db, db)
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # experiment Default's artifacts under this test too
        default = str(tmp_path / "mlruns" / "0")
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (default,))
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    fluent._active_experiment_id = None
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)

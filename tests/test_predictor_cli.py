"""Entry points of the predictor: projects/fit_predictor.py (MLflow run, registered pyfunc) and the
projects/predict_latency.py CLI, on a tiny synthetic profiling table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modnas_ops.predictor import FitConfig, fit_meta_predictor
from modnas_ops.spaces import get_search_space

SPACE = get_search_space("nb201")
OP_COST = {  # device -> ms per op (none, skip, conv1x1, conv3x3, pool): latency is a known function of the ops
    "cpu-a": np.array([0.0, 0.1, 1.0, 3.0, 0.5]),
    "cpu-b": np.array([0.0, 0.3, 1.5, 2.5, 1.0]),
    "cpu-c": np.array([0.0, 0.2, 0.8, 4.0, 0.4]),
}


def _rows(num_archs: int = 60, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    archs = list(dict.fromkeys(SPACE.anchors()))
    while len(archs) < len(SPACE.anchors()) + num_archs:
        g = SPACE.sample(rng)
        if g not in archs:
            archs.append(g)
    anchors = set(SPACE.anchors())
    rows = []
    for device, cost in OP_COST.items():
        for g in archs:
            rows.append(
                {
                    "space": "nb201",
                    "arch": SPACE.to_string(g),
                    "device": device,
                    "latency_ms": 0.5 + float(cost[list(g)].sum()),
                    "latency_ms_p90": 0.0,
                    "latency_ms_iqr": 0.0,
                    "latency_cv": 0.0,
                    "energy_mj": None,
                    "params": 1,
                    "flops": 1,
                    "runtime": "ort",
                    "provider": "CPUExecutionProvider",
                    "threads": 1,
                    "batch": 1,
                    "device_description": "synthetic",
                    "onnxruntime_version": "x",
                    "torch_version": "x",
                    "timestamp": "2026-01-01T00:00:00+00:00",
                    "role": "anchor" if g in anchors else "sample",
                }
            )
    return rows


@pytest.fixture(scope="module")
def profile_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from profiling.campaign import write_table

    return write_table(_rows(), tmp_path_factory.mktemp("profile") / "profile.csv")


FAST = ["predictor.epochs=4", "predictor.hidden=16", "predictor.layers=1", "predictor.batch_size=64"]


def _args(table: Path, *sets: str) -> list[str]:
    out = ["--profile-table", str(table)]
    for s in (*FAST, *sets):
        out += ["--set", s]
    return out


def test_fit_predictor_logs_metrics_plots_and_registers_candidate(mlflow_uri: str, profile_csv: Path) -> None:
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from projects.fit_predictor import main

    with mlflow.start_run(run_name="profile") as profile_run:  # as projects/profile.py logs its table
        mlflow.log_artifact(str(profile_csv), "profile")
    args = ["--profile-run-id", profile_run.info.run_id, *_args(profile_csv, "test_devices=[cpu-c]")[2:]]
    assert main(args) == 0
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (run,) = [r for r in runs if r.info.run_id != profile_run.info.run_id]
    assert run.info.status == "FINISHED"
    assert run.data.tags["data.source"] == f"runs:/{profile_run.info.run_id}/profile/profile.csv"
    for device in OP_COST:
        for key in ("kendall_tau", "spearman", "mape"):
            assert np.isfinite(run.data.metrics[f"{key}/{device}"])
    assert run.data.params["predictor.epochs"] == "4"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {f"plots/{d}.png" for d in OP_COST}
    version = client.get_model_version_by_alias("modnas-meta-predictor", "candidate")
    model = mlflow.pyfunc.load_model("models:/modnas-meta-predictor@candidate")
    archs = [SPACE.to_string(g) for g in SPACE.anchors()[:2]]
    df = pd.DataFrame([[1.0 + i for i in range(10)] + [a] for a in archs])
    df.columns = [f"anchor_latency_ms_{i}" for i in range(10)] + ["arch"]
    out = model.predict(df)
    assert list(out.columns) == ["latency_ms"] and len(out) == 2 and np.all(np.isfinite(out["latency_ms"]))
    assert version.tags["space"] == "nb201"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["devices=[cpu-a,gpu-z]"], "unknown device 'gpu-z'"),
        (["test_devices=[nope]"], "test device 'nope'"),
    ],
)
def test_fit_predictor_bad_input_exits_2_and_fails_run(
    mlflow_uri: str, profile_csv: Path, capsys: pytest.CaptureFixture[str], sets: list[str], message: str
) -> None:
    from mlflow.tracking import MlflowClient

    from projects.fit_predictor import main

    assert main(_args(profile_csv, *sets)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_fit_predictor_table_lacking_columns_exits_2(
    mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from projects.fit_predictor import main

    bad = tmp_path / "bad.csv"
    bad.write_text("space,arch,device\nnb201,x,y\n")
    assert main(_args(bad)) == 2
    assert "lacks columns" in capsys.readouterr().err


def test_fit_predictor_header_only_table_says_it_has_no_rows(
    mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from profiling.campaign import write_table
    from projects.fit_predictor import main

    empty = write_table([], tmp_path / "header_only.csv")
    assert main(_args(empty)) == 2
    err = capsys.readouterr().err
    assert "no rows" in err and "lacks columns" not in err


def test_fit_predictor_config_errors_exit_2_before_any_run(mlflow_uri: str, capsys) -> None:
    from projects.fit_predictor import main

    assert main(["--set", "split=[0.9,0.1,0.0]"]) == 2
    assert "split needs" in capsys.readouterr().err
    assert main(["--profile-table", "a.csv", "--benchmark", "b.csv.gz"]) == 2
    assert "at most one data source" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, profile_csv: Path) -> Path:
    from modnas_ops.predictor import measurements_from_profile
    from profiling.campaign import read_table

    devices = measurements_from_profile(read_table(profile_csv))
    result = fit_meta_predictor(devices, FitConfig(hidden=8, layers=1, epochs=2, batch_size=64), progress=False)
    return result.model.save(tmp_path_factory.mktemp("model") / "predictor.pt")


def test_predict_latency_cli(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modnas_ops.predictor import MetaPredictor
    from projects.predict_latency import main

    archs = [SPACE.to_string(g) for g in SPACE.anchors()[:3]]
    arch_file = tmp_path / "archs.txt"
    arch_file.write_text(f"# comment\n{archs[1]}\n\n{archs[2]}\n")
    anchors = [1.0 + i for i in range(10)]
    argv = ["--model", str(model_file), "--anchors", ",".join(map(str, anchors)), "--arch", archs[0]]
    assert main([*argv, "--arch-file", str(arch_file)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "arch,latency_ms" and [line.rsplit(",", 1)[0] for line in lines[1:]] == archs
    printed = np.array([float(line.rsplit(",", 1)[1]) for line in lines[1:]])
    np.testing.assert_allclose(printed, MetaPredictor.load(model_file).predict_ms(archs, anchors), rtol=1e-5)


@pytest.mark.parametrize(
    ("anchors", "arch", "message"),
    [
        ("1,2,3", None, "expected 10 values"),
        ("1,2,3,4,5,6,7,8,9,0", None, "positive"),
        ("1,2,x,4,5,6,7,8,9,10", None, "'x' is not a number"),
        ("1,2,3,4,5,6,7,8,9,10", "|conv~0|", "nb201"),
    ],
)
def test_predict_latency_cli_bad_input(
    model_file: Path, capsys: pytest.CaptureFixture[str], anchors: str, arch: str | None, message: str
) -> None:
    from projects.predict_latency import main

    good = SPACE.to_string(SPACE.anchors()[0])
    assert main(["--model", str(model_file), "--anchors", anchors, "--arch", arch or good]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


@pytest.mark.slow
def test_fit_predictor_without_a_table_runs_a_quick_profile(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import types

    import profiling.campaign
    from projects.fit_predictor import main

    seen = {}

    def fake_campaign(config):  # the real one times ONNX subnets for minutes
        seen["config"] = config
        return types.SimpleNamespace(rows=_rows(30), path=Path(config.output))

    monkeypatch.setattr(profiling.campaign, "run_campaign", fake_campaign)
    out = tmp_path / "quick.csv"
    sets = ["quick_profile_archs=30", f"quick_profile_output={out}", "registered_model_name=", "plots=false"]
    assert main([a for s in (*FAST, *sets) for a in ("--set", s)]) == 0
    assert seen["config"].num_archs == 30 and seen["config"].output == str(out)

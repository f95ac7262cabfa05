import csv
import importlib.util
import io
import sys
from pathlib import Path

import pytest

from modnas_ops.benchmarks import load_table, true_front
from tests.test_benchmarks import FAKE_HV_A, REFERENCE_HV, write_fake_table

ENTRY = Path(__file__).resolve().parents[1] / "projects" / "true_front.py"


@pytest.fixture(scope="module")
def entry():
    spec = importlib.util.spec_from_file_location("projects_true_front", ENTRY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing.get_type_hints look the module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _runs(experiment: str = "true_front"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return client, ([] if exp is None else client.search_runs([exp.experiment_id]))


def _artifact_text(client, run_id: str, path: str, dst: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(dst))).read_text()


def _artifact_paths(client, run_id: str) -> set[str]:
    out, todo = set(), [None]
    while todo:
        for a in client.list_artifacts(run_id, todo.pop()):
            if a.is_dir:
                todo.append(a.path)
            else:
                out.add(a.path)
    return out


def test_fake_table_run_logs_everything(entry, mlflow_uri, tmp_path, capsys):
    path = write_fake_table(tmp_path / "bench")
    assert entry.main(["--benchmark", str(path)]) == 0
    client, runs = _runs()
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.metrics["hv_true/dev_a"] == pytest.approx(FAKE_HV_A, abs=1e-12)
    assert run.data.metrics["front_size/dev_a"] == 4
    expected_b = true_front(load_table(path), "dev_b")
    assert run.data.metrics["hv_true/dev_b"] == expected_b.hv
    assert run.data.params["benchmark"] == str(path) and run.data.params["dataset"] == "cifar10"
    assert _artifact_paths(client, run.info.run_id) == {
        "config.yaml",
        "summary.csv",
        "fronts/dev_a.csv",
        "fronts/dev_b.csv",
        "plots/dev_a.png",
        "plots/dev_b.png",
    }
    front = list(csv.DictReader(io.StringIO(_artifact_text(client, run.info.run_id, "fronts/dev_a.csv", tmp_path))))
    assert [int(r["nb201_index"]) for r in front] == [3, 2, 1, 0]
    assert [float(r["error"]) for r in front] == [40.0, 30.0, 20.0, 10.0]
    assert [float(r["latency_norm"]) for r in front] == pytest.approx([0.0, 0.2, 0.4, 0.8])
    summary = list(csv.DictReader(io.StringIO(_artifact_text(client, run.info.run_id, "summary.csv", tmp_path))))
    assert [(r["device"], r["split"]) for r in summary] == [("dev_a", "train"), ("dev_b", "test")]
    png = Path(client.download_artifacts(run.info.run_id, "plots/dev_a.png", str(tmp_path))).read_bytes()
    assert png.startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert "dev_a" in out and f"{FAKE_HV_A:.4f}" in out


def test_bad_input_exits_2_and_fails_the_run(entry, mlflow_uri, tmp_path, capsys):
    broken = write_fake_table(tmp_path / "broken", lambda h, rows, s: rows[3].__setitem__(4, "-1"))
    good = write_fake_table(tmp_path / "good")
    cases = [
        (["--benchmark", str(tmp_path / "missing.csv.gz")], "missing.csv.gz: no such table file"),
        (["--benchmark", str(broken)], "'latency_ms_dev_a' row 3: latency -1.0"),
        (["--benchmark", str(good), "--set", "devices=dev_a,dev_z"], "unknown device 'dev_z'"),
    ]
    for argv, message in cases:
        assert entry.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1]
    _, runs = _runs()
    assert [r.info.status for r in runs] == ["FAILED"] * len(cases)
    # A bad config field is rejected before any run starts.
    assert entry.main(["--benchmark", str(good), "--set", "max_error=0"]) == 2
    assert "max_error" in capsys.readouterr().err
    assert len(_runs()[1]) == len(cases)


def test_real_table_reference_devices(entry, mlflow_uri, nb201_table_path, tmp_path, capsys):
    devices = list(REFERENCE_HV)
    argv = ["--benchmark", str(nb201_table_path), "--set", f"devices={','.join(devices)}", "--set", "plots=false"]
    assert entry.main(argv) == 0
    client, (run,) = _runs()
    assert run.info.status == "FINISHED"
    table = load_table(nb201_table_path)
    for device in devices:
        result = true_front(table, device)
        assert run.data.metrics[f"hv_true/{device}"] == result.hv
        assert run.data.metrics[f"hv_true/{device}"] == pytest.approx(REFERENCE_HV[device], abs=5e-5)
        text = _artifact_text(client, run.info.run_id, f"fronts/{device}.csv", tmp_path)
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [int(r["nb201_index"]) for r in rows] == result.indices.tolist()
        assert [r["arch"] for r in rows] == list(result.archs)
    out = capsys.readouterr().out
    assert all(f"{REFERENCE_HV[d]:.4f}" in out for d in devices)

"""projects/baselines.py in benchmark mode on a synthetic full-size NB201 table (exact true HV known)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modnas_ops.baselines import TableEvaluator
from modnas_ops.benchmarks import load_table
from modnas_ops.spaces import get_search_space

ENTRY = Path(__file__).resolve().parents[1] / "projects" / "baselines.py"


@pytest.fixture(scope="module")
def entry():
    spec = importlib.util.spec_from_file_location("projects_baselines", ENTRY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 15,625 NB201 archs with synthetic, deterministic objectives on devices dev_a (train), dev_b (test)."""
    space = get_search_space("nb201")
    cost_a = np.array([0.0, 0.1, 1.0, 3.0, 0.5])  # per op: none, skip, conv1x1, conv3x3, avg_pool
    cost_b = np.array([0.0, 0.3, 0.5, 1.0, 2.0])
    gain = np.array([0.0, 1.0, 3.0, 5.0, 2.0])
    G = np.asarray([space.from_benchmark_index(i) for i in range(space.num_architectures)])  # (N, E)
    acc = 60.0 + gain[G].sum(1) + 0.01 * (np.arange(len(G)) % 7)
    lat_a, lat_b = 1.0 + cost_a[G].sum(1), 2.0 + cost_b[G].sum(1)
    lines = ["index,arch,cifar10_test_acc,latency_ms_dev_a,latency_ms_dev_b"]
    for i, g in enumerate(G.tolist()):
        lines.append(f"{i},{space.to_string(g)},{float(acc[i])!r},{float(lat_a[i])!r},{float(lat_b[i])!r}")
    d = tmp_path_factory.mktemp("synthetic")
    with gzip.open(d / "table.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    anchors = [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]
    spec = {"train_devices": ["dev_a"], "test_devices": ["dev_b"], "reference_arch_indices": anchors}
    (d / "devices.json").write_text(json.dumps(spec))
    return d / "table.csv.gz"


def _runs(experiment: str = "baselines"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return client, ([] if exp is None else client.search_runs([exp.experiment_id]))


def _comparison(client, run_id: str, dst: Path) -> list[dict[str, str]]:
    text = Path(client.download_artifacts(run_id, "comparison.csv", str(dst))).read_text()
    return list(csv.DictReader(io.StringIO(text)))


ARGS = ["--set", "methods=[random,nsga2]", "--set", "method_options={nsga2: {population_size: 10}}",
        "--set", "max_evaluations=30", "--set", "seeds=[0,1]", "--set", "plots=false"]  # fmt: skip


def test_benchmark_mode_logs_one_child_per_method_device_seed(entry, table_path, mlflow_uri, tmp_path, capsys):
    assert (
        entry.main(["--benchmark", str(table_path), *ARGS, "--set", "plots=true", "--set", "benchmark.devices=[dev_b]"])
        == 0
    )
    client, runs = _runs()
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 2 * 2
    assert {(r.data.tags["method"], r.data.tags["device"], r.data.tags["seed"]) for r in children} == {
        (m, "dev_b", s) for m in ("random", "nsga2") for s in ("0", "1")
    }
    table = load_table(table_path)
    finals: dict[tuple[str, str], list[float]] = {}
    for r in children:
        hist = client.get_metric_history(r.info.run_id, "hv")
        assert [m.step for m in sorted(hist, key=lambda m: m.step)] == list(range(1, 31))
        values = [m.value for m in sorted(hist, key=lambda m: m.step)]
        assert np.all(np.diff(values) >= 0) and r.data.metrics["evaluations"] == 30
        finals.setdefault((r.data.tags["device"], r.data.tags["method"]), []).append(values[-1])
    rows = _comparison(client, parent.info.run_id, tmp_path)
    assert len(rows) == 2
    for row in rows:
        hv_true = TableEvaluator(table, row["device"]).true_hypervolume()
        assert float(row["hv_true"]) == pytest.approx(hv_true)
        assert float(row["hv_mean"]) == pytest.approx(np.mean(finals[row["device"], row["method"]]))
        assert float(row["target_hv"]) == pytest.approx(0.98 * hv_true)
        assert row["target_source"] == "0.98 x hv_true" and row["hv_normalisation"] == "table (MODNAS)"
    paths = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert paths == {"plots/hv_dev_b.png", "plots/front_dev_b.png"}
    out = capsys.readouterr().out
    assert "dev_b" in out and "nsga2" in out


def test_a_modnas_run_joins_the_comparison_and_sets_the_target(entry, table_path, mlflow_uri, tmp_path):
    from modnas_ops import tracking

    with tracking.start_run("search", experiment="search") as run:
        tracking.log_metrics({"hv/dev_a": 0.5, "num_queries": 123.0})
    args = ["--benchmark", str(table_path), "--modnas-run-id", run.info.run_id, *ARGS, "--set", "seeds=[0]"]
    assert entry.main(args) == 0
    client, runs = _runs()
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    rows = {(r["device"], r["method"]): r for r in _comparison(client, parent.info.run_id, tmp_path)}
    assert float(rows["dev_a", "modnas"]["hv_mean"]) == 0.5
    assert float(rows["dev_a", "modnas"]["evaluations"]) == 123.0
    assert rows["dev_a", "random"]["target_source"] == "modnas" and float(rows["dev_a", "random"]["target_hv"]) == 0.5
    assert rows["dev_a", "random"]["reached_target"] == "1/1"  # HV 0.5 is within reach of 30 evaluations
    assert ("dev_b", "modnas") not in rows and rows["dev_b", "random"]["target_source"] == "0.98 x hv_true"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "methods=[random,bogus]"], "unknown baseline 'bogus'"),
        (["--set", "methods=[unsga3]"], "unsga3 needs >= 3 objectives; this setting has error, latency_ms"),
        (["--set", "method_options={nsag2: {population_size: 3}}"], "unknown baseline 'nsag2'"),
        (["--set", "method_options={nsga2: {population_size: 1}}"], "population_size must be >= 2"),
        (["--set", "benchmark.devices=[toaster]"], "unknown device 'toaster'"),
    ],
)
def test_bad_input_exits_2_with_one_line(entry, table_path, mlflow_uri, capsys, extra, message):
    assert entry.main(["--benchmark", str(table_path), *ARGS, *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("20")]  # minus log lines
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    _, runs = _runs()
    assert all(r.info.status == "FAILED" for r in runs)


def test_a_modnas_run_without_hv_metrics_is_refused(entry, table_path, mlflow_uri, capsys):
    from modnas_ops import tracking

    with tracking.start_run("search", experiment="search") as run:
        tracking.log_metrics({"loss": 1.0})
    assert entry.main(["--benchmark", str(table_path), "--modnas-run-id", run.info.run_id, *ARGS]) == 2
    assert "has no hv/<device> metric for dev_a, dev_b" in capsys.readouterr().err


def test_bench_baselines_prints_the_cost_against_a_modnas_target(table_path, tmp_path, capsys):
    from projects import bench_baselines

    targets = tmp_path / "t.json"
    targets.write_text(json.dumps({"hv": {"dev_a": 0.5, "dev_b": 0.5}, "num_queries": 100}))
    assert bench_baselines.main(["--benchmark", str(table_path), "--methods", "random", "--max-evaluations", "40",
                                 "--target-json", str(targets)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "MODNAS accuracy queries: 100 (file" in out
    modnas = [line for line in out.splitlines() if line.startswith("MODNAS ")][-1]  # the cost table's row
    assert modnas.split()[1:5] == ["100", "20", "120", "1.0"]  # 100 accuracy queries + 10 anchors x 2 devices
    with pytest.raises(SystemExit, match="'agemoea' needs at least 3 objectives"):
        bench_baselines.main(["--benchmark", str(table_path), "--methods", "random,agemoea"])

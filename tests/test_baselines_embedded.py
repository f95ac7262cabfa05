"""Embedded mode: supernet validation error as an objective, and projects/baselines.py end to end on digits with
onnxruntime latency (tiny settings)."""

from __future__ import annotations

import csv
import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modnas_ops.baselines import MeasuredEvaluator, MemoisedEvaluator
from modnas_ops.baselines.supernet_error import SupernetValidError, train_supernet_uniform
from modnas_ops.data import load_digits_splits
from modnas_ops.spaces import get_search_space
from modnas_ops.spaces.nb201.supernet import Supernet

ENTRY = Path(__file__).resolve().parents[1] / "projects" / "baselines.py"


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits(seed=0)


def test_supernet_error_is_the_full_batch_error_and_leaves_the_supernet_unchanged(digits) -> None:
    space = get_search_space("nb201")
    torch.manual_seed(0)
    net = Supernet(space, C=4, N=1, in_channels=1, num_classes=10)
    losses = train_supernet_uniform(net, space, digits.train, steps=20, device=torch.device("cpu"), seed=0)
    assert len(losses) == 20 and np.mean(losses[-5:]) < np.mean(losses[:5])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = digits.valid.tensors
    error = SupernetValidError(net, space, digits.valid, torch.device("cpu"), batch_size=len(x))
    g = (3, 1, 2, 3, 0, 1)
    with torch.no_grad():
        net.train()
        expected = 100.0 * float((net(x, torch.from_numpy(space.one_hot(g))).argmax(-1) != y).float().mean())
    net.load_state_dict(before)
    net.eval()
    assert error(g) == pytest.approx(expected)
    assert error(g) == error(g) and not net.training  # deterministic; train/eval mode restored
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_memoised_evaluator_calls_the_inner_evaluator_once_per_arch() -> None:
    calls = []

    def latency(g: tuple[int, ...]) -> float:
        calls.append(g)
        return float(len(calls))  # a different number on every call: repeats would show

    ev = MemoisedEvaluator(MeasuredEvaluator(lambda g: 1.0, latency))
    first = ev.evaluate([(1, 2), (3, 4), (1, 2)])
    again = ev.evaluate([(3, 4), (5, 6)])
    np.testing.assert_array_equal(first[:, 1], [1.0, 2.0, 1.0])
    np.testing.assert_array_equal(again[:, 1], [2.0, 3.0])
    assert calls == [(1, 2), (3, 4), (5, 6)] and len(ev) == 3


@pytest.fixture
def entry():
    spec = importlib.util.spec_from_file_location("projects_baselines", ENTRY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_embedded_run_measures_each_arch_once_per_device(entry, mlflow_uri, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    # random search and NSGA-II (population 4) with seed 0 draw the same first 4 archs: shared measurements
    args = ["--set", "methods=[random,nsga2]", "--set", "method_options={nsga2: {population_size: 4}}",
            "--set", "max_evaluations=4",
            "--set", "plots=false", "--set", "embedded.supernet_steps=5", "--set", "embedded.C=4",
            "--set", "embedded.rounds=2", "--set", "embedded.repeats=1"]  # fmt: skip
    assert entry.main(args) == 0
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("baselines").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {r.data.tags["method"] for r in children} == {"random", "nsga2"}
    assert {r.data.tags["device"] for r in children} == {"cpu-ort-t1-b1"}
    measured: dict[str, tuple[float, float]] = {}
    seen = []
    for r in children:
        text = Path(client.download_artifacts(r.info.run_id, "history.csv", str(tmp_path / r.info.run_id))).read_text()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 4 and r.data.metrics["evaluations"] == 4
        seen.append({row["arch"] for row in rows})
        for row in rows:
            value = (float(row["error"]), float(row["latency_ms"]))
            assert 0.0 <= value[0] <= 100.0 and value[1] > 0.0
            assert measured.setdefault(row["arch"], value) == value  # shared measurements: same arch, same numbers
    assert seen[0] == seen[1]  # the check above compared every arch across the two methods
    text = Path(client.download_artifacts(parent.info.run_id, "comparison.csv", str(tmp_path))).read_text()
    assert {r["hv_normalisation"] for r in csv.DictReader(io.StringIO(text))} == {"all measured archs"}


def _saved_supernet(digits, path: Path, C: int = 4) -> tuple[Path, Supernet]:
    from modnas_ops.supernet_training import save_supernet

    space = get_search_space("nb201")
    torch.manual_seed(1)
    net = space.build_supernet((1, 8, 8), 10, C=C, N=1)
    train_supernet_uniform(net, space, digits.train, steps=10, device=torch.device("cpu"), seed=1)
    return save_supernet(net, path), net.eval()


TINY_EMBEDDED = ["--set", "methods=[random]", "--set", "max_evaluations=3", "--set", "plots=false",
                 "--set", "embedded.C=4", "--set", "embedded.rounds=2", "--set", "embedded.repeats=1"]  # fmt: skip


def _history(client, run, tmp_path: Path) -> list[dict[str, str]]:
    text = Path(client.download_artifacts(run.info.run_id, "history.csv", str(tmp_path / run.info.run_id))).read_text()
    return list(csv.DictReader(io.StringIO(text)))


def test_embedded_error_from_a_given_supernet_is_that_supernets_judgement(entry, mlflow_uri, tmp_path, digits):
    """embedded.supernet = a save_supernet file: no supernet is trained; every error is the file's judgement."""
    from mlflow.tracking import MlflowClient

    path, net = _saved_supernet(digits, tmp_path / "judge.pt")
    space = get_search_space("nb201")
    judge = SupernetValidError(net, space, digits.valid, torch.device("cpu"), batch_size=256)
    assert entry.main([*TINY_EMBEDDED, "--set", f"embedded.supernet={path}"]) == 0
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("baselines").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags["supernet.source"] == str(path) and "supernet_loss" not in parent.data.metrics
    rows = _history(client, child, tmp_path)
    assert len(rows) == 3
    for row in rows:
        assert float(row["error"]) == pytest.approx(judge(space.from_string(row["arch"])))


def test_embedded_supernet_modnas_judges_with_the_search_runs_logged_supernet(entry, mlflow_uri, tmp_path, digits):
    """embedded.supernet = modnas: the MODNAS run's model/supernet.pt judges the methods and its front."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from modnas_ops import tracking

    path, net = _saved_supernet(digits, tmp_path / "supernet.pt")
    space = get_search_space("nb201")
    front = [space.to_string(space.sample(np.random.default_rng(i))) for i in range(2)]
    with tracking.start_run("fake-search", experiment="search") as run:
        tracking.log_metrics({"hv/cpu-ort-t1-b1": 0.5})
        tracking.log_table(pd.DataFrame({"device": "cpu-ort-t1-b1", "arch": front, "on_front": True}),
                           "fronts/fronts.csv")  # fmt: skip
        tracking.log_artifact(path, "model")
    judge = SupernetValidError(net, space, digits.valid, torch.device("cpu"), batch_size=256)
    args = [*TINY_EMBEDDED, "--supernet", "modnas", "--modnas-run-id", run.info.run_id]  # MLproject's flags
    assert entry.main(args) == 0
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("baselines").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["supernet.source"] == "modnas"
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    for row in _history(client, child, tmp_path):
        assert float(row["error"]) == pytest.approx(judge(space.from_string(row["arch"])))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "embedded.supernet=modnas"], "embedded: supernet 'modnas' needs modnas_run_id"),
        (["--set", "embedded.supernet=/no/such.pt"], "embedded: supernet '/no/such.pt' is neither 'modnas' nor a file"),
        (["--set", "embedded.C=8"], "embedded.supernet: the supernet has C=4, the config needs C=8"),
    ],
)
def test_a_bad_embedded_supernet_exits_2_naming_it(entry, mlflow_uri, tmp_path, digits, capsys, extra, message):
    path, _ = _saved_supernet(digits, tmp_path / "judge.pt")
    args = [*TINY_EMBEDDED, "--set", f"embedded.supernet={path}", *extra]
    assert entry.main(args) == 2
    assert message in capsys.readouterr().err

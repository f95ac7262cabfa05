"""projects/search.py end to end on the embedded default (digits, this CPU), kept tiny."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from projects import search as search_entry


@pytest.fixture(scope="module")
def profile_table(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real (tiny) profiling campaign on this machine: anchors + 10 archs on two CPU configs."""
    from profiling.campaign import run_campaign
    from profiling.config import CampaignConfig

    out = tmp_path_factory.mktemp("profile") / "profile.csv"
    cfg = CampaignConfig(
        devices=("cpu-ort-t1-b1", "cpu-ort-t1-b32"),
        num_archs=10,
        rounds=3,
        repeats=2,
        energy=False,
        add_cuda_devices=False,
        output=str(out),
    )
    run_campaign(cfg)
    return str(out)


TINY = [
    "--set", "search.supernet.dataset=digits",  # learnable in 3 steps, so the fronts are not empty
    "--set", "search.supernet.network_options={}",
    "--set", "search.epochs=1",
    "--set", "search.steps_per_epoch=3",
    "--set", "search.supernet.warmup_epochs=0",
    "--set", "search.supernet.pretrain_steps=10",
    "--set", "search.refine_rounds=1",
    "--set", "search.supernet.predictor_epochs=20",
    "--set", "search.supernet.reference_archs=8",
    "--set", "search.num_rays=4",
    "--set", "remeasure_rounds=2",
    "--set", "finetune_steps=5",
    "--set", "plots=false",
]  # fmt: skip


def test_search_logs_fronts_and_registers_generator_and_subnets(mlflow_uri, tmp_path, profile_table, caplog):
    """... and warns of nothing: no Python warning from our code, mlflow or pandas, no WARNING log of mlflow's
    (SQLAlchemy's deprecation inside mlflow's own store is not about our calls)."""
    import logging
    import warnings

    from mlflow.tracking import MlflowClient

    from modnas_ops import tracking
    from modnas_ops.spaces import get_search_space

    argv = [
        "--profile-table", profile_table,
        "--set", f"search.checkpoint_dir={tmp_path / 'ckpt'}",
        "--set", f"output_dir={tmp_path / 'out'}",
        *TINY,
        "--set", "plots=true",
    ]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="mlflow"):
        warnings.simplefilter("always")
        assert search_entry.main(argv) == 0
    ours = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught
            if w.category.__name__ != "SADeprecationWarning"]  # fmt: skip
    assert ours == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("mlflow")] == []
    client = MlflowClient()
    (run,) = client.search_runs(client.get_experiment_by_name("search").experiment_id)
    assert run.info.status == "FINISHED"
    assert "MODNAS search" in run.data.tags["mlflow.note.content"]  # the run's description
    context = [{t.key: t.value for t in i.tags}["mlflow.data.context"] for i in run.inputs.dataset_inputs]
    inputs = {(i.dataset.name, c) for i, c in zip(run.inputs.dataset_inputs, context, strict=True)}
    assert inputs == {("digits", "training"), ("profile", "profiling")}
    from tests.test_report import Page

    page = Page()
    page.feed(Path(tracking.download_artifacts(run.info.run_id, "report.html", tmp_path / "dl")).read_text())
    assert [r[0] for r in page.tables["hv"][1:]] == ["cpu-ort-t1-b1", "cpu-ort-t1-b32"] and len(page.images) == 2
    for device in ("cpu-ort-t1-b1", "cpu-ort-t1-b32"):
        assert f"hv/{device}" in run.data.metrics
        assert run.data.metrics[f"remeasured_mape/{device}"] >= 0.0
    space = get_search_space("nb201")
    from modnas_ops.supernet_training import load_supernet

    judge = load_supernet(tracking.download_artifacts(run.info.run_id, "model/supernet.pt", tmp_path / "sn"))
    assert judge.space.name == "nb201" and judge.build_args["num_classes"] == 10  # the frozen judge, for baselines
    gen = tracking.load_pyfunc("models:/modnas-generator@candidate")
    anchors = {f"anchor_latency_ms_{i}": [0.01 * (i + 1)] for i in range(10)}
    out = gen.predict(pd.DataFrame({**anchors, "pref_0": [0.3], "pref_1": [0.7]}))
    space.from_string(out["arch"].iloc[0])  # a valid canonical architecture
    assert out["pred_latency_ms"].iloc[0] > 0
    version = client.get_model_version_by_alias("modnas-architectures", "candidate-cpu-ort-t1-b1")
    assert version.tags["device"] == "cpu-ort-t1-b1"
    space.from_string(version.tags["arch"])
    objectives = json.loads(version.tags["objectives"])  # the registered subnet was fine-tuned and tested
    assert 0.0 <= objectives["test_error"] <= 100.0 and objectives["measured_latency_ms"] > 0
    assert json.loads(version.tags["preference"])
    assert version.tags["arch"] in version.description
    assert "MODNAS generator" in client.get_model_version_by_alias("modnas-generator", "candidate").description


def test_bad_config_exits_2_before_any_run(mlflow_uri, capsys, profile_table):
    assert search_entry.main(["--profile-table", profile_table, "--set", "remeasure_rounds=-1"]) == 2
    assert "remeasure_rounds must be >= 0" in capsys.readouterr().err
    assert search_entry.main(["--profile-table", profile_table, "--set", "remeasure_max_seconds=0"]) == 2
    assert "remeasure_max_seconds: must be > 0" in capsys.readouterr().err


@pytest.mark.slow  # a second real search (~5 s); the default run has the main one
def test_search_on_an_image_folder_logs_it_as_the_dataset_input(mlflow_uri, tmp_path, profile_table, capsys):
    from mlflow.tracking import MlflowClient

    from tests.test_data_user import make_folder

    root = make_folder(tmp_path / "imgs", per_class=12, size=(8, 8))
    at = TINY.index("search.supernet.dataset=digits")
    argv = [
        "--profile-table", profile_table, *TINY[: at - 1], *TINY[at + 1 :],  # TINY less its "--set" of digits
        "--dataset", "image-folder", "--data-root", str(root),
        "--set", f"search.checkpoint_dir={tmp_path / 'ckpt'}", "--set", f"output_dir={tmp_path / 'out'}",
        "--set", "generator_model_name=", "--set", "architectures_model_name=",
    ]  # fmt: skip
    assert search_entry.main(argv) == 0
    client = MlflowClient()
    (run,) = client.search_runs(client.get_experiment_by_name("search").experiment_id)
    (data,) = [i for i in run.inputs.dataset_inputs if i.dataset.name == f"image folder {root}"]
    assert json.loads(data.dataset.source) == {"uri": str(root.resolve())}
    assert {t.key: t.value for t in data.tags}["splits"] == json.dumps({"train": 18, "valid": 9, "test": 9})
    (root / "owl" / "0.png").write_bytes(b"broken")
    capsys.readouterr()
    assert search_entry.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {root / 'owl' / '0.png'}: not a readable image " + err[0].split("not a readable image ")[1]]
    assert len(client.search_runs(client.get_experiment_by_name("search").experiment_id)) == 1  # no run started


def test_train_supernet_entry_trains_a_language_model_supernet_in_its_task_units(mlflow_uri, tmp_path, capsys):
    from modnas_ops.supernet_training import load_supernet
    from projects import train_supernet

    out = tmp_path / "gpt2.pt"
    args = ["space=gpt2", "dataset=pydoc-bytes", "C=4", "pretrain.epochs=1", "pretrain.steps_per_epoch=2",
            "pretrain.batch_size=4", "pretrain.eval_archs=1", "pretrain.optimizer=adamw", "pretrain.lr=0.003",
            f"output={out}"]  # fmt: skip
    assert train_supernet.main([x for a in args for x in ("--set", a)]) == 0
    printed = capsys.readouterr().out
    assert "nats per token" in printed and "%" not in printed  # the LM's cross-entropy, not a percentage
    assert load_supernet(out).space.name == "gpt2"


def test_shortlist_measurement_exports_each_subnet_once_across_device_configs(monkeypatch):
    """Two configs of one batch size time the same ONNX export of a subnet (exported once, not per config)."""
    from types import SimpleNamespace

    import numpy as np

    import profiling.latency
    from modnas_ops.spaces import get_search_space
    from projects.search_job import SearchRunConfig, _ort_measure
    from projects.search_job import _dataset as dataset_of

    cfg = SearchRunConfig(remeasure_rounds=2)
    space = get_search_space("nb201")
    supernet = space.build_supernet(tuple(dataset_of(cfg).input_shape), C=4, N=1, num_classes=10).eval()
    objective = SimpleNamespace(space=space, trained_supernet=lambda: supernet, metrics=("latency_ms", "energy_mj"))
    genotypes = [space.sample(np.random.default_rng(i)) for i in range(3)]
    exported = []
    real_export = profiling.latency.export_onnx

    def counting_export(model, example, **kwargs):
        exported.append(kwargs.get("name"))
        return real_export(model, example, **kwargs)

    monkeypatch.setattr(profiling.latency, "export_onnx", counting_export)
    measure = _ort_measure(cfg)
    for name in ("cpu-ort-t1-b1", "cpu-ort-t2-b1"):
        out = measure(objective, SimpleNamespace(name=name), genotypes)  # (archs, metrics)
        assert out.shape == (3, 2) and (out[:, 0] > 0).all() and np.isnan(out[:, 1]).all()
    assert sorted(exported) == sorted(space.to_string(g) for g in genotypes)
    assert measure(objective, SimpleNamespace(name="a100"), genotypes) is None  # a table's device: not timed

"""ParetoGenerator: argmax archs + denormalised predictions, input validation, save/load, MLflow pyfunc and
ONNX registration of chosen subnets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from modnas_ops.devices import Device, anchor_columns, anchor_embedding
from modnas_ops.errors import UserError
from modnas_ops.generator import (
    ParetoGenerator,
    TableErrorModel,
    load_generator,
    preference_columns,
    register_component,
    save_generator,
)
from modnas_ops.hypernetwork import create_hypernetwork
from modnas_ops.registration import check_alias, device_alias
from modnas_ops.spaces import get_search_space

SPACE = get_search_space("nb201")
HAS_EXPORT = importlib.util.find_spec("profiling.export") is not None


@register_component
class FakePredictor(nn.Module):
    """Known-answer stand-in for the MetaPredictor: a linear score of the one-hot arch plus the embedding."""

    def __init__(self, shape: tuple[int, int], metrics: tuple[str, ...] = ("latency_ms",), seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.metrics = tuple(metrics)
        self.shape = tuple(shape)
        self.w = nn.Parameter(torch.rand(len(metrics), *shape, generator=g))  # (P, E, K)
        self.v = nn.Parameter(torch.rand(len(metrics), SPACE.num_anchors, generator=g))  # (P, 10)

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        e = self.shape[0]
        return torch.einsum("bek,pek->bp", arch, self.w) / e + 0.1 * embedding @ self.v.T  # (B, P)

    def save(self, path: str | Path) -> None:
        torch.save({"shape": list(self.shape), "metrics": list(self.metrics), "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path) -> FakePredictor:
        payload = torch.load(path, weights_only=True)
        model = cls(tuple(payload["shape"]), tuple(payload["metrics"]))
        model.load_state_dict(payload["state"])
        return model


class UnregisteredPredictor(FakePredictor):
    pass


def _devices() -> dict[str, Device]:
    rng = np.random.default_rng(3)
    return {
        name: Device(name, tuple(float(x) for x in rng.uniform(lo, 5 * lo, SPACE.num_anchors)))
        for name, lo in (("dev-a", 1.0), ("gpu:0 x", 0.05))
    }


def _hypernetwork(num_objectives: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return create_hypernetwork(
        "mlp", shape=SPACE.shape, num_objectives=num_objectives, embedding_dim=10, hidden=16, init_std=1.0
    )


def _generator(**kwargs) -> ParetoGenerator:
    args = {
        "hypernetwork": _hypernetwork(),
        "space": "nb201",
        "objectives": ("error", "latency_ms"),
        "predictor": FakePredictor(SPACE.shape),
        "error_model": TableErrorModel(SPACE, np.arange(SPACE.num_architectures) * 0.01),
        "devices": _devices(),
    }
    return ParetoGenerator(**{**args, **kwargs})


def _input(gen: ParetoGenerator, n_prefs: int = 9) -> pd.DataFrame:
    theta = np.linspace(0.0, np.pi / 2, n_prefs)
    prefs = np.stack([np.cos(theta) ** 2, np.sin(theta) ** 2], axis=1)  # on the simplex; ends have a 0
    return gen.make_input(prefs)


def _one_line(excinfo: pytest.ExceptionInfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_predict_matches_direct_argmax_and_denormalised_predictions() -> None:
    hyper, pred = _hypernetwork(), FakePredictor(SPACE.shape)
    errors = np.arange(SPACE.num_architectures) * 0.01
    gen = _generator(hypernetwork=hyper, predictor=pred, error_model=TableErrorModel(SPACE, errors))
    inp = _input(gen)
    inp.index = inp.index + 100  # output keeps the input's index
    out = gen.predict(inp)
    assert list(out.columns) == ["arch", "nb201_index", "pred_error", "pred_latency_ms"]
    assert list(out.index) == list(inp.index)

    lat = inp[anchor_columns("latency_ms", 10)].to_numpy()
    prefs = inp[preference_columns(2)].to_numpy()
    emb = torch.as_tensor(np.stack([anchor_embedding(a) for a in lat]))
    r = torch.as_tensor(prefs / prefs.sum(axis=1, keepdims=True), dtype=torch.float32)
    with torch.no_grad():
        idx = hyper.eval()(r, emb).argmax(-1)  # (N, E)
        y = pred(nn.functional.one_hot(idx, SPACE.max_choices).float(), emb)[:, 0].double().numpy()  # (N,)
    genotypes = [tuple(row) for row in idx.tolist()]
    assert list(out["arch"]) == [SPACE.to_string(g) for g in genotypes]
    assert all(SPACE.to_string(SPACE.from_string(a)) == a for a in out["arch"])
    assert len(set(out["arch"])) > 2  # the test sees several different archs
    assert list(out["nb201_index"]) == [SPACE.benchmark_index(g) for g in genotypes]
    want_ms = lat.min(axis=1) + y * (lat.max(axis=1) - lat.min(axis=1))
    np.testing.assert_allclose(out["pred_latency_ms"].to_numpy(), want_ms, rtol=1e-6)
    want_err = np.asarray(errors, dtype=np.float32)[[SPACE.index(g) for g in genotypes]]
    np.testing.assert_array_equal(out["pred_error"].to_numpy(), want_err.astype(np.float64))


def test_top_k_rows_are_the_most_probable_architectures_with_their_objectives() -> None:
    gen = _generator()
    inp = _input(gen, n_prefs=4).assign(top_k=[1, 3, 5, 2, 1, 3, 5, 2])
    inp.index = inp.index + 10
    out = gen.predict(inp)
    assert list(out.columns[:3]) == ["input_row", "rank", "log_prob"] and len(out) == int(inp["top_k"].sum())
    plain = gen.predict(inp.drop(columns="top_k"))
    for label, rows in out.groupby("input_row"):
        assert list(rows["rank"]) == list(range(1, int(inp.loc[label, "top_k"]) + 1))
        assert rows["arch"].iloc[0] == plain.loc[label, "arch"]  # rank 1 = the argmax
        assert rows["arch"].is_unique and (np.diff(rows["log_prob"].to_numpy()) <= 1e-12).all()
    # each shortlisted arch's objectives are the generator's predictions for that arch on the row's device
    firsts = out[out["rank"] == 1].set_index("input_row")
    np.testing.assert_allclose(firsts["pred_latency_ms"], plain["pred_latency_ms"], rtol=1e-6)
    np.testing.assert_array_equal(firsts["pred_error"], plain["pred_error"])


@pytest.mark.parametrize("bad", [0, 2.5, 65, "x"])
def test_bad_top_k_names_the_row(bad) -> None:
    gen = _generator()
    inp = _input(gen, n_prefs=2).assign(top_k=[1, 1, 1, bad])
    with pytest.raises(ValueError, match="row 3.*top_k must be an integer in 1..64") as e:
        gen.predict(inp)
    _one_line(e)


def test_predict_is_deterministic_batched_and_a_snapshot() -> None:
    hyper = _hypernetwork()
    gen = _generator(hypernetwork=hyper)
    inp = _input(gen)
    want = gen.predict(inp)
    pd.testing.assert_frame_equal(_generator(hypernetwork=hyper, batch_size=4).predict(inp), want)
    pd.testing.assert_frame_equal(gen.predict(inp), want)
    hyper.train()
    with torch.no_grad():
        for p in hyper.parameters():
            p.add_(torch.randn_like(p))
    pd.testing.assert_frame_equal(gen.predict(inp), want)  # the generator holds its own frozen copy
    assert hyper.training and all(p.requires_grad for p in hyper.parameters())
    assert len(gen.predict(inp.iloc[:0])) == 0


def test_front_lists_every_device_and_preference() -> None:
    gen = _generator()
    prefs = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])
    front = gen.front(prefs)
    assert list(front["device"]) == ["dev-a"] * 3 + ["gpu:0 x"] * 3
    np.testing.assert_array_equal(front[preference_columns(2)].to_numpy(), np.vstack([prefs, prefs]))
    pd.testing.assert_frame_equal(front[gen.output_columns], gen.predict(gen.make_input(prefs)))


def test_columns_missing_or_extra_are_named() -> None:
    gen = _generator()
    inp = _input(gen).drop(columns=["pref_1", "anchor_latency_ms_9"]).assign(foo=1.0)
    with pytest.raises(ValueError) as excinfo:
        gen.predict(inp)
    msg = _one_line(excinfo)
    assert "'pref_1'" in msg and "'anchor_latency_ms_9'" in msg and "'foo'" in msg
    with pytest.raises(ValueError, match="DataFrame"):
        gen.predict(inp.to_numpy())
    with pytest.raises(ValueError, match="'pref_0' is not numeric"):
        gen.predict(_input(gen).assign(pref_0="x"))


@pytest.mark.parametrize("bad", [[0.0, 0.0], [-0.5, 1.0], [np.nan, 1.0], [-1.0, -1.0], [0.5, 0.6], [3.0, 0.0]])
def test_bad_preferences_name_the_row(bad: list[float]) -> None:
    gen = _generator()
    inp = _input(gen, n_prefs=3)
    inp.loc[1, preference_columns(2)] = bad
    with pytest.raises(UserError) as excinfo:
        gen.predict(inp)
    assert "input row 1:" in _one_line(excinfo)


A = SPACE.num_anchors


@pytest.mark.parametrize("bad", [np.ones(A), -np.arange(1, A + 1), np.full(A, np.inf)])
def test_bad_anchors_name_the_row(bad: np.ndarray) -> None:
    gen = _generator()
    inp = _input(gen, n_prefs=3)
    inp.loc[2, anchor_columns("latency_ms", 10)] = bad
    with pytest.raises(ValueError) as excinfo:
        gen.predict(inp)
    assert "input row 2: anchor_latency_ms" in _one_line(excinfo)


def test_energy_metric_is_denormalised_with_its_own_anchors() -> None:
    metrics = ("latency_ms", "energy_mj")
    pred = FakePredictor(SPACE.shape, metrics=metrics)
    lat = np.linspace(1.0, 10.0, SPACE.num_anchors)
    energy = np.linspace(50.0, 70.0, SPACE.num_anchors)
    gen = ParetoGenerator(
        _hypernetwork(3),
        "nb201",
        objectives=("error", "latency_ms", "energy_mj"),
        predictor=pred,
        devices={"d": {"latency_ms": lat, "energy_mj": energy}},
    )
    lat_cols, energy_cols = anchor_columns("latency_ms", 10), anchor_columns("energy_mj", 10)
    assert gen.input_columns == [*lat_cols, *energy_cols, *preference_columns(3)]
    out = gen.predict(gen.make_input([[1 / 3, 1 / 3, 1 / 3]]))
    assert list(out.columns) == ["arch", "nb201_index", "pred_latency_ms", "pred_energy_mj"]
    g = SPACE.from_string(out["arch"][0])
    with torch.no_grad():
        y = pred(torch.as_tensor(SPACE.one_hot(g))[None], torch.as_tensor(anchor_embedding(lat))[None])[0]
    np.testing.assert_allclose(out["pred_latency_ms"][0], 1.0 + float(y[0]) * 9.0, rtol=1e-6)
    np.testing.assert_allclose(out["pred_energy_mj"][0], 50.0 + float(y[1]) * 20.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"device 'e' lacks anchor values for \['energy_mj'\]"):
        ParetoGenerator(_hypernetwork(3), "nb201", ("error", "latency_ms", "energy_mj"), pred, devices={"e": lat})


def test_constructor_checks_objectives() -> None:
    with pytest.raises(ValueError, match="takes 2 objectives but 3"):
        _generator(objectives=("error", "latency_ms", "energy_mj"))
    with pytest.raises(ValueError, match=r"predictor metrics \['latency_ms'\] are not among"):
        _generator(objectives=("error", "energy_mj"))
    with pytest.raises(ValueError, match="error model needs 'error'"):
        _generator(objectives=("params", "latency_ms"))


def test_save_load_roundtrip(tmp_path: Path) -> None:
    gen = _generator()
    inp = _input(gen)
    directory = save_generator(gen, tmp_path / "gen")
    spec = json.loads((directory / "generator.json").read_text())
    assert spec["predictor"]["class"] == "tests.test_generator:FakePredictor"
    loaded = load_generator(directory)
    pd.testing.assert_frame_equal(loaded.predict(inp), gen.predict(inp))
    assert loaded.devices == gen.devices and loaded.objectives == gen.objectives
    with pytest.raises(FileNotFoundError, match="no generator spec"):
        load_generator(tmp_path / "nowhere")


def test_save_rejects_components_it_cannot_rebuild(tmp_path: Path) -> None:
    gen = _generator(predictor=UnregisteredPredictor(SPACE.shape))
    with pytest.raises(ValueError, match="neither in modnas_ops nor registered"):
        save_generator(gen, tmp_path / "gen")


def test_table_error_model_matches_the_benchmark(nb201_table_path: Path) -> None:
    from modnas_ops.benchmarks import load_table

    table = load_table(nb201_table_path)
    model = TableErrorModel.from_table(table)
    rows = np.array([0, 7, 431, 15624])
    arch = torch.as_tensor(SPACE.one_hot_batch([table.genotypes[i] for i in rows]))
    np.testing.assert_allclose(model(arch).numpy(), table.error()[rows].astype(np.float32))


def test_log_generator_loads_back_through_the_registry(mlflow_uri: str) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from modnas_ops import tracking
    from modnas_ops.registration import log_generator, pip_requirements

    gen = _generator()
    with tracking.start_run("gen-test"):
        uri, version = log_generator(gen)
    model = mlflow.pyfunc.load_model("models:/modnas-generator@candidate")
    inp = _input(gen)
    pd.testing.assert_frame_equal(model.predict(inp), gen.predict(inp))
    short = inp.assign(top_k=3)  # the optional column passes the logged signature
    pd.testing.assert_frame_equal(model.predict(short), gen.predict(short))
    mv = MlflowClient().get_model_version_by_alias("modnas-generator", "candidate")
    assert str(mv.version) == version and mv.tags["devices"] == "dev-a,gpu:0 x"
    reqs = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    assert set(pip_requirements()) <= set(reqs)


def test_aliases_are_checked() -> None:
    assert device_alias("candidate", "gpu:0 x") == "candidate-gpu-0-x"
    assert check_alias("candidate-v2_b") == "candidate-v2_b"
    for bad in ("has space", "a:b", "latest", "v3", ""):
        with pytest.raises(ValueError, match="invalid model alias"):
            check_alias(bad)
    with pytest.raises(ValueError, match="empty alias suffix"):
        device_alias("candidate", ":::")


@pytest.mark.skipif(not HAS_EXPORT, reason="profiling/export.py is not present yet")
def test_register_architectures_logs_onnx_that_matches_torch(mlflow_uri: str) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from modnas_ops import tracking
    from modnas_ops.registration import register_architectures
    from modnas_ops.spaces.nb201.supernet import SubNetwork
    from profiling.export import export_onnx

    kwargs = {"C": 4, "N": 1, "num_classes": 3}
    torch.manual_seed(0)
    supernet = SPACE.build_supernet((1, 8, 8), **kwargs).eval()
    a, b = SPACE.to_string((3, 1, 2, 4, 0, 3)), SPACE.to_string((1, 1, 0, 3, 2, 1))
    rows = pd.DataFrame(
        [
            {"device": "dev-a", "arch": a, "pref_0": 0.2, "pref_1": 0.8, "error": 10.0, "latency_ms": 2.0},
            {"device": "dev-a", "arch": b, "pref_0": 0.9, "pref_1": 0.1, "error": 20.0, "latency_ms": 1.0},
            {"device": "dev-a", "arch": a, "pref_0": 0.3, "pref_1": 0.7, "error": 10.0, "latency_ms": 2.0},
            {"device": "gpu:0 x", "arch": a, "pref_0": 0.5, "pref_1": 0.5, "error": 10.0, "latency_ms": 0.1},
        ]
    )
    exported = []

    def export_fn(model: nn.Module, example: torch.Tensor) -> bytes:
        exported.append(model)
        return export_onnx(model, example)

    with tracking.start_run("register-test"):
        results = register_architectures(
            rows, "nb201", kwargs, export_fn=export_fn, input_shape=(2, 1, 8, 8), supernet=supernet
        )
        run_id = tracking.active_run_id()
    assert [(r["device"], r["arch"]) for r in results] == [("dev-a", a), ("dev-a", b), ("gpu:0 x", a)]
    assert len(exported) == 2  # one export per distinct arch
    uris = [r["model_uri"] for r in results]
    assert uris[0] == uris[2] != uris[1]  # ... and one logged model, shared by its versions on both devices
    assert len(mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list")) == 2
    assert len({r["version"] for r in results}) == 3
    assert [r["alias"] for r in results] == ["candidate-dev-a", "", "candidate-gpu-0-x"]
    mv = MlflowClient().get_model_version_by_alias("modnas-architectures", "candidate-dev-a")
    assert mv.tags["device"] == "dev-a" and mv.tags["arch"] == a
    assert json.loads(mv.tags["preference"]) == [[0.2, 0.8], [0.3, 0.7]]
    assert json.loads(mv.tags["objectives"]) == {"error": 10.0, "latency_ms": 2.0}
    assert mv.tags["nb201_index"] == str(SPACE.benchmark_index(SPACE.from_string(a)))

    x = torch.randn(2, 1, 8, 8)
    onnx_model = mlflow.pyfunc.load_model("models:/modnas-architectures@candidate-gpu-0-x")
    got = onnx_model.predict(x.numpy())
    got = next(iter(got.values())) if isinstance(got, dict) else np.asarray(got)
    with torch.no_grad():
        want = supernet.subnet(SPACE.from_string(a)).eval()(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    # Without a supernet: a fresh network from network_kwargs; a row flagged `chosen` gets the alias.
    exported.clear()
    rows2 = rows.iloc[:2].assign(chosen=[False, True])
    results = register_architectures(rows2, "nb201", kwargs, export_fn=export_fn, input_shape=(2, 1, 8, 8))
    assert [r["alias"] for r in results] == ["", "candidate-dev-a"]
    assert all(isinstance(m, SubNetwork) and m.stem[0].in_channels == 1 for m in exported)
    assert [m.arch for m in exported] == [a, b]
    assert MlflowClient().get_model_version_by_alias("modnas-architectures", "candidate-dev-a").tags["arch"] == b


def test_register_architectures_rejects_bad_rows(mlflow_uri: str) -> None:
    from modnas_ops.registration import register_architectures

    def no_export(model: nn.Module, example: torch.Tensor) -> bytes:
        raise AssertionError("nothing should be exported")

    good = {"device": "d", "arch": SPACE.to_string((1,) * 6), "preference": [0.5, 0.5], "latency_ms": 1.0}
    cases = [
        ([{**good, "arch": "nonsense"}], "row 0: nb201"),
        ([{k: v for k, v in good.items() if k != "device"}], r"row 0: missing \['device'\]"),
        ([{**good, "chosen": True}, {**good, "arch": SPACE.to_string((2,) * 6), "chosen": True}], "several chosen"),
    ]
    for rows, match in cases:
        with pytest.raises(ValueError, match=match):
            register_architectures(rows, "nb201", {}, export_fn=no_export, input_shape=(2, 3, 8, 8))

"""MetaPredictor: shapes, gradients, purity of forward, persistence, data loading, splits, fitting on synthetic
devices with known latency, zero-shot serving; one real-table check when MODNAS_NB201_TABLE is set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from modnas_ops.devices import anchor_columns, anchor_embedding
from modnas_ops.predictor import (
    ENERGY,
    LATENCY,
    DeviceMeasurements,
    FitConfig,
    LatencyService,
    MetaPredictor,
    available_predictor_nets,
    denormalise,
    evaluate_predictor,
    fit_meta_predictor,
    load_pyfunc,
    measurements_from_profile,
    normalise,
    normalised_adjacency,
    predict_latency_ms,
    split_architectures,
)
from modnas_ops.predictor_baselines import kendall_tau
from modnas_ops.spaces import get_search_space

SPACE = get_search_space("nb201")
E, K = SPACE.shape


def _genotypes(n: int, seed: int) -> np.ndarray:
    """Anchors first, then ``n`` distinct random architectures."""
    rng = np.random.default_rng(seed)
    out = list(dict.fromkeys(SPACE.anchors()))
    seen = set(out)
    while len(out) < n + len(SPACE.anchors()):
        g = SPACE.sample(rng)
        if g not in seen:
            seen.add(g)
            out.append(g)
    return np.asarray(out, dtype=np.int64)


def _synthetic_latency(genotypes: np.ndarray, op_cost: np.ndarray, edge_scale: np.ndarray) -> np.ndarray:
    """Known function of the ops: sum over edges of op_cost[op] * edge_scale[edge] + 1 ms."""
    return 1.0 + (op_cost[genotypes] * edge_scale[None, :]).sum(1)


def _synthetic_devices(
    num_train: int, num_test: int, num_archs: int, seed: int = 0, energy: bool = False
) -> list[DeviceMeasurements]:
    """Devices from one family: op costs interpolate between a 'conv-heavy' and a 'memory-bound' profile."""
    rng = np.random.default_rng(seed)
    g = _genotypes(num_archs, seed)
    conv_heavy = np.array([0.0, 0.2, 1.5, 4.0, 0.8])  # none, skip, conv1x1, conv3x3, pool
    memory_bound = np.array([0.0, 1.0, 1.2, 1.8, 1.6])
    edge_scale = np.array([1.0, 1.0, 0.8, 1.0, 0.8, 0.6])
    anchors = SPACE.anchors()
    rows = [int(np.flatnonzero((g == np.asarray(a)).all(1))[0]) for a in anchors]
    out = []
    for i in range(num_train + num_test):
        t = rng.uniform(0, 1)
        scale = rng.uniform(0.5, 5.0)
        lat = scale * _synthetic_latency(g, t * conv_heavy + (1 - t) * memory_bound, edge_scale)
        values = {LATENCY: lat}
        anchor_values = {LATENCY: lat[rows]}
        if energy:
            values[ENERGY] = 3.0 * lat + 0.5 * (g == 3).sum(1)
            anchor_values[ENERGY] = values[ENERGY][rows]
        split = "train" if i < num_train else "test"
        out.append(DeviceMeasurements(f"dev{i}", g, values, anchor_values, split))
    return out


TINY = FitConfig(hidden=32, layers=2, epochs=25, batch_size=128, lr=1e-2, patience=25, seed=0)


@pytest.fixture(scope="module")
def fitted():
    devices = _synthetic_devices(num_train=6, num_test=2, num_archs=300)
    split = split_architectures(SPACE, devices, (0.6, 0.2, 0.2), seed=0)
    return devices, split, fit_meta_predictor(devices, TINY, split=split, progress=False)


# ---- model ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", available_predictor_nets())
def test_forward_shape_and_gradient_to_soft_and_straight_through_encodings(net: str) -> None:
    torch.manual_seed(0)
    model = MetaPredictor("nb201", (LATENCY, ENERGY), net=net, hidden=16, layers=2)
    logits = torch.randn(4, E, K, requires_grad=True)  # (B, E, K)
    emb = torch.rand(4, 10)
    soft = logits.softmax(-1)
    out = model(soft, emb)
    assert out.shape == (4, 2)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    soft = logits.softmax(-1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), K).float()
    st = hard - soft.detach() + soft  # straight-through
    (grad_st,) = torch.autograd.grad(model(st, emb).sum(), logits)
    assert grad_st.abs().sum() > 0
    assert torch.allclose(model(st, emb), model(hard, emb))


@pytest.mark.parametrize("net", available_predictor_nets())
def test_forward_does_not_mutate_state(net: str) -> None:
    model = MetaPredictor("nb201", net=net, hidden=16, layers=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.rand(3, E, K), torch.rand(3, 10))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_forward_rejects_wrong_shapes() -> None:
    model = MetaPredictor("nb201", hidden=8, layers=1)
    with pytest.raises(ValueError, match="arch must be"):
        model(torch.rand(2, E + 1, K), torch.rand(2, 10))
    with pytest.raises(ValueError, match="embedding must be"):
        model(torch.rand(2, E, K), torch.rand(2, 9))


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="unknown predictor net"):
        MetaPredictor("nb201", net="transformer")
    with pytest.raises(ValueError, match="start with"):
        MetaPredictor("nb201", metrics=(ENERGY,))
    with pytest.raises(ValueError, match="unknown metric"):
        MetaPredictor("nb201", metrics=(LATENCY, "power_w"))
    with pytest.raises(ValueError, match="unknown search space"):
        MetaPredictor("nope")


def test_nb201_decision_graph_connects_consecutive_edges() -> None:
    a = normalised_adjacency(SPACE)  # node 0 = input, 1..6 = edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2, 7 = output
    assert a.shape == (E + 2, E + 2)
    np.testing.assert_allclose(a, a.T)
    nz = a > 0
    assert nz[1, 3] and nz[1, 5]  # 1<-0 feeds 2<-1 and 3<-1
    assert nz[3, 6] and nz[2, 6]  # node 2's inputs feed 3<-2
    assert not nz[1, 2] and not nz[4, 5]  # parallel edges into different nodes are not adjacent
    assert nz[0, 1] and nz[0, 2] and nz[0, 4] and not nz[0, 3]  # input node -> edges leaving node 0
    assert nz[7, 4] and nz[7, 5] and nz[7, 6] and not nz[7, 1]


def test_denormalisation_uses_the_anchors_exactly() -> None:
    model = MetaPredictor("nb201", hidden=8, layers=1)
    model.target_std.fill_(0.0)  # forward then returns target_mean whatever the network says
    model.target_mean.fill_(0.25)
    anchors = np.array([2.0, 3.0, 10.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 4.5])
    archs = [SPACE.to_string(g) for g in SPACE.anchors()[:3]]
    np.testing.assert_allclose(model.predict_ms(archs, anchors), [2.0 + 0.25 * 8.0] * 3)
    np.testing.assert_allclose(predict_latency_ms(model, anchors, archs), [4.0] * 3)
    v = np.array([1.0, 2.0, 12.0])
    np.testing.assert_allclose(denormalise(normalise(v, anchors), anchors), v)
    np.testing.assert_allclose(normalise(anchors, anchors), anchor_embedding(anchors), rtol=1e-6)


def test_denormalise_keeps_latency_positive():
    anchors = np.array([1.0, 2.0, 11.0])  # span 10x the fastest anchor: y < -0.1 would map below zero
    np.testing.assert_allclose(denormalise(np.array([-0.05, -0.5, -3.0]), anchors), [0.5, 0.01, 0.01])
    rows = np.stack([anchors, 2 * anchors])  # (N, anchors): one device per value, as the generator passes them
    np.testing.assert_allclose(denormalise(np.array([0.5, -0.5]), rows), [6.0, 0.02])



def test_predict_rejects_bad_anchors_and_archs() -> None:
    model = MetaPredictor("nb201", hidden=8, layers=1)
    arch = SPACE.to_string(SPACE.anchors()[0])
    with pytest.raises(ValueError, match="expected 10 values"):
        model.predict_ms([arch], np.ones(9))
    with pytest.raises(ValueError, match="positive"):
        model.predict_ms([arch], np.r_[np.arange(1.0, 10.0), 0.0])
    with pytest.raises(ValueError, match="unknown op"):
        model.predict_ms(["|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"], np.arange(1.0, 11.0))
    with pytest.raises(ValueError, match="no architectures"):
        predict_latency_ms(model, np.arange(1.0, 11.0), [])


def test_save_load_roundtrip(tmp_path, fitted) -> None:
    _, _, result = fitted
    model = result.model
    path = model.save(tmp_path / "sub" / "p.pt")
    loaded = MetaPredictor.load(path)
    assert loaded.metrics == model.metrics and loaded.hparams == model.hparams
    assert not loaded.training
    x, emb = torch.rand(5, E, K), torch.rand(5, 10)
    assert torch.equal(loaded(x, emb), model(x, emb))
    assert torch.equal(loaded.target_mean, model.target_mean) and torch.equal(loaded.target_std, model.target_std)
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_load_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        MetaPredictor.load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"format": 999}, bad)
    with pytest.raises(ValueError, match="not a MetaPredictor file"):
        MetaPredictor.load(bad)
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "obj": pd.Timestamp("2020-01-01")}, evil)  # not loadable with weights_only
    with pytest.raises(ValueError, match="not a MetaPredictor file"):
        MetaPredictor.load(evil)


# ---- data and splits --------------------------------------------------------------------------------


def test_split_is_disjoint_complete_deterministic_and_keeps_anchors_in_train() -> None:
    devices = _synthetic_devices(2, 0, 200)
    s = split_architectures(SPACE, devices, (0.5, 0.25, 0.25), seed=3)
    keys = set(SPACE.index_batch(devices[0].genotypes).tolist())
    assert s.train | s.valid | s.test == keys
    assert not (s.train & s.valid) and not (s.train & s.test) and not (s.valid & s.test)
    assert {SPACE.index(g) for g in SPACE.anchors()} <= s.train
    assert len(s.test) == 50 and len(s.valid) == 50
    assert s == split_architectures(SPACE, devices, (0.5, 0.25, 0.25), seed=3)
    assert s != split_architectures(SPACE, devices, (0.5, 0.25, 0.25), seed=4)
    with pytest.raises(ValueError, match="summing to 1"):
        split_architectures(SPACE, devices, (0.5, 0.5, 0.5))


def _profile_frame(devices: list[DeviceMeasurements]) -> pd.DataFrame:
    anchors = {SPACE.to_string(a) for a in SPACE.anchors()}
    rows = []
    for d in devices:
        for i, g in enumerate(d.genotypes):
            arch = SPACE.to_string(g)
            rows.append(
                {
                    "space": "nb201",
                    "arch": arch,
                    "device": d.name,
                    "latency_ms": d.values[LATENCY][i],
                    "energy_mj": d.values[ENERGY][i] if ENERGY in d.values else None,
                    "role": "anchor" if arch in anchors else "sample",
                    "host": "h1",
                }
            )
    return pd.DataFrame(rows)


def test_measurements_from_profile_roundtrip_with_energy() -> None:
    devices = _synthetic_devices(2, 0, 30, energy=True)
    parsed = measurements_from_profile(_profile_frame(devices), test_devices=["dev1"])
    assert [d.name for d in parsed] == ["dev0", "dev1"] and [d.split for d in parsed] == ["train", "test"]
    for d, p in zip(devices, parsed, strict=True):
        order = np.argsort(SPACE.index_batch(d.genotypes))
        got = np.argsort(SPACE.index_batch(p.genotypes))
        np.testing.assert_allclose(p.values[LATENCY][got], d.values[LATENCY][order])
        np.testing.assert_allclose(p.anchor_values[ENERGY], d.anchor_values[ENERGY])
        np.testing.assert_allclose(p.embedding, anchor_embedding(d.anchor_values[LATENCY]))


def test_measurements_from_profile_leaves_out_constant_output_cells() -> None:
    df = _profile_frame(_synthetic_devices(1, 0, 20))
    dead = "|avg_pool_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|none~1|none~2|"  # output ignores the input
    df = pd.concat([df, df.iloc[[0]].assign(arch=dead, latency_ms=0.007, role="sample")], ignore_index=True)
    (kept,) = measurements_from_profile(df)
    (everything,) = measurements_from_profile(df, drop_constant_output=False)
    assert len(everything.genotypes) == len(kept.genotypes) + 1
    assert SPACE.from_string(dead) not in {tuple(g) for g in kept.genotypes}
    assert everything.values[LATENCY].min() == pytest.approx(0.007)

def test_measurements_from_profile_errors_and_host_suffix() -> None:
    df = _profile_frame(_synthetic_devices(1, 0, 20))
    with pytest.raises(ValueError, match="lacks columns: role"):
        measurements_from_profile(df.drop(columns=["role"]))
    no_anchor = df[df["arch"] != SPACE.to_string(SPACE.anchors()[4])]
    with pytest.raises(ValueError, match="1 of the 10 anchor archs are missing"):
        measurements_from_profile(no_anchor)
    with pytest.raises(ValueError, match="test device 'zz'"):
        measurements_from_profile(df, test_devices=["zz"])
    bad = df.copy()
    bad.loc[3, "latency_ms"] = -1.0
    with pytest.raises(ValueError, match="finite and > 0"):
        measurements_from_profile(bad)
    two_hosts = pd.concat([df, df.assign(host="h2")])
    assert [d.name for d in measurements_from_profile(two_hosts)] == ["dev0@h1", "dev0@h2"]


# ---- fitting ------------------------------------------------------------------------------------------


def test_fit_sets_target_statistics_once_from_training_targets(fitted) -> None:
    devices, split, result = fitted
    train = [d for d in devices if d.split == "train"]
    y = np.concatenate([d.normalised(LATENCY)[split.rows(SPACE, d.genotypes, "train")] for d in train])
    np.testing.assert_allclose(result.model.target_mean.item(), y.mean(), rtol=1e-4)
    np.testing.assert_allclose(result.model.target_std.item(), y.std(ddof=1), rtol=1e-4)
    assert result.train_devices == tuple(d.name for d in train)
    assert 0 <= result.best_epoch < len(result.history)


def test_fit_ranks_unseen_archs_and_unseen_devices_better_than_chance(fitted) -> None:
    devices, split, result = fitted
    rows = {r["device"]: r for r in evaluate_predictor(result.model, devices, split, "test")}
    assert set(rows) == {d.name for d in devices}
    for d in devices:
        # a constant predictor has no rank information (tau 0 / undefined); a linear-in-ops truth is learnable
        assert rows[d.name]["kendall_tau"] > 0.75, (d.name, rows[d.name])
    assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]


def test_fit_with_energy_predicts_both_metrics() -> None:
    devices = _synthetic_devices(3, 0, 120, energy=True)
    cfg = FitConfig(hidden=16, layers=1, epochs=5, batch_size=128, lr=1e-2, seed=1)
    result = fit_meta_predictor(devices, cfg, progress=False)
    assert result.model.metrics == (LATENCY, ENERGY)
    d = devices[0]
    archs = [SPACE.to_string(g) for g in d.genotypes[:4]]
    pred = result.model.predict(archs, d.anchor_values[LATENCY], {ENERGY: d.anchor_values[ENERGY]})
    assert set(pred) == {LATENCY, ENERGY} and all(v.shape == (4,) for v in pred.values())


def test_fit_is_reproducible_for_a_seed() -> None:
    devices = _synthetic_devices(2, 0, 60)
    cfg = FitConfig(hidden=8, layers=1, epochs=2, batch_size=64, seed=5)
    a = fit_meta_predictor(devices, cfg, progress=False).model
    b = fit_meta_predictor(devices, cfg, progress=False).model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_fit_errors() -> None:
    devices = _synthetic_devices(0, 2, 40)
    with pytest.raises(ValueError, match="no training devices"):
        fit_meta_predictor(devices, TINY, progress=False)
    with pytest.raises(ValueError, match="net 'x' unknown"):
        FitConfig(net="x")
    with pytest.raises(ValueError, match="mixup"):
        FitConfig(mixup=1.5)


# ---- serving ------------------------------------------------------------------------------------------


def test_latency_service_matches_predict_ms_and_validates(tmp_path, fitted) -> None:
    devices, _, result = fitted
    path = result.model.save(tmp_path / "p.pt")
    service = load_pyfunc({"predictor": str(path)})
    d0, d1 = devices[0], devices[-1]
    archs = [SPACE.to_string(g) for g in d0.genotypes[10:14]]
    df = pd.concat(
        [
            service.example_input(d0.anchor_values[LATENCY], archs),
            service.example_input(d1.anchor_values[LATENCY], archs),
        ],
        ignore_index=True,
    )
    out = service.predict(df)
    assert list(out.columns) == [LATENCY] and len(out) == 8
    np.testing.assert_allclose(out[LATENCY][:4], result.model.predict_ms(archs, d0.anchor_values[LATENCY]), rtol=1e-6)
    np.testing.assert_allclose(out[LATENCY][4:], result.model.predict_ms(archs, d1.anchor_values[LATENCY]), rtol=1e-6)
    with pytest.raises(ValueError, match="lacks columns anchor_latency_ms_9"):
        service.predict(df.drop(columns=[anchor_columns("latency_ms", 10)[9]]))
    bad = df.copy()
    bad.loc[1, anchor_columns("latency_ms", 10)[0]] = 0.0
    with pytest.raises(ValueError, match="input row 1"):
        service.predict(bad)
    with pytest.raises(ValueError, match="artifacts lack"):
        load_pyfunc({})
    assert isinstance(service, LatencyService)


# ---- real table -----------------------------------------------------------------------------------------


def test_real_table_quick_fit_ranks_train_and_zero_shot_devices(nb201_table_path) -> None:
    from modnas_ops.benchmarks import load_table
    from modnas_ops.predictor import measurements_from_table

    table = load_table(nb201_table_path)
    devices = measurements_from_table(table)
    assert [d.split for d in devices].count("train") == 13 and [d.split for d in devices].count("test") == 6
    split = split_architectures(table.space, devices, seed=0)
    cfg = FitConfig(epochs=6, max_train_archs=400, patience=6, seed=0)
    result = fit_meta_predictor(devices, cfg, split=split, space=table.space, progress=False)
    assert set(result.num_train_archs.values()) == {400}
    few = [d.subset(d_rows[:600]) for d in devices if len(d_rows := split.rows(table.space, d.genotypes, "test"))]
    rows = {r["device"]: r for r in evaluate_predictor(result.model, few)}
    train_tau = np.mean([rows[d]["kendall_tau"] for d in table.train_devices])
    test_tau = np.mean([rows[d]["kendall_tau"] for d in table.test_devices])
    assert train_tau > 0.7 and test_tau > 0.65, (train_tau, test_tau)
    # zero-shot: the anchors of a test device alone de-normalise to its scale (MAPE well below 100 %)
    assert rows["gold_6226"]["mape"] < 40.0
    fpga = next(d for d in few if d.name == "fpga")
    archs = [table.space.to_string(g) for g in fpga.genotypes[:50]]
    pred = predict_latency_ms(result.model, table.anchor_latency_ms("fpga"), archs)
    assert kendall_tau(pred, fpga.values[LATENCY][:50]) > 0.5

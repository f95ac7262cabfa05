"""The GPT-2 elastic space: the HW-GPT-Bench grid and strings, its 80-d encoding, the table's rows, the
super-transformer's slicing (causal, weight-shared) and ONNX export of token ids with dynamic axes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modnas_ops.data import LANGUAGE_MODEL, load_pydoc_bytes
from modnas_ops.spaces import get_search_space
from modnas_ops.spaces.gpt2.space import GPT2_ANCHORS, HEADS0, LAYERS, MLP0

SPACE = get_search_space("gpt2")
GPT_TABLE = os.environ.get("MODNAS_GPT2_TABLE", "")


def test_grid_and_inactive_layers() -> None:
    assert SPACE.shape == (27, 3)
    assert SPACE.num_choices == (3, 3, *([3] * 24), 2)
    g = SPACE.from_string("embed=384|layers=10|mlp=2-3-4-2-3-4-2-3-4-2|heads=4-8-12-4-8-12-4-8-12-4|bias=True")
    assert SPACE.to_string(g) == "embed=384|layers=10|mlp=2-3-4-2-3-4-2-3-4-2|heads=4-8-12-4-8-12-4-8-12-4|bias=True"
    other = list(g)
    other[MLP0 + 11] = 2  # layer slot 11 does not run with 10 layers
    other[HEADS0 + 10] = 1
    assert SPACE.canonical(other) == SPACE.canonical(g) and SPACE.to_string(other) == SPACE.to_string(g)
    # 12 entries with layers beyond n_layer ignored (HW-GPT-Bench's sample_config), 9 entries refused
    assert SPACE.from_config(384, 10, [2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 4, 4], "4-8-12-4-8-12-4-8-12-4", "True") == g
    with pytest.raises(ValueError, match="mlp_ratio has 9 entries"):
        SPACE.from_config(384, 10, "2-2-2-2-2-2-2-2-2", "4-4-4-4-4-4-4-4-4-4", False)
    with pytest.raises(ValueError, match="embed_dim '500' not in"):
        SPACE.from_config("500", 10, "2-2-2-2-2-2-2-2-2-2", "4-4-4-4-4-4-4-4-4-4", False)
    with pytest.raises(ValueError, match="bias 'maybe'"):
        SPACE.from_config(192, 10, "2-2-2-2-2-2-2-2-2-2", "4-4-4-4-4-4-4-4-4-4", "maybe")
    # distinct architectures: 3 embeds x 2 biases x (9^10 + 9^11 + 9^12) layer configurations
    assert SPACE.num_distinct_architectures == 6 * (9**10 + 9**11 + 9**12)


def test_encoding_zeroes_layers_that_do_not_run() -> None:
    g = SPACE.anchors()[0]  # 10 layers
    f = SPACE.features(torch.from_numpy(SPACE.one_hot_batch([g])))[0]  # (80,)
    assert f.shape == (80,) and float(f.sum()) == 1 + 1 + 10 + 10 + 1
    mlp = f[6 : 6 + 36].reshape(12, 3)
    assert mlp[:10].sum() == 10 and mlp[10:].sum() == 0
    # soft weights: slot 10 runs with probability P(layers >= 11)
    w = torch.from_numpy(SPACE.one_hot(g))
    w[LAYERS] = torch.tensor([0.5, 0.3, 0.2])
    soft = SPACE.features(w[None])[0]
    assert torch.isclose(soft[6 + 30 : 6 + 33].sum(), torch.tensor(0.5))  # slot 10
    assert torch.isclose(soft[6 + 33 : 6 + 36].sum(), torch.tensor(0.2))  # slot 11


@pytest.mark.skipif(
    not (GPT_TABLE and Path(GPT_TABLE).is_file()), reason="MODNAS_GPT2_TABLE does not name the HW-GPT-Bench table"
)
def test_table_rows_parse_and_anchors_are_rows_0_to_9() -> None:
    from modnas_ops.latency_table import load_latency_table

    table = load_latency_table("gpt2")
    assert len(table) == 10_010 and table.anchor_indices == tuple(range(10))
    assert set(table.train_devices) == {"P100", "a100", "a6000", "rtx2080", "v100", "cpu_amd_7452",
                                        "cpu_amd_7502", "cpu_xeon_gold"}  # fmt: skip
    assert table.test_devices == ("a40", "cpu_amd_7513")
    for i, a in enumerate(GPT2_ANCHORS):
        assert tuple(table.genotypes[i]) == SPACE.from_config(*a)
    assert len({tuple(g) for g in table.genotypes}) == 10_010  # the README: no duplicates
    # row 9 is the largest (GPT-2-small shape), the slowest anchor on every device
    for dev in table.devices:
        lat = table.latency(dev)
        assert lat[9] == lat[:10].max() and lat[0] == lat[:10].min()


def _net(C: int = 4, context: int = 8, vocab: int = 11):
    torch.manual_seed(0)
    return SPACE.build_supernet((context,), vocab, C=C)


def test_supernet_is_causal_and_shares_weights() -> None:
    net = _net().eval()
    rng = np.random.default_rng(0)
    x = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        g = SPACE.canonical(SPACE.sample(rng))
        w = torch.from_numpy(SPACE.one_hot(g))
        with torch.no_grad():
            out = net(x, w)  # (3, 8, 11)
            y = x.clone()
            y[:, 5:] = (y[:, 5:] + 1) % 11  # change the future
            torch.testing.assert_close(net(y, w)[:, :5], out[:, :5])  # the past does not see it
            assert not torch.allclose(net(y, w)[:, 5:], out[:, 5:])
    # the 192-wide (C = 4: 12-wide) embedding is a prefix slice of the same weight
    small = SPACE.anchors()[0]
    sub = net.subnet(small)
    assert sub.wte.weight.shape == (11, 192 * 4 // 64)
    torch.testing.assert_close(sub.wte.weight, net.wte.weight[:, :12])
    assert len(sub.blocks) == 10 and sub.blocks[0].qkv.weight.shape == (3 * 4 * 4, 12)
    assert sub.blocks[0].qkv.bias is None  # anchor 0 has no biases


def test_bad_network_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="N = 1"):
        SPACE.build_supernet((8,), 11, C=4, N=2)
    with pytest.raises(ValueError, match="input_shape must be"):
        SPACE.build_supernet((1, 8, 8), 11, C=4)


def test_onnx_export_of_token_ids_has_dynamic_batch_and_sequence() -> None:
    import onnx

    from profiling.export import export_onnx, ort_output

    net = _net().subnet(SPACE.anchors()[4]).eval()
    x = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
    payload = export_onnx(net, x, dynamic=True)
    dims = onnx.load_model_from_string(payload).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["dim0", "dim1"]  # symbolic, not specialised to 2 x 5
    for shape in ((2, 5), (3, 8), (1, 1)):  # other batch and sequence sizes run and match torch
        xs = torch.randint(0, 11, shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            want = net(xs).numpy()
        np.testing.assert_allclose(ort_output(payload, xs), want, rtol=1e-4, atol=1e-4)


def test_pydoc_bytes_task() -> None:
    data = load_pydoc_bytes(context=32)
    assert data.task is LANGUAGE_MODEL and data.num_classes == 256 and data.input_shape == (32,)
    x, y = data.train.tensors
    assert x.dtype == torch.int64 and x.shape[1] == 32
    torch.testing.assert_close(x[:, 1:], y[:, :-1])  # the target is the next byte
    n = sum(len(s) for s in (data.train, data.valid, data.test))
    assert 0.09 < len(data.valid) / n < 0.11 and 0.09 < len(data.test) / n < 0.11
    # the error is the mean cross-entropy per token: uniform logits give log(256)
    logits = torch.zeros(4, 32, 256)
    assert abs(data.task.error_sum(logits, y[:4]) / 4 - np.log(256)) < 1e-5


def test_share_metric_lends_a_devices_measurements_to_devices_without_them() -> None:
    from modnas_ops.errors import UserError
    from modnas_ops.predictor import LATENCY, MEMORY, DeviceMeasurements, share_metric

    rng = np.random.default_rng(0)
    anchors = SPACE.anchors()
    extra = [SPACE.canonical(SPACE.sample(rng)) for _ in range(3)]
    cpu_g = np.asarray(anchors + extra[:2], dtype=np.int64)
    gpu_g = np.asarray(anchors + extra[1:], dtype=np.int64)  # shares extra[1] with the CPU
    cpu = DeviceMeasurements("cpu", cpu_g, {LATENCY: np.arange(1.0, 13.0), MEMORY: np.arange(10.0, 22.0)},
                             {LATENCY: np.arange(1.0, 11.0), MEMORY: np.arange(10.0, 20.0)})  # fmt: skip
    gpu = DeviceMeasurements("gpu", gpu_g, {LATENCY: np.arange(2.0, 14.0)}, {LATENCY: np.arange(2.0, 12.0)})
    out = share_metric([cpu, gpu], MEMORY, "cpu")
    assert out[0] is cpu
    g = out[1]
    np.testing.assert_array_equal(g.anchor_values[MEMORY], cpu.anchor_values[MEMORY])
    assert len(g.genotypes) == 13  # + extra[0], measured by the CPU only
    assert tuple(g.genotypes[-1]) == extra[0] and np.isnan(g.values[LATENCY][-1])
    assert g.values[MEMORY][-1] == 20.0 and g.values[MEMORY][10] == 21.0  # extra[0], extra[1] of the CPU
    assert np.isnan(g.values[MEMORY][11])  # extra[2]: nobody measured its memory
    with pytest.raises(UserError, match="source 'tpu' is not a device"):
        share_metric([cpu, gpu], MEMORY, "tpu")
    with pytest.raises(UserError, match="device 'gpu' has no memory_mb"):
        share_metric([cpu, gpu], MEMORY, "gpu")


@pytest.mark.slow
@pytest.mark.skipif(
    not (GPT_TABLE and Path(GPT_TABLE).is_file()), reason="MODNAS_GPT2_TABLE does not name the HW-GPT-Bench table"
)
def test_one_search_with_three_objectives_over_cpu_profiles_and_the_tables_devices() -> None:
    from modnas_ops.config import load_config
    from modnas_ops.search import SearchConfig, run_search

    rng = np.random.default_rng(1)
    archs = SPACE.anchors() + [SPACE.canonical(SPACE.sample(rng)) for _ in range(10)]
    rows = []
    for dev, scale in (("cpu-a", 1.0), ("cpu-b", 2.5)):  # latency and memory grow with the widths
        for i, g in enumerate(archs):
            c = SPACE.config(g)
            size = c["embed_dim"] * sum(r + h / 4 for r, h in zip(c["mlp_ratio"], c["n_head"], strict=True))
            rows.append({"space": "gpt2", "arch": SPACE.to_string(g), "device": dev,
                         "latency_ms": scale * size / 1e3, "memory_mb": 10 + size / 500 + (dev == "cpu-b"),
                         "role": "anchor" if i < 10 else "sample"})  # fmt: skip
    items = {
        "mode": "supernet", "space": "gpt2", "epochs": 1, "steps_per_epoch": 1, "num_rays": 6, "archive": "true",
        "architect.finite_differences": "false", "supernet.dataset": "pydoc-bytes", "supernet.C": 2,
        "supernet.N": 1, "supernet.batch_size": 4, "supernet.pretrain_steps": 4, "supernet.freeze_weights": "true",
        "supernet.warmup_epochs": 0, "supernet.table_devices": "true",
        "supernet.shared_metrics": '{"memory_mb": "cpu-a"}',
        "supernet.predictor_epochs": 3, "supernet.predictor_batch_size": 256, "supernet.predictor_max_archs": 100,
        "supernet.dense_gradients": "false", "supernet.reference_archs": 4, "supernet.eval_batches": 1,
    }  # fmt: skip
    cfg = load_config(SearchConfig, None, [f"{k}={v}" for k, v in items.items()])
    res = run_search(cfg, progress=False, profile_rows=rows)
    assert res.objectives == ("error", "latency_ms", "memory_mb")
    split = {d.name: d.split for d in res.devices}
    assert len(split) == 2 + 10 and split["a40"] == split["cpu_amd_7513"] == "test"
    assert {"pref_0", "pref_1", "pref_2", "pred_memory_mb", "true_memory_mb"} <= set(res.fronts.columns)
    assert np.allclose(res.fronts[["pref_0", "pref_1", "pref_2"]].sum(axis=1), 1.0)
    for d in split:
        assert np.isfinite(res.metrics[f"hv/{d}"])
        assert set(res.devices[[x.name for x in res.devices].index(d)].anchors) == {"latency_ms", "memory_mb"}
    a100 = res.fronts[res.fronts["device"] == "a100"]
    assert (a100["true_memory_mb"] > 0).all() and (a100["true_error"] > 0).all()

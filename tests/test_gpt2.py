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

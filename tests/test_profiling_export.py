"""ONNX export: in-memory bytes, fixed opset and batch, checker, ORT-vs-torch agreement, one-line errors."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from modnas_ops.spaces import get_search_space
from modnas_ops.spaces.nb201.supernet import create_network
from profiling.export import (
    EXPORTERS,
    OPSET,
    OnnxExportError,
    assert_matches_torch,
    check_onnx,
    export_onnx,
    get_exporter,
    onnx_opset,
)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
    )


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_export_is_checked_bytes_with_fixed_opset_and_batch():
    model = _tiny()
    payload = export_onnx(model, torch.randn(5, 1, 4, 4))
    assert isinstance(payload, bytes)
    proto = check_onnx(payload)
    assert onnx_opset(payload) == OPSET
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [5, 1, 4, 4]
    assert model.training  # mode restored


def test_ort_matches_torch_on_digits_sized_nb201_network():
    space = get_search_space("nb201")
    genotype = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    )
    model = create_network(space, genotype, C=8, N=1, in_channels=1, num_classes=10).eval()
    x = torch.randn(3, 1, 8, 8)
    err = assert_matches_torch(model, x, export_onnx(model, x))
    assert err < 1e-4


def test_assert_matches_torch_detects_a_different_model():
    model, other = _tiny(), _tiny()
    with torch.no_grad():
        other[4].bias.add_(1.0)
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(AssertionError, match="differs from torch"):
        assert_matches_torch(model, x, export_onnx(other, x))


def test_invalid_payload_is_one_line_error_naming_it():
    with pytest.raises(OnnxExportError, match="ONNX model broken.onnx is invalid") as e:
        check_onnx(b"not a protobuf", name="broken.onnx")
    assert "\n" not in str(e.value)


def test_checker_rejects_a_structurally_bad_model():
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [], [])  # input x is not declared
    bad = onnx.helper.make_model(graph).SerializeToString()
    with pytest.raises(OnnxExportError, match="ONNX model m is invalid"):
        check_onnx(bad, name="m")


def test_unexportable_module_is_one_line_error():
    class Bad(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shape mismatch\nlong traceback-like detail")

    with pytest.raises(
        OnnxExportError, match=r"cannot export bad to ONNX \(torchscript\): shape mismatch$"
    ) as e:
        export_onnx(Bad(), torch.randn(1, 2), name="bad")
    assert "\n" not in str(e.value)


def test_unknown_exporter():
    assert set(EXPORTERS) == {"torchscript", "dynamo"}
    with pytest.raises(ValueError, match="unknown ONNX exporter 'tflite'; available: dynamo, torchscript"):
        get_exporter("tflite")


@pytest.mark.slow
def test_dynamo_exporter_matches_torch():
    model = _tiny().eval()
    x = torch.randn(2, 1, 4, 4)
    payload = export_onnx(model, x, exporter="dynamo")
    assert onnx_opset(payload) == OPSET
    assert assert_matches_torch(model, x, payload) < 1e-4

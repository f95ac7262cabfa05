"""torch ``nn.Module`` + example input -> checked ONNX bytes in memory (fixed opset, fixed batch).

Exporter choice, measured with ``python -m projects.bench_profiling --exporters`` on the digits-sized NB201
network (C=8, N=1, 1x8x8 input, 10 classes; 8 sampled genotypes), torch 2.13.0+cpu, onnx 1.23.2,
onnxscript 0.7.2, onnxruntime 1.32.0, torch threads = 1, on this 2-core VM shared with other jobs (load 4-7)::

    exporter                     export s, median (first call)     size (batch 1)   ORT latency b1, median
    torchscript (dynamo=False)   0.31 (0.34) b1, 0.26 (0.19) b32   135 kB           0.0393 ms
    dynamo (torch.export)        4.72 (9.15) b1, 4.85 (3.60) b32   178 kB           0.0397 ms

Both pass onnx.checker and match torch to 1.2e-7. We use ``torchscript``: ~15x faster export, the cost that
decides subnets profiled per minute, and its graphs run as fast (same latency within noise). It is
deprecated since torch 2.9 (its DeprecationWarning is silenced here); ``dynamo`` stays registered and
selectable (``exporter="dynamo"``) for models the tracer cannot handle.

The batch dimension is fixed: each device config exports at its own batch size (the dynamo exporter silently
specialises a batch of 1 anyway). Both exporters constant-fold a network whose output does not depend on
its input (an NB201 cell with only ``none`` into its output node): such a graph has no inputs and times the
constant output, which is what onnxruntime would run for it.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 18  # fixed, recorded in every profiling row
INPUT_NAME = "input"
OUTPUT_NAME = "output"
DEFAULT_EXPORTER = "torchscript"

Exporter = Callable[[nn.Module, torch.Tensor, int, bool], bytes]


class OnnxExportError(ValueError):
    """A module that cannot be exported, or an exported graph that fails onnx.checker."""


def _axis_names(example: torch.Tensor) -> dict[int, str]:
    return {i: f"dim{i}" for i in range(example.dim())}


def _export_torchscript(model: nn.Module, example: torch.Tensor, opset: int, dynamic: bool) -> bytes:
    buf = io.BytesIO()
    axes = {INPUT_NAME: _axis_names(example), OUTPUT_NAME: _axis_names(example)} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
        )
    return buf.getvalue()


def _export_dynamo(model: nn.Module, example: torch.Tensor, opset: int, dynamic: bool) -> bytes:
    shapes = ({i: torch.export.Dim.DYNAMIC for i in range(example.dim())},) if dynamic else None
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        dynamic_shapes=shapes,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        external_data=False,
        verbose=False,
    )
    return program.model_proto.SerializeToString()


EXPORTERS: dict[str, Exporter] = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


def get_exporter(name: str) -> Exporter:
    try:
        return EXPORTERS[name]
    except KeyError:
        raise ValueError(
            f"unknown ONNX exporter {name!r}; available: {', '.join(sorted(EXPORTERS))}"
        ) from None


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    exporter: str = DEFAULT_EXPORTER,
    opset: int = OPSET,
    name: str = "model",
    dynamic: bool = False,
) -> bytes:
    """Serialized ONNX of ``model`` in eval mode at the example input's (fixed) shape, onnx.checker-valid;
    ``dynamic``: every input axis (and the same leading axes of the output) symbolic instead, ``dim0``,
    ``dim1``, ... (e.g. batch and sequence of token ids; export with example sizes >= 2, or torch.export
    specialises an axis of size 0 or 1).

    The module's train/eval mode is restored afterwards.
    """
    export = get_exporter(exporter)
    was_training = model.training
    model.eval()
    try:
        payload = export(model, example_input, opset, dynamic)
    except Exception as e:  # the exporters raise many unrelated types
        raise OnnxExportError(f"cannot export {name} to ONNX ({exporter}): {_first_line(e)}") from e
    finally:
        model.train(was_training)
    check_onnx(payload, name=name)
    return payload


def check_onnx(payload: bytes, name: str = "model") -> onnx.ModelProto:
    """Parse and run onnx.checker on ``payload``; ``OnnxExportError`` naming ``name`` if it is invalid."""
    try:
        proto = onnx.load_model_from_string(payload)
        onnx.checker.check_model(proto)
    except Exception as e:  # protobuf DecodeError, onnx.checker.ValidationError, ...
        raise OnnxExportError(f"ONNX model {name} is invalid: {_first_line(e)}") from e
    return proto


def onnx_opset(payload: bytes) -> int:
    """The default-domain opset a serialized model was exported with."""
    proto = onnx.load_model_from_string(payload)
    return next(int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def ort_output(
    payload: bytes, example_input: torch.Tensor, providers: tuple[str, ...] = ("CPUExecutionProvider",)
) -> np.ndarray:
    """Output of the serialized model on ``example_input`` under onnxruntime."""
    session = ort.InferenceSession(payload, providers=list(providers))
    return session.run(None, {session.get_inputs()[0].name: example_input.detach().cpu().numpy()})[0]


def torch_output(model: nn.Module, example_input: torch.Tensor) -> np.ndarray:
    """Output of ``model`` in eval mode under inference_mode (train/eval mode restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return model(example_input).detach().cpu().numpy()
    finally:
        model.train(was_training)


def assert_matches_torch(
    model: nn.Module, example_input: torch.Tensor, payload: bytes, atol: float = 1e-4, rtol: float = 1e-4
) -> float:
    """Raise ``AssertionError`` unless ORT and torch agree within ``atol + rtol * max|torch|``.

    Returns the max absolute difference.
    """
    want = torch_output(model, example_input)
    got = ort_output(payload, example_input)
    if got.shape != want.shape:
        raise AssertionError(f"ONNX output shape {got.shape} differs from torch output shape {want.shape}")
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    tol = atol + rtol * (float(np.max(np.abs(want))) if want.size else 0.0)
    if not err <= tol:
        raise AssertionError(f"ONNX Runtime output differs from torch by {err:.3g} > tolerance {tol:.3g}")
    return err


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

"""Peak inference memory of an ONNX model under onnxruntime on the CPU, measured in a fresh process.

Method (Linux): a child process (``python -m profiling.memory``) imports numpy and onnxruntime, reads the
model bytes and the input, then records its resident set size ``VmRSS`` and resets the kernel's high-water
mark ``VmHWM`` to it (writing ``5`` to ``/proc/self/clear_refs``). It then creates the inference session
(the model's initialisers copied into onnxruntime's memory, its arena, the thread pool of the config) and
runs ``runs`` inferences on the input. ``memory_mb`` = (``VmHWM`` after the runs - ``VmRSS`` before the
session) / 1024: the peak of resident memory the session and its inferences added, weights included, in
MiB. A fresh process per measurement, because a process that already ran a session keeps freed pages in
its allocators and would under-count the next one. Nothing is estimated from parameter counts: where the
counters cannot be read (not Linux, ``clear_refs`` not writable) :func:`peak_memory_mb` raises
:class:`MemoryUnavailable` and the campaign leaves ``memory_mb`` empty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the probe child imports this module: keep torch out of it
    import torch
    from torch import nn

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


class MemoryUnavailable(RuntimeError):
    """The peak-memory counters cannot be read on this machine."""


def _status_kb(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise MemoryUnavailable(f"{STATUS} has no {field} line")


def memory_counters_readable() -> bool:
    """True when this process can read VmRSS / VmHWM and reset the high-water mark."""
    try:
        _status_kb("VmHWM")
        CLEAR_REFS.write_text("5")
        return True
    except (OSError, MemoryUnavailable):
        return False


def peak_memory_mb(
    payload: bytes, example: np.ndarray, threads: int = 1, runs: int = 3, timeout: float = 120.0
) -> float:
    """Peak resident memory (MiB) a fresh process adds by creating an onnxruntime CPU session of
    ``payload`` with ``threads`` intra-op threads and running it ``runs`` times on ``example`` (see the module
    docstring). ``MemoryUnavailable`` where the counters cannot be read; RuntimeError naming the child's
    last error line when it fails."""
    with tempfile.TemporaryDirectory(prefix="modnas-mem-") as tmp:
        model, inp = Path(tmp) / "model.onnx", Path(tmp) / "input.npy"
        model.write_bytes(payload)
        np.save(inp, example)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "profiling.memory", str(model), str(inp), str(threads), str(runs)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if "MemoryUnavailable" in last:
            raise MemoryUnavailable(last)
        raise RuntimeError(f"memory probe failed (exit {done.returncode}): {last}")
    return float(json.loads(lines[-1])["memory_mb"])


def _probe(model_path: str, input_path: str, threads: int, runs: int) -> float:
    import onnxruntime as ort

    payload = Path(model_path).read_bytes()
    x = np.load(input_path)
    try:
        CLEAR_REFS.write_text("5")  # VmHWM := VmRSS from here on
    except OSError as e:
        raise MemoryUnavailable(f"cannot reset the high-water mark ({CLEAR_REFS}: {e})") from None
    rss0 = _status_kb("VmRSS")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(payload, sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x} if session.get_inputs() else {}
    for _ in range(runs):
        session.run(None, feed)
    return (_status_kb("VmHWM") - rss0) / 1024.0


if __name__ == "__main__":
    path, inp, n_threads, n_runs = sys.argv[1:5]
    print(json.dumps({"memory_mb": _probe(path, inp, int(n_threads), int(n_runs))}))


def measure_memory_modules(
    models: Mapping[str, nn.Module],
    make_input: Callable[[int], torch.Tensor],
    device_names: Sequence[str],
    runs: int = 3,
) -> dict[tuple[str, str], float]:
    """Peak inference memory (MiB) of named modules under each onnxruntime CPU device config name (exported
    at the config's batch; other configs are left out): ``{(model name, device name): memory_mb}``."""
    from .export import export_onnx
    from .latency import parse_device_configs

    out: dict[tuple[str, str], float] = {}
    for config in parse_device_configs(device_names):
        if config.runtime != "ort" or config.hardware != "cpu":
            continue
        x = make_input(config.batch)
        for name, model in models.items():
            payload = export_onnx(model.eval(), x, name=name)
            out[(name, config.name)] = peak_memory_mb(payload, x.numpy(), threads=config.threads, runs=runs)
    return out

"""Latency of candidate networks under a device config: onnxruntime or torch eager, interleaved timing rounds.

A :class:`DeviceConfig` is named ``<hardware>-<runtime>-t<threads>-b<batch>[-<provider>]`` (e.g.
``cpu-ort-t1-b1``; the provider suffix only appears for a non-default onnxruntime provider, e.g.
``cuda-ort-t1-b1-tensorrt``). Runtimes live in a registry (:data:`RUNTIMES`); each turns a
:class:`Candidate` into a zero-argument :class:`Runner` with its input already bound.

Timing (:func:`time_runners`): for each of ``rounds`` rounds, every candidate in turn (order rotated per
round) gets ``warmup`` untimed calls and then ``repeats`` timed calls (``perf_counter_ns`` around one call,
garbage collection off). Statistics over all rounds' samples: median, p90, IQR, CV (std/mean), in ms per
call (one call = one batch), plus ``split_cv``, the CV of the medians of 5 time-ordered parts.

Why many short visits (default 100 rounds x (1 + 5) calls) rather than a few long blocks: across processes
the same tiny model is bimodal here (stack-facts) and other jobs share the 2 cores, so load drifts while
we time. Interleaving at a fine grain gives every candidate of a chunk the same mix of quiet and busy
moments. Measured in one process on 50 digits-sized NB201 nets (cpu-ort-t1-b1, load 7-9), Kendall tau
between two back-to-back passes: 5 rounds x 30 calls 0.56, 50 x 2 0.92, 100 x 5 0.94, 300 x 3 0.95.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from modnas_ops.errors import UserError

from .config import check_number
from .export import DEFAULT_EXPORTER, export_onnx
from .nvml import nvml_gpu_name

log = logging.getLogger(__name__)

HARDWARE = ("cpu", "cuda")
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}  # default per hardware
GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
MIN_ROUNDS = 5  # rounds run even when the time budget is exhausted
SPLITS = 5  # time-ordered parts of a candidate's samples for ``LatencyStats.split_cv``
_NAME_RE = re.compile(r"^(?P<hw>[a-z]+)-(?P<rt>[a-z]+)-t(?P<t>[0-9]+)-b(?P<b>[0-9]+)(?:-(?P<p>[a-z0-9]+))?$")


class OnnxLoadError(UserError):
    """An ONNX payload or file that onnxruntime cannot load."""


# ---- device configs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceConfig:
    """How to time a network: hardware, runtime, provider, threads, batch and the timing schedule."""

    hardware: str = "cpu"
    runtime: str = "ort"
    threads: int = 1  # intra-op threads (ORT) / torch.set_num_threads (torch)
    batch: int = 1
    provider: str = ""  # "" -> the runtime's default for the hardware
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    warmup: int = 1  # untimed calls per candidate per round
    repeats: int = 5  # timed calls per candidate per round
    rounds: int = 100
    device_index: int = 0  # which GPU for cuda configs
    max_seconds: float = 0.0  # time budget of one interleaved timing block; 0 = none (see time_runners)
    # ORT thread pools spin-wait for work, also between calls (ORT's default). Interleaved timing keeps a whole
    # chunk of sessions open, so with threads > 1 every idle session's pool spins and steals the cores from the
    # one being timed. 2-core VM, cpu-ort-t2-b1, median CV / tau of two campaigns: spinning 9.3 / 0.88,
    # spinning stopped after each call (RunOptions session.force_spinning_stop) 8.1 / 0.85, off 0.38 / 0.81.
    spinning: bool = False

    def __post_init__(self) -> None:
        if self.hardware not in HARDWARE:
            raise UserError(
                f"device config: unknown hardware {self.hardware!r}; known: {', '.join(HARDWARE)}"
            )
        runtime = get_runtime(self.runtime)
        for f in ("threads", "batch", "inter_op_threads", "repeats", "rounds"):
            check_number(f"device config: {f}", getattr(self, f), 1, integer=True)
        for f in ("warmup", "device_index"):
            check_number(f"device config: {f}", getattr(self, f), 0, integer=True)
        check_number("device config: max_seconds", self.max_seconds, 0.0)  # 0 = no limit
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise UserError(
                f"device config: unknown graph_optimization {self.graph_optimization!r}; "
                f"known: {', '.join(GRAPH_OPTIMIZATION)}"
            )
        if not self.provider:
            object.__setattr__(self, "provider", runtime.default_provider(self.hardware))
        runtime.validate_provider(self)

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``cpu-ort-t1-b1``; timing schedule and graph level are not part of it."""
        base = f"{self.hardware}-{self.runtime}-t{self.threads}-b{self.batch}"
        default = get_runtime(self.runtime).default_provider(self.hardware)
        return base if self.provider == default else f"{base}-{_provider_short(self.provider)}"

    @classmethod
    def from_name(cls, name: str, **fields: object) -> DeviceConfig:
        """Parse a canonical name; ``fields`` set the rest (warmup, repeats, rounds, ...)."""
        m = _NAME_RE.match(name.strip())
        if m is None:
            raise UserError(
                f"malformed device config name {name!r}; expected <hardware>-<runtime>-t<threads>-b<batch>"
                "[-<provider>], e.g. cpu-ort-t1-b1"
            )
        provider = _provider_from_short(m["p"], name) if m["p"] else ""
        try:
            return cls(
                hardware=m["hw"],
                runtime=m["rt"],
                threads=int(m["t"]),
                batch=int(m["b"]),
                provider=provider,
                **fields,  # type: ignore[arg-type]
            )
        except ValueError as e:
            raise UserError(f"device config {name!r}: {str(e).removeprefix('device config: ')}") from None

    def check_available(self) -> None:
        """ValueError (one line) unless this config can run on this machine."""
        get_runtime(self.runtime).check_available(self)


def _provider_short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider").lower()


def _provider_from_short(short: str, name: str) -> str:
    for p in ort.get_all_providers():
        if _provider_short(p) == short:
            return p
    known = ", ".join(sorted(_provider_short(p) for p in ort.get_all_providers()))
    raise UserError(f"device config name {name!r}: unknown provider {short!r}; known: {known}")


def parse_device_configs(names: Sequence[str], **fields: object) -> list[DeviceConfig]:
    """Configs for ``names`` (duplicates rejected), all with the same timing ``fields``."""
    configs = [DeviceConfig.from_name(n, **fields) for n in names]
    seen: set[str] = set()
    for c in configs:
        if c.name in seen:
            raise UserError(f"device config {c.name!r} listed twice")
        seen.add(c.name)
    return configs


# ---- candidates and runners --------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A network to time: module, per-sample input shape (C, H, W), per-batch cache of its ONNX export."""

    name: str
    model: nn.Module
    input_shape: tuple[int, ...]
    exporter: str = DEFAULT_EXPORTER
    seed: int = 0
    make_input: Callable[[int], torch.Tensor] | None = None  # batch -> input (e.g. the space's token ids)
    _onnx: dict[int, bytes] = field(default_factory=dict, repr=False)

    def example_input(self, batch: int) -> torch.Tensor:
        if self.make_input is not None:
            return self.make_input(batch)
        g = torch.Generator().manual_seed(self.seed)
        return torch.randn((batch, *self.input_shape), generator=g)  # (B, C, H, W)

    def onnx_bytes(self, batch: int) -> bytes:
        """ONNX export at a fixed batch size (exported once per batch size)."""
        if batch not in self._onnx:
            self._onnx[batch] = export_onnx(
                self.model, self.example_input(batch), exporter=self.exporter, name=self.name
            )
        return self._onnx[batch]


class Runner:
    """One inference per call, input bound; ``setup`` re-applies per-config global state before a block."""

    def __init__(self, call: Callable[[], object], setup: Callable[[], None] = lambda: None) -> None:
        self._call = call
        self.setup = setup

    def __call__(self) -> None:
        self._call()


class Runtime:
    """Base of the runtime registry: default provider, availability check, candidate -> runner."""

    name: ClassVar[str]

    def default_provider(self, hardware: str) -> str:
        raise NotImplementedError

    def validate_provider(self, config: DeviceConfig) -> None:
        """Static check of ``config.provider`` (no hardware query)."""

    def check_available(self, config: DeviceConfig) -> None:
        raise NotImplementedError

    def prepare(self, candidate: Candidate, config: DeviceConfig) -> Runner:
        raise NotImplementedError


class OrtRuntime(Runtime):
    name = "ort"

    def default_provider(self, hardware: str) -> str:
        return ORT_PROVIDERS[hardware]

    def validate_provider(self, config: DeviceConfig) -> None:
        if config.provider not in ort.get_all_providers():
            raise UserError(f"device config: unknown onnxruntime provider {config.provider!r}")

    def check_available(self, config: DeviceConfig) -> None:
        available = ort.get_available_providers()
        if config.provider not in available:
            raise UserError(
                f"device config {config.name}: provider {config.provider} is not available in onnxruntime "
                f"{ort.__version__} here; available: {', '.join(available)}"
            )

    def session(
        self, model: bytes | str | Path, config: DeviceConfig, name: str = ""
    ) -> ort.InferenceSession:
        """An InferenceSession with explicit provider, thread counts and graph optimisation level."""
        label = name or (str(model) if isinstance(model, (str, Path)) else "<bytes>")
        if isinstance(model, (str, Path)):
            try:
                model = Path(model).read_bytes()
            except OSError as e:
                raise OnnxLoadError(f"cannot read ONNX file {label}: {e.strerror}") from None
        self.check_available(config)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = config.threads
        opts.inter_op_num_threads = config.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = GRAPH_OPTIMIZATION[config.graph_optimization]
        opts.log_severity_level = 3
        spin = "1" if config.spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        options: dict[str, str] = {"device_id": str(config.device_index)} if config.hardware == "cuda" else {}
        try:
            sess = ort.InferenceSession(model, sess_options=opts, providers=[(config.provider, options)])
        except Exception as e:  # onnxruntime raises pybind exception types (InvalidProtobuf, Fail, ...)
            raise OnnxLoadError(f"cannot load ONNX model {label}: {_first_line(e)}") from None
        if sess.get_providers()[0] != config.provider:
            raise UserError(
                f"device config {config.name}: onnxruntime fell back to {sess.get_providers()[0]} "
                f"instead of {config.provider}"
            )
        return sess

    def prepare(self, candidate: Candidate, config: DeviceConfig) -> Runner:
        return self.runner(candidate.onnx_bytes(config.batch), config, candidate.name)

    def runner(self, model: bytes | str | Path, config: DeviceConfig, name: str = "") -> Runner:
        """Runner for a serialized model or an ``.onnx`` file (random input of the model's fixed shape)."""
        sess = self.session(model, config, name)
        rng = np.random.default_rng(0)
        # A network whose output does not depend on its input (e.g. an NB201 cell with only ``none`` into its
        # output node) is exported without inputs: it is then run (and timed) with an empty feed.
        # Integer inputs (token ids) get ids in {0, 1}, valid for any vocabulary (timing does not depend on them).
        feed = {}
        for i in sess.get_inputs():
            shape = [d if isinstance(d, int) else config.batch for d in i.shape]
            if i.type in ("tensor(int64)", "tensor(int32)"):
                feed[i.name] = rng.integers(0, 2, shape).astype(np.int64 if i.type == "tensor(int64)" else np.int32)
            else:
                feed[i.name] = rng.standard_normal(shape).astype(np.float32)
        return Runner(lambda: sess.run(None, feed))


class TorchRuntime(Runtime):
    name = "torch"

    def default_provider(self, hardware: str) -> str:
        return hardware  # the torch device type

    def validate_provider(self, config: DeviceConfig) -> None:
        if config.provider != config.hardware:
            raise UserError(f"device config: the torch runtime has no provider {config.provider!r}")

    def check_available(self, config: DeviceConfig) -> None:
        if config.hardware == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device config {config.name}: torch reports no CUDA device here")

    def prepare(self, candidate: Candidate, config: DeviceConfig) -> Runner:
        self.check_available(config)
        device = (
            torch.device(config.hardware, config.device_index)
            if config.hardware == "cuda"
            else torch.device("cpu")
        )
        model = (
            (copy.deepcopy(candidate.model) if device.type != "cpu" else candidate.model).to(device).eval()
        )
        x = candidate.example_input(config.batch).to(device)  # (B, C, H, W)
        sync: Callable[[], None] = (
            (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        )

        def call() -> None:
            with torch.inference_mode():
                model(x)
            sync()

        return Runner(call, setup=lambda: torch.set_num_threads(config.threads))


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (OrtRuntime(), TorchRuntime())}


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise UserError(f"unknown runtime {name!r}; available: {', '.join(sorted(RUNTIMES))}") from None


def prepare(candidate: Candidate, config: DeviceConfig) -> Runner:
    return get_runtime(config.runtime).prepare(candidate, config)


# ---- timing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of per-call latencies in ms over all timed calls of all rounds."""

    median_ms: float
    p90_ms: float
    iqr_ms: float
    cv: float  # std / mean (ddof=1) of all calls: includes scheduler outliers
    mean_ms: float
    n: int
    split_cv: float = 0.0  # std / mean of the medians of SPLITS time-ordered parts: stability of the median

    @classmethod
    def from_samples_ms(cls, samples_ms: Sequence[float]) -> LatencyStats:
        """``samples_ms`` in the order they were taken."""
        s = np.asarray(samples_ms, dtype=np.float64)
        if s.size == 0:
            raise ValueError("no latency samples")
        q25, q50, q75, q90 = np.percentile(s, [25, 50, 75, 90])
        mean = float(s.mean())
        std = float(s.std(ddof=1)) if s.size > 1 else 0.0
        medians = np.array([np.median(part) for part in np.array_split(s, min(SPLITS, s.size))])  # (SPLITS,)
        split_cv = float(medians.std(ddof=1) / medians.mean()) if medians.size > 1 else 0.0
        return cls(
            median_ms=float(q50),
            p90_ms=float(q90),
            iqr_ms=float(q75 - q25),
            cv=std / mean if mean > 0 else 0.0,
            mean_ms=mean,
            n=int(s.size),
            split_cv=split_cv,
        )


def time_runners(runners: Sequence[Runner], config: DeviceConfig) -> list[LatencyStats]:
    """Interleaved rounds over ``runners`` (see module docstring); one :class:`LatencyStats` per runner.

    With ``config.max_seconds`` > 0, no round starts once that much time has passed (at least
    ``MIN_ROUNDS`` rounds run): every runner gets the same number of rounds; ``LatencyStats.n`` tells how many
    calls were timed.
    """
    n = len(runners)
    samples: list[list[float]] = [[] for _ in range(n)]
    threads = torch.get_num_threads()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    deadline = time.perf_counter() + config.max_seconds if config.max_seconds > 0 else math.inf
    try:
        for r in range(config.rounds):
            if r >= MIN_ROUNDS and time.perf_counter() > deadline:
                log.info("%s: time budget of %.0f s used after %d of %d rounds", config.name,
                         config.max_seconds, r, config.rounds)  # fmt: skip
                break
            for k in range(n):
                i = (k + r) % n
                run = runners[i]
                run.setup()
                for _ in range(config.warmup):
                    run()
                out = samples[i]
                for _ in range(config.repeats):
                    t0 = time.perf_counter_ns()
                    run()
                    out.append((time.perf_counter_ns() - t0) * 1e-6)
    finally:
        if gc_was_enabled:
            gc.enable()
        torch.set_num_threads(threads)
    return [LatencyStats.from_samples_ms(s) for s in samples]


def time_candidates(candidates: Sequence[Candidate], config: DeviceConfig) -> list[LatencyStats]:
    """Prepare every candidate under ``config`` and time them interleaved."""
    return time_runners([prepare(c, config) for c in candidates], config)


# ---- host description --------------------------------------------------------------------------------------


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """CPU model name from /proc/cpuinfo (x86 ``model name``, ARM ``Hardware``/``Model``), else platform."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            k, sep, v = line.partition(":")
            if sep and k.strip() == key and v.strip():
                return v.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_name(index: int = 0) -> str:
    """Name of GPU ``index`` via torch, else NVML, else ""."""
    if torch.cuda.is_available() and index < torch.cuda.device_count():
        return torch.cuda.get_device_name(index)
    return nvml_gpu_name(index)


def versions() -> dict[str, str]:
    return {"onnxruntime_version": ort.__version__, "torch_version": torch.__version__}


def device_description(config: DeviceConfig) -> str:
    """One line: the processor that runs ``config`` (GPU name for cuda), CPU count, platform, runtime."""
    cpu = f"{cpu_model()} ({os.cpu_count()} logical CPUs)"
    if config.hardware == "cuda":
        hw = f"{gpu_name(config.device_index) or 'unknown GPU'} #{config.device_index}; host {cpu}"
    else:
        hw = cpu
    rt = (
        f"onnxruntime {ort.__version__} {config.provider}"
        if config.runtime == "ort"
        else f"torch {torch.__version__}"
    )
    return f"{hw}; {platform.platform()}; {rt}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def measure_modules(
    models: Mapping[str, nn.Module],
    input_shape: Sequence[int],
    device_names: Sequence[str],
    make_input: Callable[[int], torch.Tensor] | None = None,
    candidates: dict[str, Candidate] | None = None,
    **schedule: object,
) -> dict[tuple[str, str], LatencyStats]:
    """Time named modules (exported once per batch size) under each device config name, interleaved.

    ``input_shape`` is per sample (C, H, W); ``make_input``: batch -> example input (default: Gaussian images
    of ``input_shape``, e.g. the space's token ids instead); ``candidates``: a dict the caller keeps across
    calls, so a name timed before reuses its candidate and ONNX exports (the module given is then not
    exported again); ``schedule`` sets warmup / repeats / rounds / max_seconds.
    Returns ``{(model name, device name): LatencyStats}``. Used to re-measure the architectures a search chose.
    """
    shape = tuple(int(s) for s in input_shape)
    cache = {} if candidates is None else candidates
    for name, m in models.items():
        if name not in cache:
            cache[name] = Candidate(name, m, shape, make_input=make_input)
    timed = [cache[name] for name in models]
    out: dict[tuple[str, str], LatencyStats] = {}
    for config in parse_device_configs(device_names, **schedule):
        for c, stats in zip(timed, time_candidates(timed, config), strict=True):
            out[(c.name, config.name)] = stats
    return out

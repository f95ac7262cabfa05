"""Configuration of a profiling campaign (a frozen dataclass, cheap to import: heavy modules load lazily)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modnas_ops.errors import UserError

if TYPE_CHECKING:
    from .latency import DeviceConfig

DEFAULT_DEVICES = ("cpu-ort-t1-b1", "cpu-ort-t2-b1", "cpu-ort-t1-b32")
CUDA_BATCHES = (1, 32)


def check_number(
    name: str, value: object, minimum: float, *, integer: bool = False, strict: bool = False, maximum: float = math.inf
) -> None:
    """``UserError`` ``"<name>: must be ..."`` unless ``value`` is a finite number (an integer when ``integer``)
    in ``[minimum, maximum]`` (``> minimum`` when ``strict``). Rejects NaN, inf, bools and strings."""
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    if maximum < math.inf:
        bound += f" and <= {maximum:g}"
    kind = "an integer" if integer else "a finite number"
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(v) and (v > minimum if strict else v >= minimum) and v <= maximum
    if not ok:
        raise UserError(f"{name}: must be {kind} {bound}, got {value!r}")


def cuda_device_names(batches: tuple[int, ...] = CUDA_BATCHES) -> list[str]:
    """``cuda-ort-t1-b<batch>`` when onnxruntime has the CUDA provider and a GPU is visible, else []."""
    import onnxruntime as ort

    from .latency import gpu_name

    if "CUDAExecutionProvider" not in ort.get_available_providers() or not gpu_name(0):
        return []
    return [f"cuda-ort-t1-b{b}" for b in batches]


@dataclass(frozen=True)
class CampaignConfig:
    """What to profile (space, network size, archs), on which device configs, how long, and where to write."""

    space: str = "nb201"
    C: int = 8
    N: int = 1
    network_options: dict[str, Any] = field(default_factory=dict)  # further hyper-parameters of the space's
    # networks (e.g. NB201's skeleton: pointwise)
    in_channels: int = 1
    input_size: int = 8  # height = width
    sample_shape: tuple[int, ...] = ()  # one sample's shape when it is not an image, e.g. (64,) token ids
    num_classes: int = 10
    devices: tuple[str, ...] = DEFAULT_DEVICES
    add_cuda_devices: bool = True  # + cuda-ort-t1-b1/-b32 when onnxruntime has CUDA and a GPU is present
    anchors: bool = True
    num_archs: int = 40  # sampled archs on top of the anchors
    stratified_fraction: float = 0.5
    seed: int = 0
    warmup: int = 1  # untimed calls per candidate visit
    repeats: int = 5  # timed calls per candidate visit
    rounds: int = 1000  # visits per candidate, interleaved with the other candidates of its chunk (bounded by
    # max_seconds; two campaigns' tau on cpu-ort-t2-b1 of this 2-core VM: 0.81 at 100 rounds, 0.98 at 1000 uncapped)
    chunk_size: int = 50  # archs timed together (interleaved) and appended to the table together
    max_seconds: float = 30.0  # time budget per chunk and device config (>= 5 rounds always run); 0 = none
    energy: bool = True
    energy_seconds: float = 0.5  # minimum counter window per (arch, device)
    memory: bool = False  # also measure peak inference memory (ORT CPU configs; ~0.5-2 s per pair)
    exporter: str = "torchscript"
    output: str = "outputs/profile.csv"

    def __post_init__(self) -> None:
        from modnas_ops.spaces import get_search_space

        from .export import EXPORTERS

        for f in ("C", "N", "in_channels", "input_size", "num_classes", "repeats", "rounds", "chunk_size"):
            check_number(f, getattr(self, f), 1, integer=True)
        for f in ("num_archs", "warmup", "seed"):
            check_number(f, getattr(self, f), 0, integer=True)
        check_number("stratified_fraction", self.stratified_fraction, 0.0, maximum=1.0)
        check_number("max_seconds", self.max_seconds, 0.0)  # 0 = no limit
        check_number("energy_seconds", self.energy_seconds, 0.0, strict=True)
        for i, s in enumerate(self.sample_shape):
            check_number(f"sample_shape[{i}]", s, 1, integer=True)
        if self.exporter not in EXPORTERS:
            raise UserError(f"exporter: unknown exporter {self.exporter!r}; available: {', '.join(sorted(EXPORTERS))}")
        if not self.output:
            raise UserError("output: must name a CSV file")
        if str(self.output).endswith(".gz"):
            raise UserError(f"output: {self.output} ends in .gz, but a campaign appends to a plain CSV file")
        get_search_space(self.space)
        self.device_configs()  # malformed names fail here, with one line

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: ``sample_shape``, or (C, H, W) = (in_channels, input_size, input_size)."""
        return tuple(self.sample_shape) or (self.in_channels, self.input_size, self.input_size)

    @property
    def network(self) -> str:
        """Network-size tag stored in every row, e.g. ``C8-N1-1x8x8-10``."""
        shape = "x".join(map(str, self.input_shape))
        extra = "".join(f"-{k}={v}" for k, v in sorted(self.network_options.items()))
        return f"C{self.C}-N{self.N}-{shape}-{self.num_classes}{extra}"

    def network_hparams(self) -> dict[str, Any]:
        """Keyword arguments of the space's ``build_network`` besides genotype, input shape and classes."""
        return {"C": self.C, "N": self.N, **self.network_options}

    def device_configs(self, with_cuda: bool = False) -> list[DeviceConfig]:
        """Parsed ``devices`` (+ CUDA configs when ``with_cuda`` and ``add_cuda_devices`` and available)."""
        from .latency import parse_device_configs

        names = list(self.devices)
        if with_cuda and self.add_cuda_devices:
            names += [n for n in cuda_device_names() if n not in names]
        if not names:
            raise ValueError("devices lists no device config")
        return parse_device_configs(
            names, warmup=self.warmup, repeats=self.repeats, rounds=self.rounds, max_seconds=self.max_seconds
        )

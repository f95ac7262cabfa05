"""Configuration of the baselines entry point (projects/baselines.py), validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..spaces import get_search_space
from .base import baseline_class, get_baseline

MODNAS_SUPERNET = "modnas"  # embedded.supernet: the frozen judge logged by the MODNAS run (modnas_run_id)


@dataclass(frozen=True)
class TableSection:
    """Benchmark mode: black-box objectives read from the NB201 table, one device at a time."""

    table: str = ""  # .csv.gz or its directory; "" = $MODNAS_NB201_TABLE
    dataset: Literal["cifar10", "cifar100", "imagenet16"] = "cifar10"
    devices: tuple[str, ...] = ()  # () = every device of devices.json (train, then test)


@dataclass(frozen=True)
class EmbeddedSection:
    """Embedded mode: supernet validation error (digits) and onnxruntime latency measured on this machine."""

    dataset: str = "digits"  # digits | cifar10 (see modnas_ops.data)
    data_root: str = ""
    torch_device: str = "cpu"  # where the supernet trains and computes validation error
    C: int = 8
    N: int = 1
    supernet_steps: int = 300  # uniform single-path training steps of the one-shot supernet
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd | adamw (modnas_ops.standalone.WEIGHT_OPTIMIZERS)
    eval_batch_size: int = 256
    devices: tuple[str, ...] = ("cpu-ort-t1-b1",)  # profiling device config names
    rounds: int = 30  # timing rounds per architecture (profiling.latency)
    repeats: int = 5
    warmup: int = 1
    share_measurements: bool = True  # one memo of measurements per device for all methods and seeds
    memory: bool = False  # third objective: peak inference memory (memory_mb) measured by profiling.memory
    supernet: str = ""  # the error's supernet: "" = train one (supernet_steps); "modnas" = the MODNAS run's
    # frozen judge (its model/supernet.pt: every method and its front judged as the search judged); or a
    # save_supernet file (e.g. projects/train_supernet.py's)

    def __post_init__(self) -> None:
        for name in ("C", "N", "supernet_steps", "batch_size", "eval_batch_size", "rounds", "repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"embedded: {name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or not self.lr > 0:
            raise ValueError("embedded: need warmup >= 0 and lr > 0")
        from ..standalone import WEIGHT_OPTIMIZERS

        if self.optimizer not in WEIGHT_OPTIMIZERS:
            raise ValueError(f"embedded: optimizer {self.optimizer!r} is not one of {', '.join(WEIGHT_OPTIMIZERS)}")
        if not self.devices:
            raise ValueError("embedded: name at least one device config (e.g. cpu-ort-t1-b1)")
        if self.supernet not in ("", MODNAS_SUPERNET) and not Path(self.supernet).is_file():
            raise ValueError(f"embedded: supernet {self.supernet!r} is neither {MODNAS_SUPERNET!r} nor a file")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"embedded: devices lists a device twice: {', '.join(self.devices)}")


@dataclass(frozen=True)
class BaselinesConfig:
    """Which baselines, budget and seeds, on which objectives; logged whole."""

    mode: Literal["embedded", "benchmark"] = "embedded"
    space: str = "nb201"
    methods: tuple[str, ...] = ("random", "local", "nsga2", "linas", "motpe")
    method_options: dict[str, Any] = field(default_factory=dict)  # e.g. {nsga2: {population_size: 20}}
    seeds: tuple[int, ...] = (0,)
    max_evaluations: int = 40  # true evaluations per method x device x seed
    max_seconds: float = 0.0  # wall-time budget per run; 0 = none
    max_error: float = 90.0  # percent; MODNAS normalisation drops archs at or above it
    modnas_run_id: str = ""  # a MODNAS search run whose hv/<device> metrics join the comparison
    threads: int = 1  # torch intra-op threads
    plots: bool = True
    experiment: str = "baselines"
    run_name: str = "baselines"
    benchmark: TableSection = field(default_factory=TableSection)
    embedded: EmbeddedSection = field(default_factory=EmbeddedSection)

    def __post_init__(self) -> None:
        get_search_space(self.space)
        if not self.methods:
            raise ValueError("methods: name at least one baseline")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods lists a baseline twice: {', '.join(self.methods)}")
        for name in dict.fromkeys([*self.methods, *self.method_options]):
            baseline_class(name)  # unknown names (also typos in method_options) fail here
            options = self.method_options.get(name) or {}
            if not isinstance(options, dict):
                raise ValueError(f"method_options.{name} must be a mapping of hyper-parameters, got {options!r}")
            if name in self.methods:
                get_baseline(name, **options)  # bad hyper-parameters fail here, before any work
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {list(self.seeds)}")
        if self.max_evaluations < 1 or self.max_seconds < 0 or self.threads < 1:
            raise ValueError("need max_evaluations >= 1, max_seconds >= 0 (0 = none) and threads >= 1")
        if not 0 < self.max_error <= 100:
            raise ValueError(f"max_error must lie in (0, 100] percent, got {self.max_error}")
        if self.embedded.supernet == MODNAS_SUPERNET and not self.modnas_run_id and self.mode == "embedded":
            raise ValueError(f"embedded: supernet {MODNAS_SUPERNET!r} needs modnas_run_id (--modnas-run-id)")

    def options(self, method: str) -> dict[str, Any]:
        return dict(self.method_options.get(method) or {})

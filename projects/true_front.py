"""MLflow entry point: the true Pareto front (error vs latency) and its hypervolume per device of the NB201 table.

    python projects/true_front.py --benchmark PATH [--config YAML] [--set key=value ...]

Logs ``hv_true/<device>`` and ``front_size/<device>``, ``fronts/<device>.csv``, ``plots/<device>.png`` and
``summary.csv``; prints a per-device table. Bad input: one line on stderr, exit code 2, run FAILED.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modnas_ops.cli import add_config_arguments, bad_input, config_from_args, run_main
from modnas_ops.errors import UserError

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "true_front.yaml"


@dataclass(frozen=True)
class TrueFrontConfig:
    benchmark: str = ""  # table file or its directory; "" = $MODNAS_NB201_TABLE
    devices_file: str = ""  # devices.json; "" = the one beside the table
    devices: tuple[str, ...] = ()  # () = every device devices.json lists (train, then test)
    dataset: Literal["cifar10", "cifar100", "imagenet16"] = "cifar10"
    max_error: float = 90.0  # percent; archs at or above it are dropped before normalising
    plots: bool = True
    experiment: str = "true_front"
    run_name: str = "true_front"

    def __post_init__(self) -> None:
        if not 0.0 < self.max_error <= 100.0:
            raise UserError(f"max_error must lie in (0, 100] percent, got {self.max_error}")
        if len(set(self.devices)) != len(self.devices):
            raise UserError(f"devices lists a device twice: {', '.join(self.devices)}")


def front_figure(table: Any, result: Any, max_error: float) -> Any:
    """Error vs latency of every arch below ``max_error`` (grey) with the front highlighted."""
    import numpy as np
    from matplotlib.figure import Figure

    error, latency = table.error(result.dataset), table.latency(result.device)
    keep = error < max_error
    fig = Figure(figsize=(6, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.scatter(latency[keep], error[keep], s=3, c="0.8", lw=0, rasterized=True, label=f"{keep.sum()} archs")
    xs = np.repeat(result.latency_ms, 2)[1:]
    ys = np.repeat(result.error, 2)[:-1]
    ax.plot(xs, ys, c="C3", lw=1)
    ax.scatter(result.latency_ms, result.error, s=14, c="C3", zorder=3, label=f"front ({len(result.indices)})")
    ax.set_xlabel(f"latency on {result.device} (ms)")
    ax.set_ylabel(f"{result.dataset} test error (%)")
    ax.set_title(f"{result.device}: HV = {result.hv:.4f}")
    ax.legend(loc="upper right")
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)  # no layout engine: 15k points are slow
    return fig


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default=None, help="NB201 table (.csv.gz) or its directory")
    add_config_arguments(parser, DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    extra = [f"benchmark={args.benchmark}"] if args.benchmark else []
    cfg = config_from_args(TrueFrontConfig, args, extra)

    from tqdm import tqdm

    from modnas_ops import tracking
    from modnas_ops.benchmarks import load_table, true_front

    with tracking.start_run(cfg.run_name, cfg, experiment=cfg.experiment) as run:
        with bad_input("benchmark"):
            table = load_table(cfg.benchmark or None, cfg.devices_file or None)
        devices = cfg.devices or table.devices
        with bad_input("devices", (ValueError,)):
            for device in devices:
                table.latency(device)  # unknown names fail before any work
        tracking.set_tags({"benchmark.path": table.path, "benchmark.rows": len(table)})
        results = [true_front(table, d, cfg.dataset, cfg.max_error) for d in tqdm(devices, desc="fronts")]
        tracking.log_metrics({f"hv_true/{r.device}": r.hv for r in results})
        tracking.log_metrics({f"front_size/{r.device}": len(r.indices) for r in results})
        summary = []
        for r in tqdm(results, desc="artifacts"):
            tracking.log_table(r.rows(), f"fronts/{r.device}.csv")
            if cfg.plots:
                tracking.log_figure(front_figure(table, r, cfg.max_error), f"plots/{r.device}.png")
            summary.append(
                {
                    "device": r.device,
                    "split": table.split(r.device),
                    "hv_true": r.hv,
                    "front_size": len(r.indices),
                    "error_lo": r.normaliser.lo[0],
                    "error_hi": r.normaliser.hi[0],
                    "latency_ms_lo": r.normaliser.lo[1],
                    "latency_ms_hi": r.normaliser.hi[1],
                }
            )
        tracking.log_table(summary, "summary.csv")

    print(f"run {run.info.run_id}: true fronts of {table.path.name} ({cfg.dataset}, error < {cfg.max_error:g} %)")
    print(f"{'device':<16} {'split':<6} {'front':>5} {'hv_true':>8}")
    for row in summary:
        print(f"{row['device']:<16} {row['split']:<6} {row['front_size']:>5d} {row['hv_true']:>8.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

"""MLflow entry point: black-box multi-objective baselines per device and seed, compared with a MODNAS search.

    python -m projects.baselines [--config YAML] [--benchmark PATH] [--modnas-run-id ID] [--supernet modnas|FILE]
                                 [--set key=value ...]

Embedded default: error = validation error (%) of a uniformly trained one-shot supernet on digits, latency =
onnxruntime median on this machine's device configs (profiling). ``--supernet modnas`` (``embedded.supernet``)
judges every method with the MODNAS run's own frozen supernet instead (``--supernet FILE``: a saved one).
``--benchmark PATH``: error and latency of the NB201 table, every device of its devices.json.

One parent run; a nested child run per method x device x seed with metric ``hv`` (step = true evaluations),
``history.csv`` (every evaluation) and ``front.csv``. The parent logs ``comparison.csv`` (with MODNAS rows
from ``--modnas-run-id``: its ``hv/<device>`` metrics), ``plots/hv_<device>.png`` and
``plots/front_<device>.png``. HV: MODNAS normalisation (min-max, error >= max_error dropped, reference point
ones) over the table in benchmark mode, over every architecture any method measured on that device in
embedded mode. Bad input: one line on stderr, exit code 2, run FAILED.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modnas_ops.cli import add_config_arguments, bad_input, config_from_args, run_main
from modnas_ops.errors import UserError

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "baselines.yaml"
TARGET_FRACTION = 0.98  # without a MODNAS run, the target HV is this fraction of the table's true HV


@dataclasses.dataclass
class DeviceSetting:
    """One device: its evaluator and, in benchmark mode, the table normaliser and true HV."""

    name: str
    evaluator: Any
    normaliser: Any = None
    hv_true: float | None = None


def benchmark_settings(cfg: Any) -> tuple[list[DeviceSetting], dict[str, str]]:
    from modnas_ops.baselines import TableEvaluator
    from modnas_ops.benchmarks import load_table

    with bad_input("benchmark.table"):
        table = load_table(cfg.benchmark.table or None)
    devices = cfg.benchmark.devices or table.devices
    settings = []
    for d in devices:
        with bad_input("benchmark.devices", (ValueError,)):
            ev = TableEvaluator(table, d, cfg.benchmark.dataset)  # ValueError naming the known devices
        settings.append(DeviceSetting(d, ev, ev.normaliser(cfg.max_error), ev.true_hypervolume(cfg.max_error)))
    return settings, {"benchmark.path": str(table.path), "benchmark.rows": str(len(table))}


def embedded_settings(cfg: Any, space: Any) -> tuple[list[DeviceSetting], dict[str, str]]:
    import torch

    from modnas_ops import tracking
    from modnas_ops.baselines import MeasuredEvaluator, MemoisedEvaluator
    from modnas_ops.baselines.supernet_error import SupernetValidError, train_supernet_uniform
    from modnas_ops.data import get_dataset
    from profiling.export import export_onnx
    from profiling.latency import Candidate, DeviceConfig, device_description, time_candidates
    from profiling.memory import memory_counters_readable, peak_memory_mb

    e = cfg.embedded
    configs = [DeviceConfig.from_name(n, rounds=e.rounds, repeats=e.repeats, warmup=e.warmup) for n in e.devices]
    for c in configs:
        c.check_available()
        if e.memory and (c.runtime != "ort" or c.hardware != "cpu"):
            raise UserError(f"embedded.memory: peak memory is measured for onnxruntime CPU configs, not {c.name}")
    if e.memory and not memory_counters_readable():
        raise UserError("embedded.memory: this machine's peak-memory counters (VmHWM, clear_refs) cannot be read")
    device = torch.device(e.torch_device)
    data = get_dataset(e.dataset, seed=cfg.seeds[0], root=e.data_root or None)
    if e.supernet:
        supernet, source, losses = judge_supernet(cfg, space, data).to(device), e.supernet, []
    else:
        torch.manual_seed(cfg.seeds[0])
        supernet = space.build_supernet(data.input_shape, data.num_classes, C=e.C, N=e.N).to(device)
        losses = train_supernet_uniform(
            supernet, space, data.train, e.supernet_steps, device, batch_size=e.batch_size, lr=e.lr,
            seed=cfg.seeds[0], progress=True, optimizer=e.optimizer,
        )  # fmt: skip
        tracking.log_metric_series("supernet_loss", losses, range(1, len(losses) + 1))
        source = f"trained here ({e.supernet_steps} uniform steps)"
    hparams = {k: v for k, v in supernet.build_args.items() if k not in ("input_shape", "num_classes")}  # C, N, ...
    # the supernet error does not depend on the device: computed once per architecture
    error_fn = functools.cache(SupernetValidError(supernet, space, data.valid, device, e.eval_batch_size, data.task))

    def make_input(batch: int) -> torch.Tensor:
        return space.example_input(data.input_shape, batch)

    def network(genotype: tuple[int, ...]) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(space.seed_of(genotype))
            return space.build_network(genotype, data.input_shape, data.num_classes, **hparams).eval()

    def latency_fn(genotype: tuple[int, ...], config: Any) -> float:
        candidate = Candidate(space.to_string(genotype), network(genotype), tuple(data.input_shape),
                              make_input=make_input)  # fmt: skip
        return time_candidates([candidate], config)[0].median_ms

    def memory_fn(genotype: tuple[int, ...], config: Any) -> float:
        x = make_input(config.batch)
        payload = export_onnx(network(genotype), x, name=space.to_string(genotype))
        return peak_memory_mb(payload, x.numpy(), threads=config.threads)

    settings = []
    for c in configs:
        extra = {"memory_mb": functools.partial(memory_fn, config=c)} if e.memory else None
        ev = MeasuredEvaluator(error_fn, functools.partial(latency_fn, config=c), extra)
        settings.append(DeviceSetting(c.name, MemoisedEvaluator(ev) if e.share_measurements else ev))
    tags = {f"device.{c.name}": device_description(c) for c in configs}
    tags["supernet.source"] = source
    if losses:
        tags["supernet.final_loss"] = f"{sum(losses[-20:]) / len(losses[-20:]):.4f}"
    return settings, tags


def judge_supernet(cfg: Any, space: Any, data: Any) -> Any:
    """The supernet ``embedded.supernet`` names (the MODNAS run's ``model/supernet.pt`` or a file), checked
    against this setting's space, data and widths (UserError naming the field); the timed networks take its
    other hyper-parameters (e.g. mbv3's resolution)."""
    import tempfile

    from modnas_ops import tracking
    from modnas_ops.baselines.config import MODNAS_SUPERNET
    from modnas_ops.supernet_training import check_compatible, load_supernet

    e = cfg.embedded
    path = e.supernet
    if path == MODNAS_SUPERNET:
        where = f"embedded.supernet: run {cfg.modnas_run_id}'s model/supernet.pt"
        with bad_input(where, (OSError, tracking.MlflowException)):
            path = tracking.download_artifacts(cfg.modnas_run_id, "model/supernet.pt", tempfile.mkdtemp())
    net = load_supernet(path)
    fresh = space.build_supernet(data.input_shape, data.num_classes, C=e.C, N=e.N).build_args
    want = {k: fresh[k] for k in ("input_shape", "num_classes", "C", "N")}  # as this space records them
    check_compatible(net, space.name, want, "embedded.supernet")
    return net.eval()


def read_modnas(run_id: str, devices: Sequence[str]) -> dict[str, float]:
    """``hv/<device>`` of a MODNAS search run (``num_queries`` too, when it logged one)."""
    from modnas_ops import tracking

    metrics = tracking.get_run_metrics(run_id)
    found = {d: metrics[f"hv/{d}"] for d in devices if f"hv/{d}" in metrics}
    if not found:
        hv_keys = sorted(k for k in metrics if k.startswith("hv/"))
        raise UserError(
            f"MODNAS run {run_id} has no hv/<device> metric for {', '.join(devices)}; "
            f"it has: {', '.join(hv_keys) or 'no hv metrics'}"
        )
    if "num_queries" in metrics:
        found["num_queries"] = metrics["num_queries"]
    return found


def modnas_front_archs(run_id: str, space: Any) -> dict[str, list[tuple[int, ...]]]:
    """Per device, the architectures on the front of a MODNAS search run (its ``fronts/fronts.csv``)."""
    import tempfile

    import pandas as pd

    from modnas_ops import tracking

    with bad_input(f"modnas_run_id: run {run_id}", (ValueError, OSError, tracking.MlflowException)):
        path = tracking.download_artifacts(run_id, "fronts/fronts.csv", tempfile.mkdtemp())
        fronts = pd.read_csv(path)
    on = fronts[fronts["on_front"].astype(bool)]
    return {str(d): sorted({space.from_string(a) for a in g["arch"]}, key=space.index) for d, g in on.groupby("device")}


def hv_figure(device: str, curves: dict[str, Any], hv_true: float | None, modnas_hv: float | None) -> Any:
    """Mean HV over seeds (min-max band) against true evaluations, per method."""
    import numpy as np
    from matplotlib.figure import Figure

    from modnas_ops.baselines import pad_curves

    fig = Figure(figsize=(6.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    for i, (method, cs) in enumerate(curves.items()):
        C = pad_curves(cs)  # (S, L)
        steps = np.arange(1, C.shape[1] + 1)
        ax.plot(steps, C.mean(0), c=f"C{i}", lw=1.3, label=f"{method} ({len(cs)} seed{'s' * (len(cs) > 1)})")
        if len(cs) > 1:
            ax.fill_between(steps, C.min(0), C.max(0), color=f"C{i}", alpha=0.15, lw=0)
    if hv_true is not None:
        ax.axhline(hv_true, c="k", ls="--", lw=0.8, label=f"true front {hv_true:.4f}")
    if modnas_hv is not None:
        ax.axhline(modnas_hv, c="C3", ls=":", lw=1.2, label=f"MODNAS {modnas_hv:.4f}")
    ax.set_xlabel("true evaluations")
    ax.set_ylabel("hypervolume (normalised)")
    ax.set_title(device)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def front_figure(
    device: str, fronts: dict[str, Any], names: Sequence[str], max_error: float, true_front: Any = None
) -> Any:
    """Final Pareto front of each method (first seed) in objective units, error below ``max_error``."""
    import numpy as np
    from matplotlib.figure import Figure

    from modnas_ops.pareto import pareto_mask

    def clean(F: Any) -> Any:
        F = F[F[:, 0] < max_error]
        F = F[pareto_mask(F)] if len(F) else F
        return F[np.argsort(F[:, 1])]

    fig = Figure(figsize=(6.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    if true_front is not None:
        t = clean(true_front)
        ax.step(t[:, 1], t[:, 0], where="post", c="0.6", lw=1, label="true front")
    for i, (method, F) in enumerate(fronts.items()):
        F = clean(F)
        ax.step(F[:, 1], F[:, 0], where="post", c=f"C{i}", lw=1)
        ax.scatter(F[:, 1], F[:, 0], s=12, c=f"C{i}", label=f"{method} ({len(F)})")
    ax.set_xlabel(names[1])
    ax.set_ylabel(f"{names[0]} (%)")
    ax.set_title(device)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def log_child_run(cfg: Any, space: Any, device: str, history: Any, curve: Any, row: dict[str, Any]) -> None:
    """A nested run for one method x device x seed: ``hv`` per evaluation, summary metrics, history, front."""
    from modnas_ops import tracking
    from modnas_ops.baselines import get_baseline

    method, seed = history.method, history.seed
    tags = {"method": method, "device": device, "seed": str(seed), "mode": cfg.mode, "stop_reason": history.stop_reason}
    with tracking.start_run(f"{method}/{device}/seed{seed}", None, nested=True, tags=tags):
        hp = get_baseline(method, **cfg.options(method)).params()
        tracking.log_params({"method": method, "device": device, "seed": seed, **{f"hp.{k}": v for k, v in hp.items()}})
        tracking.log_metric_series("hv", curve, range(1, len(curve) + 1))
        tracking.log_metrics({k: row[k] for k in ("evaluations", "front_size", "wall_s", "evaluator_s")})
        if row["evaluations_to_target"] is not None:
            tracking.log_metrics({"evaluations_to_target": row["evaluations_to_target"]})
        rows = history.rows(space)
        tracking.log_table(rows, "history.csv")
        tracking.log_table([r for r in rows if r["on_front"]], "front.csv")


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default=None, help="NB201 table (.csv.gz) or its directory: benchmark mode")
    parser.add_argument("--modnas-run-id", default=None, help="MODNAS search run to compare with")
    parser.add_argument("--supernet", default=None,
                        help="embedded.supernet: 'modnas' (the MODNAS run's frozen judge) or a supernet file; "
                             "'' = the config's")  # fmt: skip
    add_config_arguments(parser, DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    if args.modnas_run_id:  # validated with the rest (embedded.supernet: modnas needs it)
        args.overrides.append(f"modnas_run_id={json.dumps(args.modnas_run_id)}")  # a YAML string
    if args.supernet:
        args.overrides.append(f"embedded.supernet={json.dumps(args.supernet)}")
    cfg = config_from_args(_config_class(), args)
    if args.benchmark:
        cfg = dataclasses.replace(
            cfg, mode="benchmark", benchmark=dataclasses.replace(cfg.benchmark, table=args.benchmark)
        )

    import numpy as np
    import torch

    from modnas_ops import tracking
    from modnas_ops.baselines import (
        Budget,
        aggregate_rows,
        baseline_class,
        common_normaliser,
        get_baseline,
        summary_row,
    )
    from modnas_ops.pareto import hypervolume
    from modnas_ops.spaces import get_search_space

    torch.set_num_threads(cfg.threads)
    space = get_search_space(cfg.space)
    budget = Budget(cfg.max_evaluations, cfg.max_seconds or None)
    with tracking.start_run(cfg.run_name, cfg, experiment=cfg.experiment) as parent:
        if cfg.mode == "benchmark":
            settings, tags = benchmark_settings(cfg)
        else:
            settings, tags = embedded_settings(cfg, space)
        tracking.set_tags({"mode": cfg.mode, **tags})
        names = settings[0].evaluator.objective_names
        for method in cfg.methods:
            need = baseline_class(method).min_objectives
            if need > len(names):
                raise UserError(f"{method} needs >= {need} objectives; this setting has {', '.join(names)}")
        modnas = read_modnas(cfg.modnas_run_id, [s.name for s in settings]) if cfg.modnas_run_id else {}
        # embedded mode: the MODNAS front's architectures judged by this evaluator too (same error, same measurements)
        embedded_front = cfg.modnas_run_id and cfg.mode == "embedded"
        modnas_archs = modnas_front_archs(cfg.modnas_run_id, space) if embedded_front else {}

        comparison: list[dict[str, Any]] = []
        for s in settings:
            histories = {
                (method, seed): get_baseline(method, **cfg.options(method)).run(
                    space, s.evaluator, budget, seed, progress=True
                )
                for method in cfg.methods
                for seed in cfg.seeds
            }
            judged = s.evaluator.evaluate(modnas_archs[s.name]) if modnas_archs.get(s.name) else None  # (n, M)
            normaliser = s.normaliser or common_normaliser(list(histories.values()), cfg.max_error, judged)
            if normaliser is None:
                raise UserError(
                    f"{s.name}: too few distinct objective values with error < {cfg.max_error} % for an HV"
                )
            modnas_hv = modnas.get(s.name)
            if modnas_hv is not None:
                target, target_source = modnas_hv, "modnas"
            elif s.hv_true is not None:
                target, target_source = TARGET_FRACTION * s.hv_true, f"{TARGET_FRACTION} x hv_true"
            else:
                target, target_source = None, "none"
            curves: dict[str, list[Any]] = {m: [] for m in cfg.methods}
            fronts: dict[str, Any] = {}
            rows = []
            for h in histories.values():
                row = summary_row(h, normaliser, target)
                curve = h.hv_curve(normaliser)
                curves[h.method].append(curve)
                fronts.setdefault(h.method, h.front()[1])
                log_child_run(cfg, space, s.name, h, curve, row)
                rows.append(row)
            norm_kind = "table (MODNAS)" if s.normaliser is not None else "all measured archs"
            for method in cfg.methods:
                comparison.append({
                    "device": s.name, "method": method,
                    **aggregate_rows([r for r in rows if r["method"] == method]),
                    "hv_true": s.hv_true, "target_hv": target, "target_source": target_source,
                    "hv_normalisation": norm_kind,
                })  # fmt: skip
                if s.hv_true:
                    comparison[-1]["hv_ratio"] = comparison[-1]["hv_mean"] / s.hv_true
            if judged is not None:
                live = judged[judged[:, 0] < cfg.max_error]
                comparison.append({
                    "device": s.name, "method": "modnas-front", "seeds": 1, "evaluations": len(judged),
                    "hv_mean": hypervolume(normaliser(live), normaliser.reference_point) if len(live) else 0.0,
                    "cost_note": "the MODNAS run's front on this device, judged by this evaluator",
                    "target_hv": target, "target_source": target_source, "hv_normalisation": "all measured archs",
                })  # fmt: skip
            if modnas_hv is not None:
                comparison.append({
                    "device": s.name, "method": "modnas", "seeds": 1,
                    "evaluations": modnas.get("num_queries"), "hv_mean": modnas_hv, "hv_true": s.hv_true,
                    "cost_note": "evaluations = accuracy queries of the whole search (all devices), if logged",
                    "hv_ratio": modnas_hv / s.hv_true if s.hv_true else None,
                    "target_hv": target, "target_source": target_source,
                    "hv_normalisation": "table (MODNAS)" if s.normaliser is not None else "the MODNAS run's own",
                })  # fmt: skip
            tracking.log_metrics({f"hv/{s.name}/{m}": float(np.mean([c[-1] for c in cs])) for m, cs in curves.items()})
            if cfg.plots:
                tracking.log_figure(hv_figure(s.name, curves, s.hv_true, modnas_hv), f"plots/hv_{s.name}.png")
                true_front = s.evaluator.true_front() if hasattr(s.evaluator, "true_front") else None
                tracking.log_figure(
                    front_figure(s.name, fronts, names, cfg.max_error, true_front), f"plots/front_{s.name}.png"
                )
        tracking.log_table(comparison, "comparison.csv")

    print(f"run {parent.info.run_id}: {cfg.mode} baselines, {cfg.max_evaluations} evaluations per run, "
          f"seeds {list(cfg.seeds)}")  # fmt: skip
    print(f"{'device':<16} {'method':<8} {'hv_mean':>8} {'hv_std':>7} {'evals':>6} {'to_target':>9}  target")
    for r in comparison:
        evals, to_target, target = r.get("evaluations"), r.get("evaluations_to_target_mean"), r["target_hv"]
        evals_s = "-" if evals is None else f"{evals:.0f}"
        to_target_s = "-" if to_target is None else f"{to_target:.0f}"
        target_s = "-" if target is None else f"{target:.4f} ({r['target_source']})"
        print(
            f"{r['device']:<16} {r['method']:<8} {r['hv_mean']:>8.4f} {r.get('hv_std') or 0.0:>7.4f} "
            f"{evals_s:>6} {to_target_s:>9}  {target_s}"
        )
    return 0


def _config_class() -> Any:
    from modnas_ops.baselines.config import BaselinesConfig

    return BaselinesConfig


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

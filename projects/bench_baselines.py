"""How many true evaluations each black-box baseline needs, per NB201 device, to reach the HV of one MODNAS
search, and what per-device baselines for every device cost against that one search.

    python -m projects.bench_baselines [--benchmark PATH] [--devices a,b] [--methods random,nsga2]
        [--seeds 0,1] [--max-evaluations 2000] [--method-options JSON]
        [--target-json FILE | --target-hv dev=hv,... | --modnas-run-id ID] [--modnas-queries N]

Target per device: the MODNAS search's ``hv/<device>`` (from ``--target-json`` {"hv": {device: hv},
"num_queries": N} or {device: hv}, ``--target-hv`` or an MLflow run); without one, 0.98 x the true front's HV
of the table (said in the output). HV: MODNAS normalisation over the table (error >= 90 % dropped, min-max,
reference point ones). A run stops once it reaches the target or after ``--max-evaluations``.

Cost accounting (printed): one baseline evaluation on device d = 1 accuracy query + 1 latency measurement on
d; per-device baselines run independently, so a device's count is its own (the union of distinct archs over
all devices is printed as the accuracy queries a shared accuracy cache would need). One MODNAS search =
its accuracy queries (one search for all devices: ``num_queries`` of the run, ``--modnas-queries``, else the
search's default query budget as a stated stand-in) + 10 anchor latency measurements per device + the
measurements of its measured shortlist on each device (``measurements`` of the targets file, or the run's
``measurements/<device>``). The MetaPredictor's pre-training latencies on the train devices are not counted
(one-off, shared by all searches). ``x shared`` is the stricter ratio: a baseline's cost with one accuracy
cache shared across its per-device runs (each architecture's accuracy paid once) over MODNAS's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from modnas_ops.baselines import TableEvaluator, evaluations_to_reach, get_baseline, run_to_target  # noqa: E402
from modnas_ops.benchmarks import load_table  # noqa: E402

DEFAULT_METHODS = ("random", "local", "nsga2", "linas", "motpe")
STAND_IN_FRACTION = 0.98


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default=None, help="NB201 table or its directory (default: $MODNAS_NB201_TABLE)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--devices", default="", help="comma-separated; default: all devices of devices.json")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--max-evaluations", type=int, default=2000, help="cap per method x device x seed")
    p.add_argument("--method-options", default="{}", help='JSON, e.g. {"linas": {"predicted_evaluations": 2000}}')
    p.add_argument("--target-json", default=None, help='{"hv": {device: hv}, "num_queries": N} or {device: hv}')
    p.add_argument("--target-hv", default="", help="device=hv,device=hv,...")
    p.add_argument("--modnas-run-id", default=None, help="MLflow run of a MODNAS search (hv/<device>, num_queries)")
    p.add_argument("--modnas-queries", type=int, default=None, help="accuracy queries of that MODNAS search")
    return p.parse_args(argv)


def modnas_targets(args: argparse.Namespace) -> tuple[dict[str, float], float | None, dict[str, float], str]:
    """(hv per device, accuracy queries or None, shortlist measurements per device, where they came from)."""
    if args.target_json:
        d = json.loads(Path(args.target_json).read_text())
        meta = {"num_queries", "measurements", "seeds", "config"}
        hv = d["hv"] if isinstance(d.get("hv"), dict) else {k: v for k, v in d.items() if k not in meta}
        measured = {k: float(v) for k, v in (d.get("measurements") or {}).items()}
        return {k: float(v) for k, v in hv.items()}, d.get("num_queries"), measured, f"file {args.target_json}"
    if args.target_hv:
        pairs = [item.split("=", 1) for item in args.target_hv.split(",") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise SystemExit(f"--target-hv must look like device=hv,device=hv; got {args.target_hv!r}")
        return {k.strip(): float(v) for k, v in pairs}, None, {}, "--target-hv"
    if args.modnas_run_id:
        from modnas_ops import tracking

        metrics = tracking.get_run_metrics(args.modnas_run_id)

        def per_device(prefix: str) -> dict[str, float]:
            return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix) and k.count("/") == 1}

        where = f"MLflow run {args.modnas_run_id}"
        return per_device("hv/"), metrics.get("num_queries"), per_device("measurements/"), where
    return {}, None, {}, "none"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    table = load_table(args.benchmark or None)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] or list(table.devices)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    options: dict[str, dict[str, Any]] = json.loads(args.method_options)
    for m in methods:  # bad names / options / objective counts fail before any work, in one line
        try:
            baseline = get_baseline(m, **options.get(m, {}))
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if baseline.min_objectives > 2:
            raise SystemExit(
                f"error: baseline {m!r} needs at least {baseline.min_objectives} objectives; the NB201 table "
                "gives 2 (error, latency_ms)"
            )
    targets, queries, measured, source = modnas_targets(args)
    if args.modnas_queries is not None:
        queries, q_source = float(args.modnas_queries), "--modnas-queries"
    elif queries is not None:
        q_source = source
    else:
        from modnas_ops.search import BenchmarkConfig

        queries, q_source = float(BenchmarkConfig().query_budget), "STAND-IN: the search's default query_budget"

    print(f"table {table.path} ({len(table)} archs, {args.dataset}); {len(devices)} devices; methods "
          f"{', '.join(methods)}; seeds {seeds}; cap {args.max_evaluations} evaluations per run")  # fmt: skip
    if targets:
        print(f"target HV per device: the MODNAS search's hv/<device> ({source})")
    else:
        print(f"no MODNAS HV given: target = {STAND_IN_FRACTION} x hv_true of the table per device (stand-in)")
    print(f"MODNAS accuracy queries: {queries:.0f} ({q_source})")
    missing = [d for d in devices if targets and d not in targets]
    if missing:
        print(f"no MODNAS HV for {', '.join(missing)}: those devices use {STAND_IN_FRACTION} x hv_true")

    width = max(len(m) for m in methods) + 2
    print(f"\n{'device':<15}{'split':<6}{'hv_true':>8}{'target':>8}  " + "".join(f"{m:>{width + 6}}" for m in methods))
    # per device: (mean evaluations over seeds, unreached seeds counted at the cap; whether any was unreached)
    per_method: dict[str, list[tuple[float, bool]]] = {m: [] for m in methods}
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    unions: dict[tuple[str, int], set[tuple[int, ...]]] = {(m, seed): set() for m in methods for seed in seeds}
    for d in devices:
        ev = TableEvaluator(table, d, args.dataset)
        norm, hv_true = ev.normaliser(), ev.true_hypervolume()
        target = targets.get(d, STAND_IN_FRACTION * hv_true)
        cells = []
        for m in methods:
            needed = []
            for seed in seeds:
                t0 = time.perf_counter()
                h = run_to_target(get_baseline(m, **options.get(m, {})), table.space, ev, norm, target,
                                  args.max_evaluations, seed)  # fmt: skip
                seconds[m] += time.perf_counter() - t0
                n = evaluations_to_reach(h.hv_curve(norm), target)
                needed.append(n)
                unions[m, seed].update(h.genotypes[: n or h.num_evaluations])
            reached = [n for n in needed if n is not None]
            mean = float(np.mean([args.max_evaluations if n is None else n for n in needed]))
            per_method[m].append((mean, len(reached) < len(needed)))
            cells.append(
                f"{mean:.0f}" if len(reached) == len(needed) else f">={mean:.0f}({len(reached)}/{len(needed)})"
            )
        head = f"{d:<15}{table.split(d):<6}{hv_true:>8.4f}{target:>8.4f}  "
        print(head + "".join(f"{c:>{width + 6}}" for c in cells), flush=True)

    num_anchors = table.space.num_anchors
    shortlist = sum(measured.get(d, 0.0) for d in devices)
    modnas_cost = queries + num_anchors * len(devices) + shortlist
    print(f"\nCost for all {len(devices)} devices (mean over seeds; 1 evaluation = 1 accuracy query + 1 latency "
          "measurement on its device):")  # fmt: skip
    print(f"{'method':<{width}}{'accuracy q.':>12}{'latency m.':>12}{'total':>10}{'x MODNAS':>10}{'wall s':>9}"
          f"{'shared acc. q.':>16}{'x shared':>10}")  # fmt: skip
    for m in methods:
        open_ = sum(lower for _, lower in per_method[m])
        total = sum(v for v, _ in per_method[m])
        bound = ">=" if open_ else ""
        note = f"  ({open_} devices not reached in some seed: counted at the cap, a lower bound)" if open_ else ""
        shared = np.mean([len(unions[m, seed]) for seed in seeds])
        print(f"{m:<{width}}{bound + f'{total:.0f}':>12}{bound + f'{total:.0f}':>12}{bound + f'{2 * total:.0f}':>10}"
              f"{bound + f'{2 * total / modnas_cost:.1f}':>10}{seconds[m]:>9.1f}{shared:>16.0f}"
              f"{bound + f'{(shared + total) / modnas_cost:.1f}':>10}{note}")  # fmt: skip
    hw = num_anchors * len(devices) + shortlist
    print(
        f"{'MODNAS':<{width}}{queries:>12.0f}{hw:>12.0f}{modnas_cost:>10.0f}{1.0:>10.1f}{'':>9}{'':>16}{1.0:>10.1f}"
        f"  (one search: {queries:.0f} accuracy queries + {num_anchors} anchors x {len(devices)} devices + "
        f"{shortlist:.0f} shortlist measurements)"
    )
    print("shared acc. q.: distinct archs a method evaluated over all devices up to each target, i.e. its accuracy"
          " queries if one accuracy cache were shared across its per-device runs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

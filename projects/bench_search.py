"""Benchmark: MODNAS search in benchmark mode on the NB201 table, per-device hypervolume ratio and wall time.

    MODNAS_NB201_TABLE=.../nb201_cifar10_latency.csv.gz python -m projects.bench_search [options]

Runs ``projects/configs/search_nb201.yaml`` (or ``--config``): accuracy surrogate from at most
``query_budget`` table accuracies, MetaPredictor fitted on the 13 train devices (or ``--predictor FILE``),
hypernetwork trained with MGD over the train devices, 6 test devices zero-shot. Per device, the 24 preference
rays' argmax architectures are judged with the table's TRUE error and latency under the MODNAS
normalisation: hv_ratio = HV(found front) / HV(true front). ``model_opt`` is the ratio reached by the per-ray
optima of the search's own models (surrogate + predictor) over all 15,625 architectures: the ceiling of a
perfect hypernetwork, which separates model error from search error; ``pred_opt`` the same with the TRUE
error and predicted latency: the ceiling the MetaPredictor alone sets.
Targets (brief): hv_ratio >= 0.98 on every train device, >= 0.97 on every test device.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from modnas_ops.config import load_config

TARGET_TRAIN, TARGET_TEST = 0.98, 0.97
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "search_nb201.yaml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default=None, help="NB201 table (default: $MODNAS_NB201_TABLE)")
    p.add_argument("--predictor", default=None, help="saved MetaPredictor (.pt); default: fit one here")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="search config YAML (projects/search.py format)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--targets-json", default=None, metavar="FILE",
                   help="write hv per device (seed mean) + num_queries for bench_baselines")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a search field, e.g. --set search.epochs=4")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from modnas_ops.benchmarks import load_table
    from modnas_ops.search import run_search
    from projects.search import SearchRunConfig

    table = load_table(args.benchmark or None)
    inject = {"table": table}
    if args.predictor:
        from modnas_ops.predictor import MetaPredictor

        inject["predictor"] = MetaPredictor.load(args.predictor)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    summary = []
    hv_runs: list[dict[str, float]] = []
    queries: list[float] = []
    for seed in seeds:
        cfg = load_config(
            SearchRunConfig,
            args.config,
            ["search.mode=benchmark", f"search.seed={seed}", "search.checkpoint_dir=", *args.overrides],
        ).search
        start = time.perf_counter()
        res = run_search(cfg, progress=False, **inject)
        wall = time.perf_counter() - start
        m = res.metrics
        print(f"\nseed {seed}: {cfg.epochs} epochs x {cfg.steps_per_epoch} steps, table {table.path}")
        print(f"{'device':<16} {'split':<5} {'hv':>7} {'hv_true':>7} {'hv_ratio':>8} {'model_opt':>9} {'pred_opt':>8}")
        ok = True
        for d in res.devices:
            ratio = m[f"hv_ratio/{d.name}"]
            target = TARGET_TRAIN if d.split == "train" else TARGET_TEST
            flag = "" if ratio >= target else "  < target"
            ok &= ratio >= target
            print(
                f"{d.name:<16} {d.split:<5} {m[f'hv/{d.name}']:>7.4f} {m[f'hv_true/{d.name}']:>7.4f} "
                f"{ratio:>8.4f} {m.get(f'model_optimum_hv_ratio/{d.name}', float('nan')):>9.4f} "
                f"{m.get(f'predictor_optimum_hv_ratio/{d.name}', float('nan')):>8.4f}{flag}"
            )
        for split in ("train", "test"):
            print(
                f"hv_ratio {split}: min {m[f'hv_ratio_min/{split}']:.4f}, "
                f"mean {m[f'hv_ratio_mean/{split}']:.4f} "
                f"(model optimum: min {m[f'model_optimum_hv_ratio_min/{split}']:.4f}, "
                f"mean {m[f'model_optimum_hv_ratio_mean/{split}']:.4f})"
            )
        print(f"accuracy queries: {int(m['num_queries'])} of {int(m['query_budget'])}")
        times = {k.split("/")[1]: v for k, v in m.items() if k.startswith("time/")}
        print(
            f"wall time {wall:.1f} s: predictor {times.get('predictor_s', 0):.1f} s, surrogate + queries "
            f"{times.get('surrogate_s', 0):.1f} s, "
            f"search + evaluation {wall - times.get('setup_s', 0):.1f} s "
            f"({cfg.threads} thread(s))"
        )
        print("all targets met" if ok else "some devices below target")
        hv_runs.append({d.name: m[f"hv/{d.name}"] for d in res.devices})
        queries.append(m["num_queries"])
        summary.append((m["hv_ratio_min/train"], m["hv_ratio_min/test"], m["hv_ratio_mean/train"], wall))
    if len(summary) > 1:
        a = np.asarray(summary)
        print(
            f"\nover {len(seeds)} seeds: train min {a[:, 0].mean():.4f} +- {a[:, 0].std():.4f}, "
            f"test min {a[:, 1].mean():.4f} +- {a[:, 1].std():.4f}, train mean {a[:, 2].mean():.4f}, "
            f"wall {a[:, 3].mean():.0f} s"
        )
    if args.targets_json:
        targets = {
            "hv": {name: float(np.mean([run[name] for run in hv_runs])) for name in hv_runs[0]},
            "num_queries": float(np.mean(queries)),
            "seeds": seeds,
            "config": args.config,
        }
        Path(args.targets_json).write_text(json.dumps(targets, indent=2))
        print(f"wrote the MODNAS targets (hv per device, mean over {len(seeds)} seed(s)) to {args.targets_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: MetaPredictor vs the LINAS per-device baselines (ridge, SVR, stacked) on a space's latency table.

    MODNAS_NB201_TABLE=.../nb201_cifar10_latency.csv.gz python -m projects.bench_predictor [options]
    MODNAS_MBV3_TABLE=.../ofa_latency.csv.gz python -m projects.bench_predictor --space mbv3 [options]

The table of ``--space`` is ``--benchmark`` or ``$MODNAS_<SPACE>_TABLE`` (:mod:`modnas_ops.latency_table`).

On NB201, the MetaPredictor is fitted once on the 13 train devices (architectures split 70/10/20 by architecture) and
scored on the held-out test architectures of every device: train devices (unseen archs) and the 6 test
devices zero-shot, from their 10 anchor latencies alone. The baselines are fitted PER DEVICE on N archs of the
training split *measured on that device*, for each N in --sizes, and scored on the same test archs; for the
zero-shot test devices this means they use measurements the MetaPredictor never sees. ``--ceiling`` adds a
per-device gradient-boosting model (``gbm``) fitted on ALL of the device's training-split archs (~10.9k):
a practical estimate of how much of each device's ranking is predictable from the architecture at all.
Targets (brief): Kendall tau >= 0.92 on train devices (unseen archs), >= 0.88 on each test device (NB201);
>= 0.90 zero-shot on OFA's titan_rtx_64 (mbv3; ``--target-test 0.9``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modnas_ops.latency_table import load_latency_table
from modnas_ops.predictor import (
    FitConfig,
    available_predictor_nets,
    evaluate_predictor,
    fit_meta_predictor,
    measurements_from_table,
    split_architectures,
)
from modnas_ops.predictor_baselines import (
    TRAINING_SIZES,
    available_baselines,
    fit_baseline,
    kendall_tau,
    learning_curve,
    predict_baseline,
)

TAU_TRAIN, TAU_TEST = 0.92, 0.88


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="nb201", help="registered space whose latency table is read")
    p.add_argument("--benchmark", default=None, help="the table (default: $MODNAS_<SPACE>_TABLE)")
    p.add_argument("--target-train", type=float, default=TAU_TRAIN, help="Kendall tau target, train devices")
    p.add_argument("--target-test", type=float, default=TAU_TEST, help="Kendall tau target, zero-shot devices")
    p.add_argument("--net", default=FitConfig.net, choices=available_predictor_nets())
    p.add_argument("--hidden", type=int, default=FitConfig.hidden)
    p.add_argument("--layers", type=int, default=FitConfig.layers)
    p.add_argument("--ensemble", type=int, default=FitConfig.ensemble)
    p.add_argument("--epochs", type=int, default=FitConfig.epochs)
    p.add_argument("--patience", type=int, default=FitConfig.patience)
    p.add_argument("--lr", type=float, default=FitConfig.lr)
    p.add_argument("--mixup", type=float, default=FitConfig.mixup)
    p.add_argument("--meta-archs", type=int, default=0, help="train archs per device for the MetaPredictor (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="split and training seed")
    p.add_argument("--sizes", default=",".join(map(str, TRAINING_SIZES)), help="baseline training sizes")
    p.add_argument("--baselines", default="ridge,svr,stacked", help=f"of {available_baselines()}; '' = skip")
    p.add_argument("--ceiling", action="store_true", help="add per-device gbm on all training archs (~1 min)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    table = load_latency_table(args.space, args.benchmark or None)
    devices = measurements_from_table(table)
    split = split_architectures(table.space, devices, (0.7, 0.1, 0.2), seed=args.seed)
    cfg = FitConfig(
        net=args.net,
        hidden=args.hidden,
        layers=args.layers,
        ensemble=args.ensemble,
        epochs=args.epochs,
        patience=args.patience,
        lr=args.lr,
        mixup=args.mixup,
        max_train_archs=args.meta_archs,
        seed=args.seed,
    )
    print(f"table {table.path} ({len(table)} archs); split train/valid/test archs "
          f"{len(split.train)}/{len(split.valid)}/{len(split.test)} (seed {args.seed})")  # fmt: skip
    print(f"MetaPredictor: {cfg}")
    result = fit_meta_predictor(devices, cfg, split=split, space=table.space, progress=True)
    print(f"MetaPredictor training: {result.wall_time_s:.1f} s wall ({torch.get_num_threads()} thread(s)), "
          f"best epoch {result.best_epoch}, {sum(result.num_train_archs.values())} (arch, device) pairs")  # fmt: skip
    t0 = time.perf_counter()
    meta = {r["device"]: r for r in evaluate_predictor(result.model, devices, split, "test")}
    eval_s = time.perf_counter() - t0

    names = [n for n in args.baselines.split(",") if n]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    base: dict[tuple[str, str, int], dict[str, float]] = {}
    base_s = 0.0
    ceiling: dict[str, float] = {}
    sp = table.space
    for d in devices if names or args.ceiling else ():
        tr = split.rows(sp, d.genotypes, "train")
        te = split.rows(sp, d.genotypes, "test")
        y = d.values["latency_ms"]
        t1 = time.perf_counter()
        for r in learning_curve(sp, d.genotypes[tr], y[tr], d.genotypes[te], y[te], sizes, names, args.seed):
            base[(d.name, str(r["baseline"]), int(r["num_archs"]))] = r  # type: ignore[assignment]
        if args.ceiling:
            model = fit_baseline("gbm", sp, d.genotypes[tr], y[tr])
            ceiling[d.name] = kendall_tau(predict_baseline(model, sp, d.genotypes[te]), y[te])
        base_s += time.perf_counter() - t1

    n_max = max(sizes) if names else 0
    print(f"\nPer device on the {len(split.test)} test archs (tau = Kendall tau-b, rho = Spearman, MAPE %)")
    head = f"{'device':<15} {'split':<5} | {'meta tau':>8} {'rho':>6} {'MAPE':>7} |"
    head += "".join(f" {n + '@' + str(n_max) + ' tau':>16}" for n in names)
    head += f" {'gbm@all tau':>12}" if ceiling else ""
    print(head)
    for split_name in ("train", "test"):
        for d in (d for d in devices if d.split == split_name):
            m = meta[d.name]
            target = args.target_train if split_name == "train" else args.target_test
            flag = "" if m["kendall_tau"] >= target else " <"
            line = f"{d.name:<15} {split_name:<5} | {m['kendall_tau']:>8.3f} {m['spearman']:>6.3f} {m['mape']:>7.1f} |"
            line += "".join(f" {base[(d.name, n, n_max)]['kendall_tau']:>16.3f}" for n in names)
            line += f" {ceiling[d.name]:>12.3f}" if ceiling else ""
            print(line + flag)
    print(f"('<': below the target, {args.target_train} train / {args.target_test} test devices)")
    for split_name in ("train", "test"):
        taus = [meta[d.name]["kendall_tau"] for d in devices if d.split == split_name]
        rhos = [meta[d.name]["spearman"] for d in devices if d.split == split_name]
        print(f"MetaPredictor mean over {split_name} devices: tau {np.mean(taus):.3f} (min {np.min(taus):.3f}), "
              f"rho {np.mean(rhos):.3f}")  # fmt: skip
        if ceiling:
            own = [ceiling[d.name] for d in devices if d.split == split_name]
            print(f"  per-device gbm on all of each device's training archs: tau {np.mean(own):.3f} "
                  f"(min {np.min(own):.3f})")  # fmt: skip

    if names:
        print("\nBaselines: mean Kendall tau over devices vs archs measured per device (fitted per device;")
        print("for the test devices these use that device's own measurements, unlike the zero-shot MetaPredictor)")
        print(f"{'baseline':<10} {'N':>5} {'train devs':>10} {'test devs':>10}")
        for n in names:
            for size in sizes:
                row = f"{n:<10} {size:>5}"
                for split_name in ("train", "test"):
                    taus = [base[(d.name, n, size)]["kendall_tau"] for d in devices if d.split == split_name]
                    row += f" {np.mean(taus):>10.3f}"
                print(row)
    if names or ceiling:
        print(f"baselines: {base_s:.1f} s for {len(devices)} devices ({len(sizes)} sizes x {len(names)} models"
              f"{' + gbm on all training archs' if ceiling else ''})")  # fmt: skip
    print(f"MetaPredictor: fit {result.wall_time_s:.1f} s, evaluation {eval_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: is the supernet search's front a real front? Checked against standalone training.

    python -m projects.bench_supernet [--config YAML] [--set key=value ...] [--reference 100]

1. A reference set (the space's anchors + ``--reference`` random live architectures) is trained standalone
   with one recipe (``modnas_ops.standalone``; cached in ``--cache-dir`` and logged as an MLflow dataset, so
   later runs reuse it), and 5 of them with 3 seeds (seed-to-seed spread against the spread across archs).
2. The reference set is timed with onnxruntime on this machine's CPU configs; that table is the search's
   profiling table (anchors included), so its MetaPredictor sees measured latencies.
3. The search of ``--config`` (the main job's by default) runs in supernet mode.
4. Kendall tau between the supernet's inherited error (valid split) and the standalone test error over the
   reference set; each device's found front re-evaluated honestly — its architectures trained standalone
   with the same recipe and timed again together with the reference set — and its hypervolume relative to
   the reference set's own front (normalised over the reference set, MODNAS rules); the cost of both.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from modnas_ops.cli import run_main

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "search.yaml"
TARGETS = {"tau": 0.6, "hv_ratio": 0.95, "front_size": 6}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="search entry config (projects/search.py)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--reference", type=int, default=100, help="random live architectures besides the anchors")
    p.add_argument("--reference-seed", type=int, default=12345)
    p.add_argument("--devices", default="cpu-ort-t1-b1,cpu-ort-t1-b32", help="CPU device configs to time on")
    p.add_argument("--rounds", type=int, default=200, help="timing rounds per architecture and config")
    p.add_argument("--steps", type=int, default=400, help="standalone training steps (the recipe)")
    p.add_argument("--recipe", action="append", default=[], metavar="KEY=VALUE",
                   help="further standalone recipe fields (modnas_ops.standalone.TrainRecipe), e.g. batch_size=16; "
                        "optimizer and lr default to the config's supernet weight_optimizer and weight_lr")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure peak inference memory (default: when the config's quick profile does)")
    p.add_argument("--cache-dir", default="outputs/bench_supernet")
    p.add_argument("--no-mlflow", action="store_true", help="print only (no MLflow run)")
    return p.parse_args(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = _parse(argv)
    from modnas_ops.config import load_config
    from projects.search_job import SearchRunConfig

    cfg = load_config(SearchRunConfig, args.config, list(args.overrides))
    if cfg.search.mode != "supernet":
        from modnas_ops.errors import UserError

        raise UserError("search.mode: bench_supernet checks a supernet search")

    import numpy as np
    import pandas as pd
    import torch

    from modnas_ops.data import get_dataset
    from modnas_ops.objectives import reference_normaliser
    from modnas_ops.pareto import MODNAS_MAX_ERROR, hypervolume, pareto_mask
    from modnas_ops.predictor_baselines import kendall_tau
    from modnas_ops.search import run_search
    from modnas_ops.spaces import get_search_space
    from modnas_ops.standalone import TrainRecipe, cache_key, standalone_errors
    from modnas_ops.supernet_training import valid_error
    from profiling.latency import measure_modules
    from profiling.memory import measure_memory_modules

    torch.set_num_threads(1)
    s = cfg.search.supernet
    space = get_search_space(cfg.search.space)
    data = get_dataset(s.dataset, seed=cfg.search.seed, root=s.data_root or None)
    network = s.network_hparams()
    recipe = load_config(TrainRecipe, None, [f"steps={args.steps}", f"optimizer={s.weight_optimizer}",
                                             f"lr={s.weight_lr}", *args.recipe])  # fmt: skip
    devices = [d for d in args.devices.split(",") if d]
    memory = bool(cfg.quick_profile_options.get("memory", False)) if args.memory is None else args.memory
    unit = data.task.error_unit

    def make_input(batch: int) -> torch.Tensor:
        return space.example_input(data.input_shape, batch)
    key = cache_key(space, s.dataset, network, recipe)
    cache = Path(args.cache_dir) / f"standalone-{space.name}-{s.dataset}-{key}.csv"

    rng = np.random.default_rng(args.reference_seed)
    anchors = [space.canonical(g) for g in space.anchors()]
    reference = list(anchors)
    while len(reference) < len(anchors) + args.reference:
        g = space.canonical(space.sample(rng))
        if g not in reference and not space.constant_output(g):
            reference.append(g)
    print(f"{space.name} on {s.dataset}, network {network}, recipe {recipe}")
    print(f"reference set: {len(anchors)} anchors + {args.reference} random live architectures; cache {cache}")

    t0 = time.perf_counter()
    ref = standalone_errors(space, reference, data, network, recipe, cache=cache)
    ref_err = np.array([ref[(g, recipe.seed)][0] for g in reference])
    train_s = sum(ref[(g, recipe.seed)][1] for g in reference)
    print(f"standalone: error {ref_err.min():.3g}..{ref_err.max():.3g} ({unit}; train time {train_s:.0f} s of compute, "
          f"{time.perf_counter() - t0:.0f} s now)")  # fmt: skip
    spread = {}
    for seed in (1, 2):
        other = standalone_errors(space, reference[:5], data, network, replace(recipe, seed=seed),
                                  cache=cache, progress=False)  # fmt: skip
        for (g, _), (e, _) in other.items():
            spread.setdefault(g, [ref[(g, recipe.seed)][0]]).append(e)
    seed_std = float(np.mean([np.std(v) for v in spread.values()]))
    print(f"seed-to-seed std (5 archs x 3 seeds): {seed_std:.3g}; across the reference set: "
          f"{ref_err.std():.3g} ({unit})")  # fmt: skip

    def fresh(g: tuple[int, ...]) -> torch.nn.Module:
        torch.manual_seed(0)
        return space.build_network(g, data.input_shape, data.num_classes, **network).eval()

    t1 = time.perf_counter()
    ref_models = {space.to_string(g): fresh(g) for g in reference}
    lat = measure_modules(ref_models, data.input_shape, devices, make_input=make_input, rounds=args.rounds,
                          max_seconds=120.0)  # fmt: skip
    mem = measure_memory_modules(ref_models, make_input, devices) if memory else {}
    profile_s = time.perf_counter() - t1
    rows = [
        {"space": space.name, "arch": space.to_string(g), "device": d, "role": "anchor" if g in anchors else "sample",
         "latency_ms": lat[(space.to_string(g), d)].median_ms,
         **({"memory_mb": mem[(space.to_string(g), d)]} if memory else {})}
        for d in devices for g in reference
    ]  # fmt: skip
    for d in devices:
        ms = np.array([lat[(space.to_string(g), d)].median_ms for g in reference])
        print(f"latency on {d}: {ms.min():.4f}..{ms.max():.4f} ms ({ms.max() / ms.min():.1f}x)")
    cheapest_live = reference[int(np.argmin([lat[(space.to_string(g), devices[0])].median_ms for g in reference]))]
    cheap_err = ref[(cheapest_live, recipe.seed)][0]
    print(f"cheapest live reference arch {space.to_string(cheapest_live)}: error {cheap_err:.3g}; best "
          f"{ref_err.min():.3g} ({unit})")  # fmt: skip

    t2 = time.perf_counter()
    result = run_search(cfg.search, progress=True, data=data, profile_rows=rows)
    search_s = time.perf_counter() - t2
    inherited = valid_error(result.supernet, reference, *data.valid.tensors, task=data.task)
    tau = kendall_tau(inherited, ref_err)
    print(f"search: {search_s:.0f} s; Kendall tau(inherited valid error, standalone test error) = {tau:.3f} "
          f"over {len(reference)} archs")  # fmt: skip

    fronts = result.fronts
    on_cpu = fronts["on_front"] & fronts["device"].isin(devices)  # the fronts re-evaluated here, not every device's
    found = sorted({space.from_string(a) for a in fronts.loc[on_cpu, "arch"]}, key=space.index)
    t3 = time.perf_counter()
    found_err = standalone_errors(space, found, data, network, recipe, cache=cache)
    all_models = {space.to_string(g): fresh(g) for g in dict.fromkeys([*reference, *found])}
    lat2 = measure_modules(all_models, data.input_shape, devices, make_input=make_input, rounds=args.rounds,
                           max_seconds=120.0)  # fmt: skip
    new = {a: m for a, m in all_models.items() if a not in ref_models}
    mem2 = {**mem, **measure_memory_modules(new, make_input, devices)} if memory else {}
    reeval_s = time.perf_counter() - t3
    metrics: dict[str, float] = {"tau": tau, "seed_std": seed_std, "reference_std": float(ref_err.std()),
                                 "search_s": search_s, "reference_train_s": train_s, "profile_s": profile_s,
                                 "reeval_s": reeval_s}  # fmt: skip
    print(f"\n{'device':<16}{'found':>6}{'front':>6}{'hv':>8}{'hv_ref':>8}{'ratio':>8}")
    for d in devices:
        dev_rows = fronts[(fronts["device"] == d) & fronts["on_front"]]
        archs = sorted({space.from_string(a) for a in dev_rows["arch"]}, key=space.index)
        def point(g: tuple[int, ...], err: float, dev: str = d) -> list[float]:  # [error, latency(, memory)]
            a = space.to_string(g)
            return [err, lat2[(a, dev)].median_ms, *([mem2[(a, dev)]] if memory else [])]

        R = np.array([point(g, e) for g, e in zip(reference, ref_err, strict=True)])
        F = np.array([point(g, found_err[(g, recipe.seed)][0]) for g in archs]).reshape(-1, R.shape[1])
        norm = reference_normaliser(R, F)
        live_f, live_r = F[F[:, 0] < MODNAS_MAX_ERROR], R[R[:, 0] < MODNAS_MAX_ERROR]
        hv_f = hypervolume(norm(live_f), norm.reference_point) if len(live_f) else 0.0
        hv_r = hypervolume(norm(live_r), norm.reference_point)
        size = int(pareto_mask(F).sum()) if len(F) else 0
        metrics.update({f"hv_ratio/{d}": hv_f / hv_r, f"front_size/{d}": float(size), f"found_archs/{d}": len(archs)})
        print(f"{d:<16}{len(archs):>6}{size:>6}{hv_f:>8.4f}{hv_r:>8.4f}{hv_f / hv_r:>8.4f}")
    print(f"\ncost: reference training {train_s:.0f} s, profiling {profile_s:.0f} s, search {search_s:.0f} s, "
          f"re-evaluation {reeval_s:.0f} s")  # fmt: skip
    ok = (tau >= TARGETS["tau"]) and all(metrics[f"hv_ratio/{d}"] >= TARGETS["hv_ratio"] for d in devices) and all(
        metrics[f"front_size/{d}"] >= TARGETS["front_size"] for d in devices
    )
    print(("targets met" if ok else "targets NOT met") + f": tau >= {TARGETS['tau']}, hv_ratio >= "
          f"{TARGETS['hv_ratio']}, >= {TARGETS['front_size']} non-dominated re-evaluated archs per device")  # fmt: skip
    if not args.no_mlflow:
        from modnas_ops import tracking

        with tracking.start_run("bench_supernet", cfg, experiment="bench_supernet"):
            tracking.log_metrics(metrics)
            table = pd.DataFrame({"arch": [space.to_string(g) for g in reference], "standalone_error": ref_err,
                                  "inherited_error": inherited})  # fmt: skip
            tracking.log_table(table, "reference/reference.csv")
            tracking.log_dataset(table, name=cache.stem, source=str(cache.resolve()), context="reference")
            tracking.log_table(fronts, "fronts/fronts.csv")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

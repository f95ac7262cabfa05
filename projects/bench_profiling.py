"""Profiling benchmark: subnets profiled per minute per device config, and rank agreement of two campaigns.

    python -m projects.bench_profiling [--archs 40] [--devices cpu-ort-t1-b1,cpu-ort-t2-b1,cpu-ort-t1-b32]
                                         [--repeats R] [--rounds R] [--exporters] [--keep DIR]

Runs two independent campaigns (separate processes, fresh output files) over the same architectures
(anchors + ``--archs`` samples, same seed) and prints, per device config: subnets/min of each campaign
(export + session + timing time of that config, plus its share of network builds), median CV, and Kendall's
tau between the two campaigns' median latencies. Targets: >= 30 subnets/min/config, tau >= 0.95
(digits-sized NB201 network). ``--exporters`` first times both ONNX exporters on the same network (the
figures quoted in ``profiling/export.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiling.config import CampaignConfig  # noqa: E402

DEFAULTS = CampaignConfig(add_cuda_devices=False)
TARGET_RATE = 30.0
TARGET_TAU = 0.95


def _worker(args: argparse.Namespace) -> None:
    from profiling.campaign import run_campaign

    cfg = CampaignConfig(
        devices=tuple(args.devices.split(",")),
        add_cuda_devices=False,
        num_archs=args.archs,
        seed=args.seed,
        repeats=args.repeats,
        rounds=args.rounds,
        warmup=args.warmup,
        chunk_size=args.chunk_size,
        max_seconds=args.max_seconds,
        output=args.worker,
    )
    res = run_campaign(cfg, progress=False)
    summary = {
        name: {
            "profiled": s.profiled,
            "seconds": s.seconds,
            "rate": s.subnets_per_min,
            "median_cv": s.median_cv,
        }
        for name, s in res.devices.items()
    }
    Path(args.worker).with_suffix(".json").write_text(
        json.dumps({"devices": summary, "seconds": res.seconds})
    )


def _exporters(n: int) -> None:
    import numpy as np
    import torch

    from modnas_ops.spaces import get_search_space
    from profiling.export import EXPORTERS, assert_matches_torch, export_onnx
    from profiling.latency import DeviceConfig, get_runtime, time_runners

    torch.set_num_threads(1)
    space = get_search_space("nb201")
    rng = np.random.default_rng(0)
    genotypes = [space.sample(rng) for _ in range(n)]
    config = DeviceConfig.from_name("cpu-ort-t1-b1", warmup=10, repeats=50, rounds=5)
    ort_rt = get_runtime("ort")
    print(f"exporters on {n} NB201 networks (C=8, N=1, 1x8x8, 10 classes), torch threads = 1")
    payloads: dict[str, list[bytes]] = {}
    for name in EXPORTERS:
        for batch in (1, 32):
            times, sizes, errs = [], [], []
            for g in genotypes:
                model = space.build_network(g, (1, 8, 8), 10, C=8, N=1).eval()
                x = torch.randn(batch, 1, 8, 8)
                t0 = time.perf_counter()
                payload = export_onnx(model, x, exporter=name)
                times.append(time.perf_counter() - t0)
                sizes.append(len(payload))
                errs.append(assert_matches_torch(model, x, payload))
                if batch == 1:
                    payloads.setdefault(name, []).append(payload)
            print(
                f"  {name:12s} batch {batch:3d}: export s median {np.median(times):.3f} "
                f"(first {times[0]:.3f}, "
                f"min {min(times):.3f}, max {max(times):.3f}); {int(np.median(sizes))} bytes; "
                f"max |ORT - torch| {max(errs):.2e}"
            )
    names = list(payloads)
    runners = [ort_rt.runner(p, config) for name in names for p in payloads[name]]
    stats = time_runners(runners, config)  # interleaved: both exporters' graphs under the same conditions
    for k, name in enumerate(names):
        med = [s.median_ms for s in stats[k * n : (k + 1) * n]]
        print(f"  {name:12s} ORT latency of the exported graphs (batch 1): median {np.median(med):.4f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=40, help="sampled archs on top of the 10 anchors")
    p.add_argument("--devices", default="cpu-ort-t1-b1,cpu-ort-t2-b1,cpu-ort-t1-b32")
    p.add_argument("--repeats", type=int, default=DEFAULTS.repeats)
    p.add_argument("--rounds", type=int, default=DEFAULTS.rounds)
    p.add_argument("--warmup", type=int, default=DEFAULTS.warmup)
    p.add_argument("--chunk-size", type=int, default=DEFAULTS.chunk_size)
    p.add_argument("--max-seconds", type=float, default=DEFAULTS.max_seconds, help="timing budget per block")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exporters", action="store_true", help="also time both ONNX exporters")
    p.add_argument("--exporter-nets", type=int, default=8)
    p.add_argument("--keep", help="keep the two campaign tables in this directory")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker(args)
        return 0
    if args.exporters:
        _exporters(args.exporter_nets)

    import numpy as np
    from scipy.stats import kendalltau

    from profiling.campaign import read_table

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    results = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = args.keep or tmp_dir
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for run in ("A", "B"):
            out = Path(tmp) / f"campaign_{run}.csv"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, __file__, "--worker", str(out)] + [
                f"--{k.replace('_', '-')}={getattr(args, k)}"
                for k in (
                    "archs",
                    "devices",
                    "repeats",
                    "rounds",
                    "warmup",
                    "chunk_size",
                    "max_seconds",
                    "seed",
                )
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            wall = time.perf_counter() - t0
            summary = json.loads(out.with_suffix(".json").read_text())
            rows = read_table(out)
            results.append((summary, rows, wall))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    (sa, ra, wa), (sb, rb, wb) = results
    print(f"campaign wall time (process incl. imports): A {wa:.1f} s, B {wb:.1f} s")
    print(f"{'device':18s} {'archs':>5s} {'subnets/min A':>13s} {'B':>7s} {'rounds A':>8s} {'B':>4s} "
          f"{'median CV':>9s} {'split CV':>8s} {'tau':>6s}")  # fmt: skip
    ok = True
    for device, sda in sa["devices"].items():
        sdb = sb["devices"][device]
        mine_a = {r["arch"]: r for r in ra if r["device"] == device}
        mine_b = {r["arch"]: r for r in rb if r["device"] == device}
        archs = sorted(mine_a)
        la, lb = [mine_a[a]["latency_ms"] for a in archs], [mine_b[a]["latency_ms"] for a in archs]
        tau = kendalltau(la, lb).statistic
        rounds_a = int(np.median([r["rounds"] for r in mine_a.values()]))
        rounds_b = int(np.median([r["rounds"] for r in mine_b.values()]))
        split_cv = float(np.median([r["latency_split_cv"] for r in mine_a.values()]))
        ok &= min(sda["rate"], sdb["rate"]) >= TARGET_RATE and tau >= TARGET_TAU
        print(
            f"{device:18s} {len(archs):5d} {sda['rate']:13.1f} {sdb['rate']:7.1f} {rounds_a:8d} "
            f"{rounds_b:4d} {sda['median_cv']:9.3f} {split_cv:8.3f} {tau:6.3f}"
        )
    print(
        f"targets (>= {TARGET_RATE:.0f} subnets/min/config, tau >= {TARGET_TAU}):", "met" if ok else "NOT met"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

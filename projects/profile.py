"""MLflow entry point: profile anchor + sampled architectures on this machine's device configs.

    python projects/profile.py [--config YAML] [--set key=value ...]     (or: python -m projects.profile)

Appends to (and resumes from) the CSV at ``output``; logs the config, the table as an artifact and as an
MLflow dataset input, and per device config ``subnets_per_min/<device>``, ``median_cv/<device>`` and
``median_split_cv/<device>``. Bad input: one line on stderr, exit code 2, run FAILED.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as a script: import from the repository root, and do not shadow stdlib ``profile``
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from modnas_ops.cli import add_config_arguments, bad_input, config_from_args, run_main
from profiling.config import CampaignConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "profile.yaml"


@dataclass(frozen=True)
class ProfileConfig(CampaignConfig):
    experiment: str = "profile"
    run_name: str = "profile"


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser, DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    cfg = config_from_args(ProfileConfig, args)

    import pandas as pd

    from modnas_ops import tracking
    from profiling.campaign import TableError, run_campaign

    with tracking.start_run(cfg.run_name, cfg, experiment=cfg.experiment) as run:
        with bad_input("output", (TableError,)):  # the table file: unreadable, foreign or unwritable
            result = run_campaign(cfg)
        df = pd.DataFrame(result.rows)
        tracking.log_artifact(result.path, "profile")
        tracking.log_dataset(
            df, name=f"profile-{result.path.stem}", source=str(result.path.resolve()), context="profiling"
        )
        metrics: dict[str, float] = {
            "rows_total": len(df),
            "rows_new": result.new_rows,
            "pairs_skipped": result.skipped,
            "campaign_seconds": result.seconds,
        }
        for device, s in result.devices.items():
            if s.profiled:
                metrics[f"subnets_per_min/{device}"] = s.subnets_per_min
                metrics[f"median_cv/{device}"] = s.median_cv
                metrics[f"median_split_cv/{device}"] = s.median_split_cv
        tracking.log_metrics(metrics)
        if len(df):
            tracking.set_tags({"profile.host": df["host"].iloc[-1], "profile.network": cfg.network})

    print(
        f"run {run.info.run_id}: {result.new_rows} new rows, {result.skipped} pairs already in {result.path}"
    )
    print(f"{'device':<20} {'archs':>5} {'subnets/min':>11} {'median CV':>9} {'split CV':>8}")
    for device, s in result.devices.items():
        rate, cv, rcv = s.subnets_per_min, s.median_cv, s.median_split_cv
        print(f"{device:<20} {s.profiled:>5d} {rate:>11.1f} {cv:>9.3f} {rcv:>8.3f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

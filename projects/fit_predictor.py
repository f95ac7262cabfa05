"""MLflow entry point: fit the MetaPredictor (arch, device anchors) -> latency [, energy] and register it.

    python -m projects.fit_predictor [--profile-table CSV | --profile-run-id ID | --benchmark PATH]
                                     [--config YAML] [--set key=value ...]

Data: a profiling table (``--profile-table``, or the ``profile/`` artifact of a ``projects/profile.py`` run),
else the NB201 table (``--benchmark``, or ``source=benchmark`` with ``$MODNAS_NB201_TABLE``: fits on its 13 train
devices, evaluates the 6 test devices zero-shot), else a quick profile of this machine (``quick_profile_archs``
archs + anchors, settings of ``projects/configs/profile.yaml``).
Logs per device ``kendall_tau/<device>``, ``spearman/<device>``, ``mape/<device>`` on the held-out test
architectures, ``plots/<device>.png`` (predicted vs true), ``metrics.csv``, loss curves, the model file and a
pyfunc model (input ``anchor_latency_ms_0..9``, ``arch``; output ``latency_ms``) registered under
``registered_model_name`` with alias ``alias``. Bad input: one line on stderr, exit code 2, run FAILED.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from modnas_ops.cli import add_config_arguments, config_from_args, run_main

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "fit_predictor.yaml"


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile-table", default=None, help="profiling table CSV")
    parser.add_argument("--profile-run-id", default=None, help="MLflow run of projects/profile.py")
    parser.add_argument("--benchmark", default=None, help="NB201 table (.csv.gz) or its directory")
    parser.add_argument("--campaign", default=None, help="team campaign on the tracking server (profile agents)")
    add_config_arguments(parser, DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    extra = [
        f"{key}={value}"
        for key, value in (
            ("profile_table", args.profile_table),
            ("profile_run_id", args.profile_run_id),
            ("benchmark", args.benchmark),
            ("campaign", args.campaign),
        )
        if value
    ]
    from projects.fit_predictor_job import FitPredictorConfig, run

    return run(config_from_args(FitPredictorConfig, args, extra))


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

"""MLflow entry point: pre-train the weight-sharing supernet with uniformly sampled architectures.

    python -m projects.train_supernet [--config YAML] [--set key=value ...]

Trains ``space.build_supernet(input_shape, num_classes, C=C, N=N)`` on the dataset's train split (one
uniformly drawn architecture per step, exact one-hot op weights), logs per epoch ``train_loss`` and the mean /
best valid error of fixed architectures, and saves the supernet (``supernet/supernet.pt``); a search starts from it with
``--set search.supernet.init_weights=<file>``. Bad input: one line on stderr, exit code 2, run FAILED.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from modnas_ops.cli import add_config_arguments, config_from_args, run_main

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "search_supernet_pretrain.yaml"


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser, DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    from projects.train_supernet_job import TrainSupernetConfig, run

    return run(config_from_args(TrainSupernetConfig, args))


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Shared plumbing for the MLflow entry points in ``projects/``: config arguments and clean failures."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .config import ConfigError, load_config

T = TypeVar("T")

# Errors that mean "bad input": one line on stderr and exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, FileNotFoundError, PermissionError)


def add_config_arguments(parser: argparse.ArgumentParser, default_config: str | Path | None = None) -> None:
    parser.add_argument(
        "--config", default=str(default_config) if default_config else None, help="YAML config file"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set epochs=3 (repeatable)",
    )


def config_from_args(cls: type[T], args: argparse.Namespace, extra: Sequence[str] = ()) -> T:
    """Load ``cls`` from ``--config`` and ``--set`` plus ``extra`` overrides (later ones win)."""
    return load_config(cls, args.config or None, [*extra, *args.overrides])


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run an entry point's ``main``; bad input becomes one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return main(argv)
    except USER_ERRORS as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2

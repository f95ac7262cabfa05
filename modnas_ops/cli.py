"""Shared plumbing for the MLflow entry points in ``projects/``: config arguments and clean failures.

The error contract (see :mod:`modnas_ops.errors`): a :class:`~modnas_ops.errors.UserError` (bad input or a bad
file, config errors included) is one line ``error: <file or field>: <what is wrong>`` on stderr and exit code 2;
SIGTERM exits 143 and Ctrl-C 130 (the run ends KILLED); anything else is an internal error with its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from .config import load_config
from .errors import Terminated, UserError

T = TypeVar("T")

# Errors that mean "bad input": one line on stderr and exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)


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


@contextlib.contextmanager
def bad_input(where: str, errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> Iterator[None]:
    """Inside the block, ``errors`` (raised while reading the input ``where`` names: a file, a field) become a
    :class:`UserError` ``<where>: <first line>``; use it around reads of user-given files only."""
    try:
        yield
    except UserError:
        raise
    except errors as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, OSError) and e.strerror:
            text = f"{e.strerror}" + (f" ({e.filename})" if e.filename and str(e.filename) not in where else "")
        raise UserError(text if text.startswith(where) else f"{where}: {text}") from e


def ensure_writable(path: str | Path, field: str) -> Path:
    """Create the directory ``path`` (parents too) and probe-write a file in it; UserError naming ``field``."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{field}: {p} is not a writable directory ({e.strerror or e})") from None
    return p


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run an entry point's ``main``; bad input becomes one line on stderr and exit code 2, SIGTERM exit code
    143, Ctrl-C 130 (their runs end KILLED); internal errors propagate with their traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return main(argv)
    except USER_ERRORS as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except Terminated:
        print("error: terminated (SIGTERM); the run ends KILLED", file=sys.stderr)
        return Terminated.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; the run ends KILLED", file=sys.stderr)
        return 130

"""``modnas``: one command for the MLflow entry points (``modnas search ...`` = ``python -m projects.search ...``).

    modnas COMMAND [options]      (modnas COMMAND --help for its options)

Each command is the entry point of the same name in ``projects/``, with the same ``--config`` / ``--set``
options, the same error contract (bad input: one line on stderr, exit code 2) and the same MLflow runs. Nothing
heavy is imported before a command runs, so ``modnas --help`` and ``modnas COMMAND --help`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command -> (module in projects/, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("projects.search", "MODNAS search: Pareto fronts for many devices in one run"),
    "profile": ("projects.profile", "profile architectures' latency / energy / memory on this machine"),
    "fit-predictor": ("projects.fit_predictor", "fit and register the MetaPredictor (arch, anchors) -> latency"),
    "baselines": ("projects.baselines", "random / NSGA-II / LINAS / MOTPE / local search at equal budget"),
    "true-front": ("projects.true_front", "exact Pareto fronts of a benchmark table, per device"),
    "predict-latency": ("projects.predict_latency", "a registered MetaPredictor's latency for architectures"),
    "train-supernet": ("projects.train_supernet", "pre-train the weight-sharing supernet"),
    "profile-agent": ("projects.profile_agent", "join a team profiling campaign on the tracking server"),
    "tracking-server": ("projects.tracking_server", "the team's mlflow server on PostgreSQL (+ basic auth)"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modnas",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items()),
    )
    parser.add_argument("--version", action="version", version=f"modnas {_version()}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modnas-ops")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):  # no command: --help, --version or a usage error
        _parser().parse_args(argv[:1] or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        _parser().parse_args([name])  # exits 2 naming the valid commands
    module = importlib.import_module(COMMANDS[name][0])
    prog, sys.argv[0] = sys.argv[0], f"modnas {name}"  # argparse's prog in the command's usage and errors
    try:
        return int(module.main(rest) or 0)
    finally:
        sys.argv[0] = prog


if __name__ == "__main__":
    sys.exit(main())

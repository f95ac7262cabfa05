"""MLflow entry point: the MODNAS search (one hypernetwork, Pareto fronts for many devices).

    python -m projects.search [--config YAML] [--set key=value ...] [--dataset NAME [--data-root PATH]]
                              [--profile-table CSV | --profile-run-id ID] [--benchmark PATH]

Default (``projects/configs/search.yaml``): supernet mode on the embedded digits data; devices are this
machine's CPU configs from a profiling table (``--profile-table``, the ``profile/`` artifact of a
``projects/profile.py`` run, else a quick profile first, resumed from ``quick_profile_output``).
``--dataset`` / ``--data-root`` search on your own images (an image folder with one subfolder per class, an
``.npz`` of ``x`` / ``y``, or a ``module:function``; see ``modnas_ops.data``), logged as the run's dataset input.
``--benchmark`` switches to benchmark mode on the NB201 table, with ``projects/configs/search_nb201.yaml``'s tuned
settings unless ``--config`` names another file.
Logs per epoch ``hv/<device>`` (+ ``hv_true``/``hv_ratio`` in benchmark mode), the losses, the fronts
(``fronts/fronts.csv``, one PNG per device), the trained hypernetwork / predictor / error model files and
the search checkpoint. Bad input: one line on stderr, exit code 2, run FAILED; every check that needs no data
(config fields, files, devices, writable output and checkpoint folders) runs before the quick profile.
Checkpoints live under ``search.checkpoint_dir/<fingerprint>/`` (config + content hashes of every input); a
rerun resumes only an unfinished search with the same fingerprint, closes the killed run it resumes (KILLED)
and copies that run's per-epoch metrics from the checkpoint, so the new run's history is whole.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # run as a script: import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from modnas_ops.cli import add_config_arguments, config_from_args, run_main

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "search.yaml"
BENCHMARK_CONFIG = Path(__file__).resolve().parent / "configs" / "search_nb201.yaml"


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile-table", default=None, help="profiling table CSV (supernet mode)")
    parser.add_argument(
        "--profile-run-id", default=None, help="MLflow run of projects/profile.py (supernet mode)"
    )
    parser.add_argument(
        "--benchmark", default=None, help="NB201 table (.csv.gz or directory): benchmark mode"
    )
    parser.add_argument(
        "--dataset", default=None,
        help="supernet mode's data: patterns | digits | cifar10 | image-folder | npz | module:function",
    )  # fmt: skip
    parser.add_argument("--data-root", default=None, help="the image folder, .npz file or cifar10 folder")
    add_config_arguments(parser)  # none: search.yaml, or search_nb201.yaml with --benchmark
    args = parser.parse_args(argv)
    extra = [f"profile_table={args.profile_table}"] if args.profile_table else []
    extra += [f"profile_run_id={args.profile_run_id}"] if args.profile_run_id else []
    extra += ["search.mode=benchmark", f"search.benchmark.table={args.benchmark}"] if args.benchmark else []
    extra += [f"search.supernet.dataset={args.dataset}"] if args.dataset else []
    extra += [f"search.supernet.data_root={args.data_root}"] if args.data_root else []
    if not args.config:  # with --benchmark: the tuned benchmark-mode defaults, not the embedded job's
        args.config = str(BENCHMARK_CONFIG if args.benchmark else DEFAULT_CONFIG)
    from projects.search_job import SearchRunConfig, run

    return run(config_from_args(SearchRunConfig, args, extra))


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

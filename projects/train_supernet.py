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
from dataclasses import dataclass, field
from pathlib import Path

if not __package__:  # run as a script: import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from modnas_ops.cli import add_config_arguments, config_from_args, run_main
from modnas_ops.supernet_training import PretrainConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "search_supernet_pretrain.yaml"


@dataclass(frozen=True)
class TrainSupernetConfig:
    space: str = "nb201"
    dataset: str = "digits"  # digits | cifar10
    data_root: str = ""
    C: int = 8
    N: int = 1
    threads: int = 1
    device: str = "cpu"
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    output: str = "outputs/supernet.pt"
    experiment: str = "train_supernet"
    run_name: str = "train_supernet"

    def __post_init__(self) -> None:
        if self.C < 1 or self.N < 1 or self.threads < 1:
            raise ValueError(f"C, N and threads must be >= 1, got {self.C}, {self.N}, {self.threads}")


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser, DEFAULT_CONFIG)
    cfg = config_from_args(TrainSupernetConfig, parser.parse_args(argv))

    import torch

    from modnas_ops import tracking
    from modnas_ops.data import get_dataset
    from modnas_ops.spaces import get_search_space
    from modnas_ops.supernet_training import pretrain_supernet, save_supernet

    torch.set_num_threads(cfg.threads)
    space = get_search_space(cfg.space)
    data = get_dataset(cfg.dataset, seed=cfg.pretrain.seed, root=cfg.data_root or None)
    with tracking.start_run(cfg.run_name, cfg, experiment=cfg.experiment) as run:
        torch.manual_seed(cfg.pretrain.seed)
        net = space.build_supernet(data.input_shape, data.num_classes, C=cfg.C, N=cfg.N)
        net = net.to(torch.device(cfg.device))

        def on_epoch(epoch: int, m: dict[str, float]) -> None:
            tracking.log_metrics(m, step=epoch)
            print(
                f"epoch {epoch}: loss {m['train_loss']:.4f}, valid error mean {m['valid_error_mean']:.2f} %, "
                f"best {m['valid_error_min']:.2f} %",
                flush=True,
            )

        history = pretrain_supernet(net, data.train, data.valid, cfg.pretrain, on_epoch=on_epoch)
        path = save_supernet(net, cfg.output)
        tracking.log_artifact(path, "supernet")
    print(
        f"run {run.info.run_id}: supernet saved to {path} "
        f"(valid error mean {history[-1]['valid_error_mean']:.2f} %)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

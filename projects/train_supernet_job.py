"""The job behind ``projects/train_supernet.py``: its config and the MLflow run it logs (imported once the
command line is parsed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from modnas_ops.supernet_training import PretrainConfig


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


def run(cfg: TrainSupernetConfig) -> int:

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

        unit = data.task.error_unit

        def on_epoch(epoch: int, m: dict[str, float]) -> None:
            tracking.log_metrics(m, step=epoch)
            print(
                f"epoch {epoch}: loss {m['train_loss']:.4f}, valid error mean {m['valid_error_mean']:.4g} {unit}, "
                f"best {m['valid_error_min']:.4g} {unit}",
                flush=True,
            )

        history = pretrain_supernet(net, data.train, data.valid, cfg.pretrain, on_epoch=on_epoch, task=data.task)
        path = save_supernet(net, cfg.output)
        tracking.log_artifact(path, "supernet")
    print(
        f"run {run.info.run_id}: supernet saved to {path} "
        f"(valid error mean {history[-1]['valid_error_mean']:.4g} {unit})"
    )
    return 0

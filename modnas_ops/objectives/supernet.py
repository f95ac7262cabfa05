"""Supernet mode: a weight-sharing supernet on a dataset (embedded default: digits). Weights step on the train
split, the hypernetwork on the valid split (error term = cross-entropy of the sampled subnet); devices and the
MetaPredictor come from a profiling table of this machine; fronts are normalised over a fixed random
reference set of architectures."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..architect import Architect, DeviceBatch
from ..config import FieldError, check_at_least, check_finite, check_positive, check_registered
from ..errors import UserError
from ..pareto import MODNAS_MAX_ERROR, Normaliser, hypervolume
from ..spaces import Genotype, SearchSpace
from ..standalone import WEIGHT_OPTIMIZERS, weight_optimizer
from ..surrogate import ErrorSurrogate
from .base import LATENCY, ErrorObjective, SearchContext, SearchDevice, front_rows, register_objective

log = logging.getLogger(__name__)

BOUNDS_POOL = 1024  # random architectures (on top of the known ones) whose predictions bound the objectives
ERROR_TERMS = ("supernet", "surrogate")


@dataclass(frozen=True)
class SupernetConfig:
    """Supernet mode: data, supernet size and weight optimizer, devices (profiling table) and predictor."""

    dataset: str = "digits"  # patterns | digits | cifar10 | image-folder | npz | module:function (modnas_ops.data)
    data_root: str = ""
    C: int = 8
    N: int = 1
    network_options: dict[str, Any] = field(default_factory=dict)  # further network hyper-parameters of the space
    # (e.g. NB201's skeleton: pointwise); passed to build_supernet / build_network with C and N
    batch_size: int = 64
    weight_optimizer: str = "sgd"  # sgd | adamw (betas (momentum, 0.95); transformers) for every weight step
    weight_lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    archs_per_weight_step: int = 2  # sampled architectures per supernet weight step
    uniform_fraction: float = 0.5  # share of them drawn uniformly instead of from H (keeps every op trained)
    pretrain_steps: int = 0  # single-path weight steps (own cosine schedule) before the first epoch, sampled
    # without preference (pretrain_sampling), so the shared weights rank subnets before any preference shapes them
    pretrain_sampling: str = "uniform"  # uniform | sandwich: the largest + smallest + pretrain_sandwich_random
    # uniform architectures per pre-training step (spaces ordered by size; modnas_ops/supernet_training.py)
    pretrain_sandwich_random: int = 2
    warmup_epochs: int = 1  # weight steps only (hypernetwork frozen) for the first epochs
    freeze_weights: bool = False  # after the warm-up the shared weights stay fixed (as MODNAS does with a
    # pretrained OFA supernet): the hypernetwork searches one trained supernet that its choices cannot re-shape
    test_devices: tuple[str, ...] = ()  # devices of the profiling table held out (zero-shot)
    table_devices: bool = False  # also search the devices of the space's latency table (its train devices
    # fit the MetaPredictor, its test devices are zero-shot), e.g. OFA's 9 GPU x batch configs for mbv3
    latency_table: str = ""  # that table's file; "" = $MODNAS_<SPACE>_TABLE
    shared_metrics: dict[str, str] = field(default_factory=dict)  # metric -> profiled device whose measurements
    # devices without that metric take (e.g. {memory_mb: cpu-ort-t1-b1}: the table's GPUs have latency only)
    predictor: str = ""  # saved MetaPredictor (.pt); "" = fit one on the profiling table here
    predictor_epochs: int = 300
    predictor_batch_size: int = 64
    predictor_max_archs: int = 0  # training archs per device (anchors included); 0 = all (a 5,000-arch table: cap it)
    init_weights: str = ""  # supernet file of projects/train_supernet.py to start from ("" = fresh weights)
    dense_gradients: bool = True  # error term computes every choice (forward dense=True); False = selected only
    reference_archs: int = 48  # random architectures that fix the HV normalisation per device
    error_term: str = "supernet"  # the hypernetwork's error signal: supernet = the sampled subnet's loss on a
    # valid batch through the straight-through entries (MODNAS); surrogate = a differentiable error surrogate
    # (modnas_ops.surrogate.ErrorSurrogate) fitted on the frozen supernet's valid errors of surrogate_archs
    # random architectures (OFA's accuracy predictor), read by the generator too; needs freeze_weights
    surrogate_archs: int = 512
    surrogate_epochs: int = 300
    eval_batches: int = 0  # valid batches per front evaluation; 0 = the whole valid split

    def __post_init__(self) -> None:
        from ..data import available_datasets, is_callable_spec

        check_finite(self)
        if not is_callable_spec(self.dataset):  # module:function: the user's loader, imported when the data loads
            check_registered("dataset", self.dataset, "dataset", available_datasets())
        if not 0 <= self.momentum < 1 or self.weight_decay < 0 or self.grad_clip < 0:
            raise FieldError("momentum", "need 0 <= momentum < 1, weight_decay >= 0, grad_clip >= 0")
        check_at_least(self, 1, "C", "N", "batch_size", "archs_per_weight_step", "predictor_epochs", "reference_archs",
                       "predictor_batch_size")  # fmt: skip
        check_at_least(self, 0, "predictor_max_archs")
        if not 0 <= self.uniform_fraction <= 1:
            raise FieldError("uniform_fraction", f"must lie in [0, 1], got {self.uniform_fraction}")
        check_at_least(self, 0, "pretrain_steps", "warmup_epochs", "eval_batches", "pretrain_sandwich_random")
        from ..supernet_training import SAMPLINGS

        check_registered("pretrain_sampling", self.pretrain_sampling, "pre-training sampling", SAMPLINGS)
        check_registered("error_term", self.error_term, "error term", ERROR_TERMS)
        check_registered("weight_optimizer", self.weight_optimizer, "weight optimizer", WEIGHT_OPTIMIZERS)
        check_at_least(self, 2, "surrogate_archs")
        check_at_least(self, 1, "surrogate_epochs")
        if self.error_term == "surrogate" and not self.freeze_weights:
            raise FieldError("error_term", "surrogate fits the frozen supernet's errors: needs freeze_weights: true")
        from ..predictor.model import OPTIONAL_METRICS

        for metric in self.shared_metrics:
            check_registered("shared_metrics", metric, "shareable metric", OPTIONAL_METRICS)
        check_positive(self, "weight_lr")

    def network_hparams(self) -> dict[str, Any]:
        """Keyword arguments of the space's ``build_supernet`` / ``build_network`` (base width C, cells or
        blocks per stage N, and ``network_options``)."""
        return {"C": self.C, "N": self.N, **self.network_options}


class _BatchStream:
    """Endless shuffled mini-batches of a TensorDataset with its own seeded generator (checkpointable)."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, device: torch.device) -> None:
        self.x, self.y = dataset.tensors
        self.batch_size = min(int(batch_size), len(self.x))
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.x), generator=self.generator)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.x), generator=self.generator)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.x[idx].to(self.device), self.y[idx].to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.pos = int(state["pos"])


def reference_normaliser(reference: np.ndarray, found: np.ndarray) -> Normaliser:
    """MODNAS-style min-max bounds (error >= 90 % dropped) over a reference set of points (N, M); an
    objective the reference leaves constant takes its bounds from reference + found points, and a still
    constant one gets a span of 0.1 % of its value (at least 1e-6) so the hypervolume stays defined."""
    pts = reference[reference[:, 0] < MODNAS_MAX_ERROR]
    pts = pts if len(pts) else reference
    both = np.concatenate([pts, found[found[:, 0] < MODNAS_MAX_ERROR]])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    flat = hi <= lo
    lo[flat], hi[flat] = both.min(axis=0)[flat], both.max(axis=0)[flat]
    flat = hi <= lo
    hi[flat] = lo[flat] + np.maximum(1e-3 * np.abs(lo[flat]), 1e-6)
    return Normaliser(tuple(lo), tuple(hi))


@register_objective
class SupernetObjective(ErrorObjective):
    """Supernet mode: cross-entropy of sampled subnets of a weight-sharing supernet; devices and the
    MetaPredictor from a profiling table of real measurements."""

    name = "supernet"
    config_class = SupernetConfig

    def __init__(
        self,
        config: SupernetConfig,
        context: SearchContext,
        space: SearchSpace,
        device: torch.device,
        data: Any = None,
        profile_rows: Any = None,
        predictor: nn.Module | None = None,
    ) -> None:
        super().__init__(config, context, space, device)
        from ..data import get_dataset
        from ..predictor import measurements_from_profile
        self.scfg = config
        self.data = (
            data
            if data is not None
            else get_dataset(self.scfg.dataset, seed=context.seed, root=self.scfg.data_root or None)
        )
        if profile_rows is None:
            raise UserError("supernet mode needs a profiling table (rows of profiling.campaign.read_table)")
        self.measured = measurements_from_profile(profile_rows, space, test_devices=self.scfg.test_devices)
        if self.scfg.table_devices:
            from ..latency_table import load_latency_table
            from ..predictor import measurements_from_table

            table = measurements_from_table(load_latency_table(space.name, self.scfg.latency_table or None))
            clash = sorted({m.name for m in table} & {m.name for m in self.measured})
            if clash:
                raise UserError(f"search.supernet.latency_table: device {clash[0]!r} is also in the profiling table")
            self.measured += table
        from ..predictor import share_metric

        for metric, source in self.scfg.shared_metrics.items():
            self.measured = share_metric(self.measured, metric, source)
        if not any(m.split == "train" for m in self.measured):
            raise UserError("search.supernet.test_devices: every device of the profiling table is a test device")
        self._injected_predictor = predictor
        torch.manual_seed(context.seed)
        self.supernet = space.build_supernet(
            self.data.input_shape, self.data.num_classes, **self.scfg.network_hparams()
        ).to(device)
        if self.scfg.init_weights:
            from ..supernet_training import check_compatible, load_supernet

            pretrained = load_supernet(self.scfg.init_weights)
            check_compatible(pretrained, space.name, self.supernet.build_args, "search.supernet.init_weights")
            self.supernet.load_state_dict(pretrained.state_dict())
        self.weight_optimizer = weight_optimizer(
            self.supernet.parameters(), self.scfg.weight_optimizer, self.scfg.weight_lr, self.scfg.momentum,
            self.scfg.weight_decay,
        )  # fmt: skip
        self.weight_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.weight_optimizer, T_max=max(1, self._weight_epochs(context) * context.steps_per_epoch)
        )
        self.train_stream = _BatchStream(self.data.train, self.scfg.batch_size, context.seed + 1, device)
        self.valid_stream = _BatchStream(self.data.valid, self.scfg.batch_size, context.seed + 2, device)
        self.epoch = 0
        self.pretrained = self.scfg.pretrain_steps == 0  # restored from a checkpoint or done in setup
        self.pretrain_history: list[dict[str, float]] = []
        self.weight_losses: list[float] = []
        self._error_cache: dict[Genotype, float] = {}  # valid error per genotype under the current weights
        self._reference_points: dict[str, np.ndarray] = {}  # device -> (R, M) of the latest judge
        self.surrogate: ErrorSurrogate | None = None  # error_term: surrogate, fitted once the weights are final
        self.surrogate_stats: dict[str, float] = {}

    def setup(self, rng: np.random.Generator) -> None:
        self.predictor = self._load_predictor().to(self.device).eval()
        if not self.pretrained:
            self._pretrain()
        # reference architectures fix each device's HV normalisation; the latency bounds of the search come
        # from a larger pool: the reference set, every measured architecture and BOUNDS_POOL random samples
        draws = [self.space.sample(rng) for _ in range(4 * self.scfg.reference_archs)]
        self.reference = list(dict.fromkeys(draws))[: self.scfg.reference_archs]
        measured = {tuple(int(x) for x in g) for m in self.measured for g in m.genotypes}
        pool = list(dict.fromkeys([*self.reference, *sorted(measured)]))
        pool += [self.space.sample(rng) for _ in range(BOUNDS_POOL)]
        ref_onehots = torch.from_numpy(self.space.one_hot_batch(pool))
        max_ce = math.log(self.data.num_classes)
        missing = [(m.name, x) for m in self.measured for x in self.metrics if x not in m.anchor_values]
        if missing:
            raise UserError(f"device {missing[0][0]!r} has no anchor values of the predictor's {missing[0][1]}")
        self.devices = []
        self._measured = {}  # device -> metric -> arch -> value: the profiling table's measurements
        for m in self.measured:
            dev = SearchDevice(m.name, m.split, {x: np.asarray(m.anchor_values[x], np.float64) for x in self.metrics})
            lo, hi = self.fit_hardware_bounds(dev, self.predicted_hardware(dev, ref_onehots))
            self.devices.append(dev.with_bounds([0.0, *lo], [max_ce, *hi]))
            self._measured[m.name] = {
                x: {
                    tuple(int(v) for v in g): float(y)
                    for g, y in zip(m.genotypes, m.values[x], strict=True)
                    if math.isfinite(y)
                }
                for x in self.metrics
            }

    def _pretrain(self) -> None:
        """``pretrain_steps`` single-path steps (``pretrain_sampling``) of the shared weights (4 epochs of the
        schedule, each reporting the mean valid error of 4 fixed random architectures)."""
        from ..supernet_training import PretrainConfig, pretrain_supernet

        epochs = min(4, self.scfg.pretrain_steps)
        cfg = PretrainConfig(
            epochs=epochs, steps_per_epoch=math.ceil(self.scfg.pretrain_steps / epochs),
            batch_size=self.scfg.batch_size, lr=self.scfg.weight_lr, momentum=self.scfg.momentum,
            weight_decay=self.scfg.weight_decay, grad_clip=self.scfg.grad_clip, eval_archs=4, seed=self.context.seed,
            sampling=self.scfg.pretrain_sampling, sandwich_random=self.scfg.pretrain_sandwich_random,
            optimizer=self.scfg.weight_optimizer,
        )  # fmt: skip
        log.info("pre-training the supernet: %d %s single-path steps", epochs * cfg.steps_per_epoch, cfg.sampling)
        self.pretrain_history = pretrain_supernet(
            self.supernet, self.data.train, self.data.valid, cfg, task=self.data.task
        )
        self.pretrained = True
        self._error_cache.clear()

    def _load_predictor(self) -> nn.Module:
        if self._injected_predictor is not None:
            return self._injected_predictor
        from ..predictor import FitConfig, MetaPredictor, fit_meta_predictor

        if self.scfg.predictor:
            return MetaPredictor.load(self.scfg.predictor)
        fit = fit_meta_predictor(
            self.measured,
            FitConfig(
                epochs=self.scfg.predictor_epochs, batch_size=self.scfg.predictor_batch_size, patience=60,
                max_train_archs=self.scfg.predictor_max_archs, seed=self.context.seed,
            ),
            space=self.space,
            progress=False,
        )
        return fit.model

    # ---- search-time pieces -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.scfg.error_term == "surrogate" and self.surrogate is None and not self.hypernet_frozen:
            self._fit_surrogate()

    def _fit_surrogate(self) -> None:
        """The surrogate error term: ``surrogate_archs`` random architectures (as sampled: inactive choices
        left as drawn, so the surrogate learns to ignore them) judged by the frozen supernet, then fitted."""
        rng = np.random.default_rng(self.context.seed + 7)
        archs = list(dict.fromkeys(self.space.sample(rng) for _ in range(2 * self.scfg.surrogate_archs)))
        archs = archs[: self.scfg.surrogate_archs]
        t0 = time.perf_counter()
        errors = np.maximum(self.valid_error(archs), 1e-3)  # (S,) the fit takes log(error)
        judge_s = time.perf_counter() - t0
        onehots = torch.from_numpy(self.space.one_hot_batch(archs))  # (S, E, K)

        def fit(rows: np.ndarray) -> ErrorSurrogate:
            return ErrorSurrogate(self.space.shape).fit(
                onehots[rows], torch.from_numpy(errors[rows]), epochs=self.scfg.surrogate_epochs,
                seed=self.context.seed,
            ).eval()  # fmt: skip

        from ..predictor_baselines import kendall_tau

        held = np.arange(len(archs)) % 5 == 0  # a fifth held out: how well the surrogate ranks unseen archs
        part = fit(np.flatnonzero(~held))
        with torch.no_grad():
            tau = kendall_tau(part(onehots[held]).numpy(), errors[held])
        self.surrogate = fit(np.arange(len(archs))).to(self.device)
        self.surrogate_stats = {"surrogate_holdout_tau": tau, "time/surrogate_judge_s": judge_s,
                                "time/surrogate_fit_s": time.perf_counter() - t0 - judge_s}  # fmt: skip
        log.info("error surrogate on %d architectures judged by the supernet (%.0f s): held-out tau %.3f",
                 len(archs), judge_s, tau)

    @property
    def hypernet_frozen(self) -> bool:
        return self.epoch < self.scfg.warmup_epochs

    def _weight_epochs(self, context: SearchContext) -> int:
        """Epochs with weight steps: all of them, or the warm-up alone when the weights freeze after it."""
        return min(self.scfg.warmup_epochs, context.epochs) if self.scfg.freeze_weights else context.epochs

    def before_hypernet_step(self, architect: Architect, train_devices: DeviceBatch) -> Any:
        if self.scfg.freeze_weights and not self.hypernet_frozen:
            return self.valid_stream.next()  # weights fixed after the warm-up
        x, y = self.train_stream.next()
        loss = architect.weight_step(
            self.supernet, self.weight_optimizer, x, y, train_devices,
            num_archs=self.scfg.archs_per_weight_step, grad_clip=self.scfg.grad_clip or None,
            uniform_fraction=self.scfg.uniform_fraction,
        )  # fmt: skip
        self.weight_scheduler.step()
        self.weight_losses.append(loss)
        self._error_cache.clear()
        return self.valid_stream.next()

    def error_term(self, arch: torch.Tensor, batch: Any = None) -> torch.Tensor:
        if self.surrogate is not None:
            return self.surrogate(arch)  # (B,) in the task's error unit
        if batch is None:
            raise ValueError("supernet error term needs a (x, y) batch")
        x, y = batch
        self.supernet.train()
        if self.scfg.dense_gradients and torch.is_grad_enabled():  # no gradient wanted: selected ops only
            return torch.stack([self.data.task.loss(self.supernet(x, a, dense=True), y) for a in arch])
        return torch.stack([self.data.task.loss(self.supernet(x, a), y) for a in arch])

    def valid_error(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """(R,) valid error (percent) of each genotype under the shared weights (first ``eval_batches``
        batches of the valid split, or all of it)."""
        from ..supernet_training import valid_error

        x, y = self.data.valid.tensors
        if self.scfg.eval_batches:
            n = self.scfg.eval_batches * self.scfg.batch_size
            x, y = x[:n], y[:n]
        todo = [
            g for g in dict.fromkeys(genotypes) if g not in self._error_cache
        ]  # cached until weights move
        if todo:
            errs = valid_error(self.supernet, todo, x, y, batch_size=self.scfg.batch_size, task=self.data.task)
            self._error_cache.update(zip(todo, errs.tolist(), strict=True))
        return np.asarray([self._error_cache[g] for g in genotypes], dtype=np.float64)

    def reference_genotypes(self, device: SearchDevice) -> list[Genotype]:
        return list(self.reference)

    def estimated_error(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        return self.valid_error([tuple(int(x) for x in g) for g in genotypes])

    def judge(
        self, device: SearchDevice, genotypes: Sequence[Genotype]
    ) -> tuple[pd.DataFrame, dict[str, float]]:
        genotypes = [tuple(int(x) for x in g) for g in genotypes]
        uniq = sorted(set(genotypes) | set(self.reference))
        err = dict(zip(uniq, self.valid_error(uniq), strict=True))
        onehots = torch.from_numpy(self.space.one_hot_batch(uniq))
        hw = dict(zip(uniq, self.hardware(device, self.predicted_hardware(device, onehots)), strict=True))
        measured = self._measured.get(device.name, {})
        judged = {  # measured values where the profiling table has the architecture, else predicted
            g: [measured.get(x, {}).get(g, hw[g][j]) for j, x in enumerate(self.metrics)] for g in uniq
        }

        def points(gs: Sequence[Genotype]) -> np.ndarray:
            return np.asarray([[err[g], *judged[g]] for g in gs], dtype=np.float64)

        ref = points(self.reference)
        self._reference_points[device.name] = ref
        found = points(genotypes)
        normaliser = reference_normaliser(ref, found)

        def hv(F: np.ndarray) -> float:
            F = F[F[:, 0] < MODNAS_MAX_ERROR]
            return hypervolume(normaliser(F), normaliser.reference_point) if len(F) else 0.0

        metrics = {f"hv/{device.name}": hv(found), f"hv_reference/{device.name}": hv(ref)}
        predicted = np.asarray([[err[g], *hw[g]] for g in genotypes], dtype=np.float64)
        rows = front_rows(device, genotypes, self.space, predicted, found, self.objectives)
        rows["latency_measured"] = [g in measured.get(LATENCY, {}) for g in genotypes]
        return rows, metrics

    def trained_supernet(self) -> nn.Module | None:
        return self.supernet

    def error_model(self) -> nn.Module | None:
        return self.surrogate

    def reference_points(self, device: SearchDevice) -> np.ndarray | None:
        return self._reference_points.get(device.name)

    def extra_metrics(self) -> dict[str, float]:
        out, self.surrogate_stats = dict(self.surrogate_stats), {}
        if self.pretrain_history:
            out["pretrain_loss"] = self.pretrain_history[-1]["train_loss"]
            out["pretrain_valid_error_mean"] = self.pretrain_history[-1]["valid_error_mean"]
            self.pretrain_history = []
        if self.weight_losses:
            out["weight_loss"] = float(np.mean(self.weight_losses))
            self.weight_losses = []
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "supernet": self.supernet.state_dict(),
            "weight_optimizer": self.weight_optimizer.state_dict(),
            "weight_scheduler": self.weight_scheduler.state_dict(),
            "train_stream": self.train_stream.state_dict(),
            "valid_stream": self.valid_stream.state_dict(),
            "pretrained": self.pretrained,
            **({"surrogate": self.surrogate.to_state()} if self.surrogate is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.weight_scheduler.load_state_dict(state["weight_scheduler"])
        self.train_stream.load_state_dict(state["train_stream"])
        self.valid_stream.load_state_dict(state["valid_stream"])
        self.pretrained = bool(state.get("pretrained", self.pretrained))
        self._error_cache.clear()
        if "surrogate" in state:
            self.surrogate = ErrorSurrogate.from_state(state["surrogate"]).to(self.device)


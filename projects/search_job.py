"""The search job behind ``projects/search.py``: its config, the profiling table it reads, the measuring and
registering it composes, and the MLflow run it logs (imported once the command line is parsed)."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modnas_ops.cli import bad_input, ensure_writable
from modnas_ops.config import FieldError
from modnas_ops.errors import UserError
from modnas_ops.search import SearchConfig

PROFILE_CONFIG = Path(__file__).resolve().parent / "configs" / "profile.yaml"


@dataclass(frozen=True)
class SearchRunConfig:
    search: SearchConfig = field(default_factory=SearchConfig)
    profile_table: str = ""  # supernet mode: profiling CSV (profiling/campaign.py format)
    profile_run_id: str = ""  # or an MLflow run of projects/profile.py (its profile/*.csv artifact)
    quick_profile_archs: int = 40  # neither given: profile this many sampled archs (+ anchors) first
    quick_profile_output: str = "outputs/profile.csv"
    quick_profile_options: dict[str, Any] = field(default_factory=dict)  # further fields of the quick profile
    # (projects/configs/profile.yaml's, e.g. {memory: true, devices: [cpu-ort-t1-b1]})
    output_dir: str = "outputs/search"  # model files written here (and logged)
    generator_model_name: str = "modnas-generator"  # registered pyfunc generator; "" = do not register
    architectures_model_name: str = "modnas-architectures"  # chosen subnets as ONNX (supernet mode); "" = none
    alias: str = "candidate"
    remeasure_rounds: int = 30  # supernet mode: onnxruntime rounds timing the measured shortlist
    # (search.shortlist) on this machine's configs; 0 = measure nothing (fronts stay predicted)
    remeasure_max_seconds: float = 60.0  # time budget of one config's interleaved timing of the shortlist
    finetune_steps: int = 400  # supernet mode: train each chosen subnet standalone (from its supernet weights,
    # standalone recipe) before it is registered, and tag its test error; 0 = register the shared weights
    plots: bool = True
    experiment: str = "search"
    run_name: str = "search"

    def __post_init__(self) -> None:
        if self.profile_table and self.profile_run_id:
            raise FieldError("profile_table", "give at most one of profile_table and profile_run_id")
        if self.search.mode == "benchmark" and (self.profile_table or self.profile_run_id):
            raise FieldError(
                "profile_table", "benchmark mode reads the NB201 table; drop profile_table / profile_run_id"
            )
        if self.profile_table and not Path(self.profile_table).is_file():
            raise FieldError("profile_table", f"{self.profile_table}: no such file")
        if self.quick_profile_archs < 1:
            raise FieldError("quick_profile_archs", f"quick_profile_archs must be >= 1, got {self.quick_profile_archs}")
        if self.remeasure_rounds < 0:
            raise FieldError("remeasure_rounds", f"remeasure_rounds must be >= 0, got {self.remeasure_rounds}")
        if not self.remeasure_max_seconds > 0:
            raise FieldError("remeasure_max_seconds", f"must be > 0, got {self.remeasure_max_seconds}")
        if self.finetune_steps < 0:
            raise FieldError("finetune_steps", f"must be >= 0, got {self.finetune_steps}")


def _preflight(cfg: SearchRunConfig) -> None:
    """Every check that needs no data, before any run or profile: files named by the config, the profiling
    run, and writable output, checkpoint and quick-profile folders (UserError naming the field)."""
    from modnas_ops.search import preflight

    preflight(cfg.search)
    ensure_writable(cfg.output_dir, "output_dir")
    if cfg.search.checkpoint_dir:
        ensure_writable(cfg.search.checkpoint_dir, "search.checkpoint_dir")
    if cfg.search.mode == "supernet":
        _dataset(cfg)  # a bad image / .npz / loader fails here, naming the file, before any run (then cached)
    quick_profile = cfg.search.mode == "supernet" and not (cfg.profile_table or cfg.profile_run_id)
    if quick_profile:
        ensure_writable(Path(cfg.quick_profile_output).parent, "quick_profile_output")
        _quick_profile_config(cfg)  # its device configs, rounds, ... fail here, before any run
    if cfg.profile_run_id:
        from modnas_ops import tracking

        if not tracking.run_exists(cfg.profile_run_id):
            raise UserError(f"profile_run_id: no MLflow run {cfg.profile_run_id!r} in this tracking store")


def _quick_profile_config(cfg: SearchRunConfig) -> Any:
    """The profiling campaign a supernet search runs when it is given no table (validated like any config)."""
    import json

    from modnas_ops.config import load_config
    from projects.profile import ProfileConfig

    s = cfg.search.supernet
    data = _dataset(cfg)
    if len(data.input_shape) == 3:
        channels, height, width = data.input_shape
        if height != width:
            raise UserError(f"search.supernet.dataset: the quick profile times square images, not {height}x{width}")
        shape = [f"in_channels={channels}", f"input_size={height}"]
    else:
        shape = [f"sample_shape={json.dumps(list(data.input_shape))}"]
    reserved = {"num_archs", "output", "space", "C", "N", "network_options", "num_classes", "in_channels",
                "input_size", "sample_shape"}  # fmt: skip
    clash = sorted(reserved & set(cfg.quick_profile_options))
    if clash:
        raise FieldError("quick_profile_options", f"{clash[0]} follows from the search config; drop it here")
    overrides = [
        f"num_archs={cfg.quick_profile_archs}",
        f"output={cfg.quick_profile_output}",
        f"space={cfg.search.space}",
        f"C={s.C}",
        f"N={s.N}",
        f"network_options={json.dumps(s.network_options)}",
        *shape,
        f"num_classes={data.num_classes}",
        *(f"{k}={json.dumps(v)}" for k, v in cfg.quick_profile_options.items()),
    ]
    return load_config(ProfileConfig, PROFILE_CONFIG if PROFILE_CONFIG.is_file() else None, overrides)


def _profile_rows(cfg: SearchRunConfig) -> tuple[list[dict[str, Any]], str]:
    """Rows of the profiling table the config names (or of a quick profile of this machine), and source."""
    from profiling.campaign import read_table

    if cfg.profile_table:
        with bad_input(f"profile_table: {cfg.profile_table}"):
            return read_table(cfg.profile_table), cfg.profile_table
    if cfg.profile_run_id:
        from modnas_ops import tracking

        where = f"profile_run_id: run {cfg.profile_run_id}"
        with bad_input(where, (ValueError, OSError, tracking.MlflowException)):
            local = Path(tracking.download_artifacts(cfg.profile_run_id, "profile", tempfile.mkdtemp()))
            tables = sorted(local.rglob("*.csv")) if local.is_dir() else [local]
            if len(tables) != 1:
                raise UserError(f"{where}: expected one profile/*.csv artifact, found {len(tables)}")
            return read_table(tables[0]), f"runs:/{cfg.profile_run_id}/profile/{tables[0].name}"
    from profiling.campaign import run_campaign

    campaign = _quick_profile_config(cfg)
    print(
        f"no profiling table given: quick profile of {cfg.quick_profile_archs} archs + anchors "
        f"-> {campaign.output}"
    )
    result = run_campaign(campaign)
    return result.rows, str(result.path)


@functools.lru_cache(maxsize=4)
def _load_dataset(name: str, seed: int, root: str) -> Any:
    from modnas_ops.data import get_dataset

    return get_dataset(name, seed=seed, root=root or None)


def _dataset(cfg: SearchRunConfig) -> Any:
    """The supernet search's data splits (read once per process: an image folder is not decoded four times)."""
    s = cfg.search.supernet
    return _load_dataset(s.dataset, cfg.search.seed, s.data_root)


def _input_shape(cfg: SearchRunConfig) -> tuple[int, ...]:
    """(C, H, W) of one sample of the search's dataset."""
    return tuple(_dataset(cfg).input_shape)


def _ort_measure(cfg: SearchRunConfig) -> Any:
    """The shortlist's measurement in supernet mode: each candidate subnet timed with onnxruntime on this
    machine's device config (``remeasure_rounds`` rounds, at most ``remeasure_max_seconds`` per config; latency
    measured, other metrics NaN = predicted); None for a latency table's device or a config this machine cannot
    run (its front stays predicted). A subnet's ONNX export is kept across the device configs (one export per
    architecture and batch size)."""
    import numpy as np

    from profiling.latency import DeviceConfig, measure_modules

    shape = _input_shape(cfg)
    candidates: dict[str, Any] = {}  # arch -> its profiling Candidate (ONNX exports per batch size), kept

    def measure(objective: Any, device: Any, genotypes: Sequence[Any]) -> Any:
        name = device.name.split("@")[0]
        try:
            config = DeviceConfig.from_name(name)
        except ValueError:
            print(f"not measured on {name}: a latency table's device, not a config of this machine")
            return None
        try:
            config.check_available()
        except ValueError as e:
            print(f"not measured on {name}: {e}")
            return None
        space, supernet = objective.space, objective.trained_supernet()
        models = {space.to_string(g): supernet.subnet(g) for g in genotypes}
        stats = measure_modules(
            models, shape, [name], make_input=lambda b: space.example_input(shape, b), candidates=candidates,
            rounds=cfg.remeasure_rounds, max_seconds=cfg.remeasure_max_seconds,
        )  # fmt: skip
        out = np.full((len(genotypes), len(objective.metrics)), np.nan)
        out[:, list(objective.metrics).index("latency_ms")] = [stats[(a, name)].median_ms for a in models]
        return out

    return measure


def _description(cfg: SearchRunConfig, result: Any) -> str:
    """The run's description (markdown): what was searched, where the results are, HV per device."""
    m = result.metrics
    data = (f"table `{Path(benchmark_file(cfg)).name}`" if cfg.search.mode == "benchmark"
            else f"dataset `{_dataset(cfg).name}`")  # fmt: skip
    split = {d.name: d.split for d in result.devices}
    lines = [
        f"MODNAS search, {cfg.search.mode} mode: space `{cfg.search.space}`, {data}, {len(result.devices)} devices "
        f"({sum(s == 'train' for s in split.values())} train, {sum(s == 'test' for s in split.values())} zero-shot "
        f"test), objectives {', '.join(f'`{o}`' for o in result.objectives)}, {cfg.search.epochs} epochs, "
        f"{result.wall_time_s:.0f} s.",
        "",
        "Fronts: `fronts/fronts.csv` and `fronts/<device>.png`; the report: `report.html`; registered models: "
        f"`{cfg.generator_model_name or '-'}`, `{cfg.architectures_model_name or '-'}` (alias `{cfg.alias}`).",
        "",
        "Per-epoch `hv/<device>` is the search's own estimate; its last step (= epochs) is the confirmed front's.",
        "",
        "| device | split | hv | hv_ratio |",
        "|---|---|---|---|",
    ]
    for d in result.devices:
        ratio = m.get(f"hv_ratio/{d.name}")
        lines.append(f"| {d.name} | {d.split} | {m[f'hv/{d.name}']:.4f} | {'' if ratio is None else f'{ratio:.4f}'} |")
    return "\n".join(lines)


def _report(cfg: SearchRunConfig, result: Any) -> str:
    """The search's ``report.html`` (see :mod:`modnas_ops.report`)."""
    from modnas_ops import tracking
    from modnas_ops.report import ReportInput, render_report

    m = result.metrics
    cost = {"accuracy queries": m["num_queries"]} if "num_queries" in m else {}
    cost["anchor measurements"] = sum(result.space.num_anchors for _ in result.devices)
    measured = [v for k, v in m.items() if k.startswith("measurements/")]
    if measured:
        cost["shortlist measurements"] = sum(measured)
    if cfg.search.mode == "supernet":
        cost["hypernetwork steps"] = cfg.search.epochs * cfg.search.steps_per_epoch
    data = Path(benchmark_file(cfg)).name if cfg.search.mode == "benchmark" else _dataset(cfg).name
    unit = "%" if cfg.search.mode == "benchmark" else _dataset(cfg).task.error_unit
    summary = {
        "run": tracking.active_run_id(), "mode": cfg.search.mode, "space": cfg.search.space, "data": data,
        "objectives": ", ".join(result.objectives), "devices": len(result.devices), "epochs": cfg.search.epochs,
        "wall time (s)": f"{result.wall_time_s:.1f}", "fingerprint": result.fingerprint[:12],
    }  # fmt: skip
    return render_report(ReportInput(
        title=f"MODNAS search: {cfg.search.space}, {cfg.search.mode} mode", summary=summary,
        devices=[(d.name, d.split) for d in result.devices], objectives=result.objectives, fronts=result.fronts,
        metrics=m, history=result.history, cost=cost, reference=result.reference, error_unit=unit,
    ))  # fmt: skip


def benchmark_file(cfg: SearchRunConfig) -> Path:
    from modnas_ops.search import benchmark_table_file

    return benchmark_table_file(cfg.search)


def _log_inputs(cfg: SearchRunConfig, profile_rows: Any) -> None:
    """The run's dataset inputs, by reference (source + content digest): the benchmark table, or the supernet's
    data splits (context ``training``) and the profiling table (context ``profiling``)."""
    import json

    from modnas_ops import tracking
    from modnas_ops.search import content_hash, file_hash

    if cfg.search.mode == "benchmark":
        table = benchmark_file(cfg)
        digest = file_hash(table, "search.benchmark.table")
        tracking.log_dataset_reference(table.name.split(".")[0], table, digest, context="benchmark")
        return
    data = _dataset(cfg)
    source = data.source or {"mlflow.source.name": f"modnas_ops.data:{data.name}", "seed": str(cfg.search.seed)}
    tags = {"splits": json.dumps(data.sizes()), "input_shape": json.dumps(list(data.input_shape)),
            "classes": data.num_classes, "task": data.task.name}  # fmt: skip
    tracking.log_dataset_reference(data.name, source, data.digest(), context="training", tags=tags)
    if profile_rows is not None:
        digest = content_hash(profile_rows)
        where = cfg.profile_table or cfg.quick_profile_output
        tracking.log_dataset_reference(
            "profile", where if not cfg.profile_run_id else {"mlflow.source.name": f"runs:/{cfg.profile_run_id}"},
            digest, context="profiling", tags={"rows": len(profile_rows)},
        )  # fmt: skip


def _finetune(cfg: SearchRunConfig, result: Any, archs: Sequence[str]) -> tuple[dict[str, Any], dict[str, float]]:
    """Each chosen subnet trained standalone from its supernet weights (``finetune_steps`` of the standalone
    recipe, with the supernet's weight optimizer and learning rate): the networks to register and their test
    errors (the task's: percent, or nats per token)."""
    import torch

    from modnas_ops.standalone import TrainRecipe, train_standalone

    s = cfg.search.supernet
    data = _dataset(cfg)
    recipe = TrainRecipe(steps=cfg.finetune_steps, seed=cfg.search.seed, optimizer=s.weight_optimizer, lr=s.weight_lr)
    device = torch.device(cfg.search.device)
    networks, errors = {}, {}
    for a in archs:
        g = result.space.from_string(a)
        errors[a], networks[a] = train_standalone(
            result.space, g, data, s.network_hparams(), recipe, device, init=result.supernet.subnet(g)
        )
        print(f"fine-tuned {a}: test error {errors[a]:.3f} ({data.task.error_unit})")
    return networks, errors


def _register(cfg: SearchRunConfig, result: Any, fronts: Any) -> None:
    """The generator as a pyfunc (anchors + preferences -> architecture) and, in supernet mode, the chosen
    subnets (fine-tuned standalone unless ``finetune_steps`` is 0) as ONNX models, each registered with
    ``cfg.alias``; their versions carry test error, measured latency, preference and device."""
    from modnas_ops.generator import ParetoGenerator
    from modnas_ops.registration import log_generator, register_architectures

    if cfg.generator_model_name:
        gen = ParetoGenerator(
            result.hypernetwork,
            result.space,
            objectives=result.objectives,
            predictor=result.predictor,
            error_model=result.error_model,
            devices={d.name: {m: [float(x) for x in a] for m, a in d.anchors.items()} for d in result.devices},
        )
        uri, version = log_generator(gen, registered_model_name=cfg.generator_model_name, alias=cfg.alias)
        print(f"generator: {uri} registered as models:/{cfg.generator_model_name}@{cfg.alias} (v{version})")
    if cfg.architectures_model_name and result.supernet is not None and not fronts["on_front"].any():
        print("no architecture below the 90 % error cut on any device: no subnet registered")
    elif cfg.architectures_model_name and result.supernet is not None:
        from profiling.export import export_onnx

        chosen = fronts[fronts["on_front"]].copy()
        s = cfg.search.supernet
        networks = None
        if cfg.finetune_steps:
            networks, errors = _finetune(cfg, result, sorted(set(chosen["arch"])))
            chosen["test_error"] = chosen["arch"].map(errors)
        objectives = [c for c in chosen.columns if c.startswith(("pred_", "true_", "measured_", "test_"))]
        versions = register_architectures(
            chosen[["device", "arch", *[c for c in fronts.columns if c.startswith("pref_")], *objectives]],
            result.space,
            {"num_classes": result.supernet.build_args["num_classes"], **s.network_hparams()},
            export_fn=functools.partial(export_onnx, dynamic=result.space.dynamic_input_axes),
            input_shape=(2 if result.space.dynamic_input_axes else 1, *_input_shape(cfg)),  # >= 2: stays symbolic
            supernet=result.supernet,
            networks=networks,
            objectives=objectives,
            registered_model_name=cfg.architectures_model_name,
            alias=cfg.alias,
        )
        print(f"registered {len(versions)} chosen subnets as ONNX in {cfg.architectures_model_name}")


def _follow(cfg: SearchRunConfig, shard: Any) -> int:
    """A rank > 0 of a distributed search: the same search on its share of the devices; it logs, registers
    and checkpoints nothing (rank 0 does)."""
    import torch

    from modnas_ops.search import run_search

    inject: dict[str, Any] = {}
    if cfg.search.mode == "supernet":
        got: list[Any] = [None]
        torch.distributed.broadcast_object_list(got, src=0)  # rank 0's profiling rows
        inject["profile_rows"] = got[0]
    run_search(cfg.search, progress=False, shard=shard, **inject)
    return 0


def run(cfg: SearchRunConfig) -> int:
    """Preflight, then the search as one MLflow run; prints the per-device summary."""
    _load_dataset.cache_clear()  # the data as it is now (files may have changed since an earlier run here)
    _preflight(cfg)

    import torch

    from modnas_ops import tracking
    from modnas_ops.distributed import from_environment
    from modnas_ops.hypernetwork import save_hypernetwork
    from modnas_ops.search import run_search

    shard = from_environment(torch.device(cfg.search.device))  # under torchrun: this rank's devices
    if shard is not None and shard.rank != 0:
        return _follow(cfg, shard)

    out = Path(cfg.output_dir)
    with tracking.start_run(cfg.run_name, cfg, experiment=cfg.experiment) as run:
        inject: dict[str, Any] = {}
        if cfg.search.mode == "supernet":
            rows, source = _profile_rows(cfg)
            inject["profile_rows"] = rows
            tracking.set_tags({"data.profile": source})
            if shard is not None:  # the other ranks search on the same table
                torch.distributed.broadcast_object_list([rows], src=0)
        tracking.set_tags({"search.mode": cfg.search.mode, "space": cfg.search.space})
        _log_inputs(cfg, inject.get("profile_rows"))

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            tracking.log_metrics(metrics, step=epoch)
            keys = [k for k in metrics if k.startswith(("hv_ratio_mean/", "hv_ratio_min/", "hv_mean/"))]
            print(f"epoch {epoch}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in sorted(keys)), flush=True)

        def on_resume(state: dict[str, Any]) -> None:
            old = str(state.get("run_id", ""))
            status = tracking.adopt_orphan(old, state["history"])
            print(
                f"resuming the search at epoch {int(state['epoch']) + 1} (checkpoint of run {old or '?'}, "
                f"{status or 'unknown'}); its {len(state['history'])} epochs' metrics copied into this run"
            )

        if cfg.search.mode == "supernet" and cfg.remeasure_rounds:
            inject["measure"] = _ort_measure(cfg)
        if shard is not None:
            tracking.set_tags({"distributed.world_size": shard.world_size})
        result = run_search(cfg.search, on_epoch=on_epoch, run_id=run.info.run_id, on_resume=on_resume, shard=shard,
                            **inject)  # fmt: skip
        tracking.log_metrics(result.metrics, step=cfg.search.epochs)
        tracking.log_table(result.fronts, "fronts/fronts.csv")
        out.mkdir(parents=True, exist_ok=True)
        save_hypernetwork(result.hypernetwork, out / "hypernetwork.pt")
        files = [out / "hypernetwork.pt"]
        for name, obj in (("predictor.pt", result.predictor), ("error_model.pt", result.error_model)):
            if obj is not None and callable(getattr(obj, "save", None)):
                obj.save(out / name)
                files.append(out / name)
        if result.supernet is not None:  # the frozen judge: baselines can judge with it (embedded.supernet: modnas)
            from modnas_ops.supernet_training import save_supernet

            files.append(save_supernet(result.supernet, out / "supernet.pt"))
        for f in files:
            tracking.log_artifact(f, "model")
        if result.checkpoint is not None and result.checkpoint.is_file():
            tracking.log_artifact(result.checkpoint, "checkpoint")
        tracking.set_tags({"search.fingerprint": result.fingerprint})
        tracking.set_description(_description(cfg, result))
        tracking.log_text(_report(cfg, result), "report.html")
        fronts = result.fronts  # one row per (device, ray) or archived architecture, with its pref_* columns
        if "measured_latency_ms" in fronts:  # confirmed by the measured shortlist: the predictor's error there
            chosen = fronts[fronts["on_front"] & fronts["measured_latency_ms"].notna()]
            for d, rows in chosen.groupby("device"):
                rel = (rows["pred_latency_ms"] - rows["measured_latency_ms"]).abs() / rows["measured_latency_ms"]
                tracking.log_metrics({f"remeasured_mape/{d}": 100.0 * float(rel.mean())})
        _register(cfg, result, fronts)
        if cfg.plots:
            from modnas_ops.plots import front_figure

            unit = "%"  # benchmark mode: 100 - accuracy; supernet mode: the dataset task's error
            if cfg.search.mode == "supernet":
                unit = _dataset(cfg).task.error_unit
            for d in result.devices:
                hv = {k.split("/")[0]: v for k, v in result.metrics.items() if k.endswith(f"/{d.name}")}
                hv = {k: v for k, v in hv.items() if k in ("hv", "hv_ratio", "hv_reference")}
                rows = result.fronts[result.fronts["device"] == d.name]
                figure = front_figure(rows, d.name, hv, result.objectives, result.reference.get(d.name), unit)
                tracking.log_figure(figure, f"fronts/{d.name}.png")

    m = result.metrics
    print(f"run {run.info.run_id}: {cfg.search.mode} search, {result.wall_time_s:.1f} s")
    print(f"{'device':<20} {'split':<5} {'hv':>7} {'hv_ratio':>8}")
    for d in result.devices:
        ratio = m.get(f"hv_ratio/{d.name}")
        print(
            f"{d.name:<20} {d.split:<5} {m[f'hv/{d.name}']:>7.4f} {'' if ratio is None else f'{ratio:>8.4f}'}"
        )
    if "num_queries" in m:
        print(f"accuracy queries: {int(m['num_queries'])} of {int(m['query_budget'])}")
    return 0



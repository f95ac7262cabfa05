"""The job behind ``projects/fit_predictor.py``: its config, the data it reads and the MLflow run it logs
(imported once the command line is parsed)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modnas_ops.cli import bad_input
from modnas_ops.errors import UserError
from modnas_ops.predictor import FitConfig

PROFILE_CONFIG = Path(__file__).resolve().parent / "configs" / "profile.yaml"


@dataclass(frozen=True)
class FitPredictorConfig:
    source: Literal["auto", "profile", "benchmark"] = "auto"  # auto: whichever is given, else a quick profile
    profile_table: str = ""  # profiling CSV (profiling/campaign.py format)
    profile_run_id: str = ""  # or: an MLflow run of projects/profile.py (its profile/*.csv artifact)
    campaign: str = ""  # or: a team campaign on the tracking server (every agent's rows, profiling.team)
    benchmark: str = ""  # or: the NB201 table (.csv.gz or its directory; "" + source=benchmark: $MODNAS_NB201_TABLE)
    quick_profile_archs: int = 40  # no table given: profile this many sampled archs (+ anchors) first
    quick_profile_output: str = "outputs/profile.csv"  # where the quick profile writes (and resumes)
    space: str = ""  # profiling tables: which space ("" = the table's only one)
    devices: tuple[str, ...] = ()  # () = every device of the data
    test_devices: tuple[str, ...] = ()  # profiling tables: devices held out (zero-shot); NB201: devices.json
    split: tuple[float, ...] = (0.7, 0.1, 0.2)  # train / valid / test fractions of the archs
    split_seed: int = 0
    predictor: FitConfig = field(default_factory=FitConfig)
    registered_model_name: str = "modnas-meta-predictor"  # "" = do not register
    alias: str = "candidate"
    plots: bool = True
    experiment: str = "fit_predictor"
    run_name: str = "fit_predictor"

    def __post_init__(self) -> None:
        given = [n for n in ("profile_table", "profile_run_id", "campaign", "benchmark") if getattr(self, n)]
        if len(given) > 1:
            raise UserError(f"give at most one data source, got {', '.join(given)}")
        if self.source == "benchmark" and (self.profile_table or self.profile_run_id):
            raise UserError("source=benchmark reads the NB201 table; drop profile_table / profile_run_id")
        if self.source == "profile" and self.benchmark:
            raise UserError("source=profile reads a profiling table; drop benchmark")
        if self.quick_profile_archs < 1:
            raise UserError(f"quick_profile_archs must be >= 1, got {self.quick_profile_archs}")
        if len(self.split) != 3 or any(f < 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise UserError(f"split must be 3 non-negative fractions summing to 1, got {list(self.split)}")
        if self.split[1] == 0 or self.split[2] == 0:
            raise UserError("split needs validation (early stopping) and test (metrics) archs")
        if len(set(self.devices)) != len(self.devices) or len(set(self.test_devices)) != len(self.test_devices):
            raise UserError("devices / test_devices list a device twice")
        if self.registered_model_name and not self.alias:
            raise UserError("alias must be set when registering the model")


def _profile_rows(cfg: FitPredictorConfig) -> tuple[list[dict[str, Any]], str]:
    """Rows of the profiling table the config names (or of a quick profile), and where they came from."""
    from profiling.campaign import read_table

    if cfg.profile_table:
        with bad_input(f"profile_table: {cfg.profile_table}"):
            return read_table(cfg.profile_table), str(cfg.profile_table)
    if cfg.campaign:
        import pandas as pd

        from modnas_ops import tracking
        from profiling import team

        campaign = team.open_campaign(cfg.campaign)
        rows = team.gather(campaign)
        source = {"mlflow.source.name": f"runs:/{campaign.run_id}", "campaign": campaign.name}
        tracking.log_dataset(pd.DataFrame(rows), name=f"campaign-{campaign.name}", source=source, context="profiling")
        return rows, f"campaign {campaign.name} ({len(team.agent_runs(campaign))} agent runs)"
    if cfg.profile_run_id:
        from modnas_ops import tracking

        local = Path(tracking.download_artifacts(cfg.profile_run_id, "profile", tempfile.mkdtemp()))
        tables = sorted(local.rglob("*.csv")) if local.is_dir() else [local]
        if len(tables) != 1:
            raise UserError(f"run {cfg.profile_run_id}: expected one profile/*.csv artifact, found {len(tables)}")
        return read_table(tables[0]), f"runs:/{cfg.profile_run_id}/profile/{tables[0].name}"
    from modnas_ops.config import load_config
    from profiling.campaign import run_campaign
    from projects.profile import ProfileConfig  # profile.yaml's schema (CampaignConfig + run names)

    overrides = [f"num_archs={cfg.quick_profile_archs}", f"output={cfg.quick_profile_output}"]
    if cfg.space:
        overrides.append(f"space={cfg.space}")
    campaign = load_config(ProfileConfig, PROFILE_CONFIG if PROFILE_CONFIG.is_file() else None, overrides)
    print(f"no table given: quick profile of {cfg.quick_profile_archs} archs + anchors -> {campaign.output}")
    result = run_campaign(campaign)
    return result.rows, str(result.path)


def _load_devices(cfg: FitPredictorConfig) -> tuple[list[Any], Any, str]:
    """(DeviceMeasurements list, space, source description), restricted to ``cfg.devices``."""
    from modnas_ops.predictor import measurements_from_profile, measurements_from_table
    from modnas_ops.spaces import get_search_space

    if cfg.benchmark or cfg.source == "benchmark":
        from modnas_ops.benchmarks import load_table

        with bad_input("benchmark"):
            table = load_table(cfg.benchmark or None)
        if cfg.test_devices:
            raise UserError("test_devices applies to profiling tables; the NB201 table's devices.json sets them")
        with bad_input("devices", (ValueError,)):
            devices = measurements_from_table(table, cfg.devices or None)
        return devices, table.space, str(table.path)
    rows, source = _profile_rows(cfg)
    with bad_input(f"profile table {source}", (ValueError,)):
        devices = measurements_from_profile(rows, cfg.space or None, test_devices=cfg.test_devices)
    known = [d.name for d in devices]
    unknown = [d for d in cfg.devices if d not in known]
    if unknown:
        raise UserError(f"devices: unknown device {unknown[0]!r}; the table has: {', '.join(known)}")
    if cfg.devices:
        devices = [d for d in devices if d.name in cfg.devices]
    space = get_search_space(cfg.space) if cfg.space else get_search_space(str(rows[0]["space"]))
    return devices, space, source


def scatter_figure(name: str, split: str, true: Any, pred: Any, metrics: dict[str, float]) -> Any:
    """Predicted vs measured latency of one device's test archs."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.scatter(true, pred, s=4, alpha=0.4, lw=0, rasterized=True)
    lo, hi = float(np.min([true.min(), pred.min()])), float(np.max([true.max(), pred.max()]))
    ax.plot([lo, hi], [lo, hi], c="0.5", lw=1, ls="--")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(
        f"{name} ({split}): tau {metrics['kendall_tau']:.3f}, rho {metrics['spearman']:.3f}, "
        f"MAPE {metrics['mape']:.1f} %",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.12, top=0.92)
    return fig


def run(cfg: FitPredictorConfig) -> int:

    import numpy as np
    import pandas as pd

    from modnas_ops import tracking
    from modnas_ops.predictor import (
        ARTIFACT_KEY,
        LatencyService,
        denormalise,
        fit_meta_predictor,
        pip_requirements,
        split_architectures,
    )
    from modnas_ops.predictor_baselines import ranking_metrics

    with tracking.start_run(cfg.run_name, cfg, experiment=cfg.experiment) as run:
        devices, space, source = _load_devices(cfg)
        tracking.set_tags({"data.source": source, "data.devices": len(devices), "space": space.name})
        split = split_architectures(space, devices, cfg.split, seed=cfg.split_seed)
        result = fit_meta_predictor(devices, cfg.predictor, split=split, space=space)
        model = result.model
        for h in result.history:
            tracking.log_metrics({"train_loss": h["train_loss"], "valid_loss": h["valid_loss"]}, step=int(h["epoch"]))
        summary: list[dict[str, Any]] = []
        figures = []
        for d in devices:
            rows = split.rows(space, d.genotypes, "test")
            if len(rows) < 2:
                continue
            x = model.encode(d.genotypes[rows].tolist())
            pred = denormalise(model.predict_normalised(x, d.embedding)[:, 0], d.anchor_values["latency_ms"])
            true = d.values["latency_ms"][rows]
            m = ranking_metrics(pred, true)
            summary.append({"device": d.name, "split": d.split, "num_test_archs": len(rows), **m})
            if cfg.plots:
                figures.append((d.name, scatter_figure(d.name, d.split, true, pred, m)))
        if not summary:
            raise UserError("no device has >= 2 test architectures; profile more archs or change split")
        metrics: dict[str, float] = {}
        for r in summary:
            for key in ("kendall_tau", "spearman", "mape"):
                metrics[f"{key}/{r['device']}"] = r[key]
        for part in ("train", "test"):
            taus = [r["kendall_tau"] for r in summary if r["split"] == part]
            if taus:
                metrics[f"kendall_tau_mean/{part}_devices"] = float(np.mean(taus))
        metrics.update({"fit_seconds": result.wall_time_s, "best_epoch": result.best_epoch})
        tracking.log_metrics(metrics)
        tracking.log_table(pd.DataFrame(summary), "metrics.csv")
        for name, fig in figures:
            tracking.log_figure(fig, f"plots/{name}.png")

        with tempfile.TemporaryDirectory() as tmp:
            path = model.save(Path(tmp) / "predictor.pt")
            tracking.log_artifact(path, "predictor")
            service = LatencyService(model)
            first = devices[0]
            example = service.example_input(
                first.anchor_values["latency_ms"], [space.to_string(g) for g in space.anchors()[:3]]
            )
            uri, version = tracking.log_library_model(
                name="meta_predictor",
                loader="modnas_ops.predictor:load_pyfunc",
                artifacts={ARTIFACT_KEY: str(path)},
                input_example=example,
                output_example=service.predict(example),
                pip_requirements=pip_requirements(),
                registered_model_name=cfg.registered_model_name or None,
                alias=cfg.alias if cfg.registered_model_name else None,
                tags={"metrics": ",".join(model.metrics), "space": space.name, "run_id": run.info.run_id},
            )

    print(f"run {run.info.run_id}: MetaPredictor ({cfg.predictor.net}) on {len(devices)} devices from {source}")
    print(f"fit {result.wall_time_s:.1f} s, best epoch {result.best_epoch}; model {uri}", end="")
    print(f", registered {cfg.registered_model_name} v{version} @{cfg.alias}" if version else "")
    print(f"{'device':<24} {'split':<6} {'archs':>5} {'tau':>6} {'rho':>6} {'MAPE%':>7}")
    for r in summary:
        print(
            f"{r['device']:<24} {r['split']:<6} {r['num_test_archs']:>5d} {r['kendall_tau']:>6.3f} "
            f"{r['spearman']:>6.3f} {r['mape']:>7.1f}"
        )
    return 0

"""Team profiling campaigns on an MLflow tracking server: one campaign, many device hosts, nothing lost or
measured twice. The tracking server (and its database) is the only coordinator.

A campaign ``NAME`` is the experiment ``campaign/NAME`` holding one *campaign run* (tag ``modnas.role =
campaign``): its params are the profiling config (space, network, archs, rounds, ... :class:`CampaignConfig`
less the device list and output), so every agent derives the same architecture list
(``select_architectures``, deterministic in the config) and the work is cut into chunks of ``chunk_size``
architectures. Agents coordinate through two primitives of the tracking store:

- **claim**: an agent takes chunk ``j`` for device config ``d`` by logging the param ``claim/<d>/<j> =
  <agent id>`` on the campaign run. MLflow params are write-once (the database's primary key on (run, key));
  a second agent logging another value gets an error, so exactly one agent owns a chunk, however many start
  at the same instant. Logging the same value again succeeds: an agent restarted with its id (default
  ``<device>@<host>``) takes its unfinished chunks back.
- **result**: the agent logs the chunk's rows as the artifact ``measurements/<d>/chunk-<j>.csv`` of its own
  *agent run* (tag ``modnas.role = agent``, child of the campaign run) as soon as the chunk is measured. A chunk
  is done when that artifact exists in some agent run; :func:`gather` concatenates every agent's chunks into
  one profiling table.

A killed agent loses at most the chunk it was measuring (and not even that on the same host: the agent also
appends to a local resumable table, :func:`profiling.campaign.run_campaign`); restarted, it resumes its own
agent run and re-measures only what was never logged.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modnas_ops.errors import UserError

log = logging.getLogger(__name__)

ROLE_TAG = "modnas.role"
CAMPAIGN_TAG = "modnas.campaign"
DEVICE_TAG = "modnas.device"
AGENT_TAG = "modnas.agent_id"
PER_HOST_FIELDS = ("devices", "add_cuda_devices", "output")  # what each agent sets for itself, not the campaign


def experiment_name(campaign: str) -> str:
    return f"campaign/{campaign}"


def safe_key(text: str) -> str:
    """A device config name as an MLflow key / artifact path component (``gpu:0`` -> ``gpu-0``)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", text)


def claim_key(device: str, chunk: int) -> str:
    return f"claim/{safe_key(device)}/{chunk:05d}"


def chunk_artifact(device: str, chunk: int) -> str:
    return f"measurements/{safe_key(device)}/chunk-{chunk:05d}.csv"


@dataclass(frozen=True)
class Campaign:
    name: str
    experiment_id: str
    run_id: str
    config: Mapping[str, Any]  # the campaign run's params: CampaignConfig fields less PER_HOST_FIELDS


def _client() -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def create_campaign(name: str, config: Any) -> Campaign:
    """The campaign ``name`` with ``config`` (a :class:`profiling.config.CampaignConfig`; its devices and
    output are each agent's own). Creating it again with the same config returns it; another config is a
    ``UserError`` (a campaign's architectures never change under its agents)."""
    import json

    from mlflow.exceptions import MlflowException

    client = _client()
    params = {k: json.dumps(v) for k, v in dataclasses.asdict(config).items() if k not in PER_HOST_FIELDS}
    exp = client.get_experiment_by_name(experiment_name(name))
    if exp is None:
        try:
            tags = {CAMPAIGN_TAG: name, "mlflow.experimentKind": "custom_model_development"}
            exp_id = client.create_experiment(experiment_name(name), tags=tags)
        except MlflowException:  # created meanwhile by another process
            exp_id = client.get_experiment_by_name(experiment_name(name)).experiment_id
    else:
        exp_id = exp.experiment_id
    existing = _campaign_runs(client, exp_id)
    if not existing:
        run = client.create_run(exp_id, run_name=f"campaign-{name}", tags={ROLE_TAG: "campaign", CAMPAIGN_TAG: name})
        from mlflow.entities import Param

        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        client.set_terminated(run.info.run_id, "FINISHED")
        existing = _campaign_runs(client, exp_id)
    campaign = _campaign(name, exp_id, existing)
    if dict(campaign.config) != {k: json.loads(v) for k, v in params.items()}:
        diff = sorted(k for k in params if json.loads(params[k]) != campaign.config.get(k))
        raise UserError(f"campaign {name!r} exists with another config (differs in {', '.join(diff)}); "
                        "choose a new campaign name")  # fmt: skip
    return campaign


def _campaign_runs(client: Any, exp_id: str) -> list[Any]:
    return client.search_runs([exp_id], filter_string=f"tags.`{ROLE_TAG}` = 'campaign'", order_by=["start_time ASC"])


def _campaign(name: str, exp_id: str, runs: Sequence[Any]) -> Campaign:
    import json

    if len(runs) != 1:
        ids = ", ".join(r.info.run_id for r in runs)
        raise UserError(f"campaign {name!r}: expected one campaign run, found {len(runs)} ({ids})")
    run = runs[0]
    config = {k: json.loads(v) for k, v in run.data.params.items() if not k.startswith("claim/")}
    return Campaign(name, exp_id, run.info.run_id, config)


def open_campaign(name: str) -> Campaign:
    """The existing campaign ``name`` (``UserError`` naming it when the server has none)."""
    client = _client()
    exp = client.get_experiment_by_name(experiment_name(name))
    if exp is None:
        raise UserError(f"campaign {name!r}: no experiment {experiment_name(name)!r} on this tracking server; "
                        "create it first (modnas profile-agent --create ...)")  # fmt: skip
    return _campaign(name, exp.experiment_id, _campaign_runs(client, exp.experiment_id))


def claim(campaign: Campaign, device: str, chunk: int, agent_id: str) -> bool:
    """Take chunk ``chunk`` for ``device`` (True), unless another agent holds it (False). Atomic: the
    tracking store refuses a second value of a param."""
    from mlflow.exceptions import MlflowException

    client = _client()
    key = claim_key(device, chunk)
    try:
        client.log_param(campaign.run_id, key, agent_id)
        return True
    except MlflowException:
        holder = client.get_run(campaign.run_id).data.params.get(key)
        if holder is None:
            raise  # not a lost race: an error of the server's
        return holder == agent_id


def claims(campaign: Campaign) -> dict[tuple[str, int], str]:
    """{(device key, chunk): agent id} of every claim so far."""
    out = {}
    for k, v in _client().get_run(campaign.run_id).data.params.items():
        if k.startswith("claim/"):
            _, device, chunk = k.split("/")
            out[(device, int(chunk))] = v
    return out


def agent_runs(campaign: Campaign, device: str | None = None) -> list[Any]:
    filt = f"tags.`{ROLE_TAG}` = 'agent'"
    if device is not None:
        filt += f" and tags.`{DEVICE_TAG}` = '{safe_key(device)}'"
    return _client().search_runs([campaign.experiment_id], filter_string=filt, order_by=["start_time ASC"])


def agent_run_id(campaign: Campaign, device: str, agent_id: str) -> str | None:
    """The agent run an agent id already has (to resume), or None."""
    runs = [r for r in agent_runs(campaign, device) if r.data.tags.get(AGENT_TAG) == agent_id]
    return runs[0].info.run_id if runs else None


def agent_tags(campaign: Campaign, device: str, agent_id: str, host: str) -> dict[str, str]:
    return {ROLE_TAG: "agent", CAMPAIGN_TAG: campaign.name, DEVICE_TAG: safe_key(device), AGENT_TAG: agent_id,
            "modnas.host": host, "mlflow.parentRunId": campaign.run_id}  # fmt: skip


def done_chunks(campaign: Campaign, device: str) -> set[int]:
    """Chunks of ``device`` whose rows some agent run has logged."""
    client = _client()
    done = set()
    for run in agent_runs(campaign, device):
        for f in client.list_artifacts(run.info.run_id, f"measurements/{safe_key(device)}"):
            m = re.fullmatch(r".*chunk-(\d+)\.csv", f.path)
            if m:
                done.add(int(m.group(1)))
    return done


def gather(campaign: Campaign) -> list[dict[str, Any]]:
    """Every agent's logged rows as one profiling table (``profiling.campaign`` rows); a pair logged twice
    with different values is refused by :func:`profiling.campaign.concat_tables`."""
    import tempfile
    from pathlib import Path

    import mlflow

    from .campaign import concat_tables

    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(agent_runs(campaign)):
            try:
                local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="measurements",
                                                                 dst_path=str(Path(tmp) / str(i))))  # fmt: skip
            except Exception as e:  # an agent killed before its first chunk has no measurements/
                log.info("agent run %s: no measurements (%s)", run.info.run_id, e)
                continue
            tables += sorted(local.rglob("chunk-*.csv"))
        if not tables:
            raise UserError(f"campaign {campaign.name!r}: no measurements logged yet")
        return concat_tables(tables)


def log_chunk(run_id: str, device: str, chunk: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Log a measured chunk's rows as ``measurements/<device>/chunk-<j>.csv`` of the agent run ``run_id``."""
    import tempfile
    from pathlib import Path

    from .campaign import write_table

    with tempfile.TemporaryDirectory() as tmp:
        path = write_table(list(rows), Path(tmp) / f"chunk-{chunk:05d}.csv")
        _client().log_artifact(run_id, str(path), artifact_path=f"measurements/{safe_key(device)}")


__all__ = [
    "Campaign",
    "agent_run_id",
    "agent_runs",
    "agent_tags",
    "chunk_artifact",
    "claim",
    "claims",
    "create_campaign",
    "done_chunks",
    "gather",
    "log_chunk",
    "open_campaign",
]

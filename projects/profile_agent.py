"""MLflow entry point: a profiling agent on a device host joins a team campaign on the tracking server.

    python -m projects.profile_agent --campaign NAME --device CONFIG [--agent-id ID] [--workdir DIR]
    python -m projects.profile_agent --campaign NAME --create [--config YAML] [--set key=value ...]

``--create`` makes the campaign ``NAME`` once (experiment ``campaign/NAME``; its architectures and timing
settings from ``projects/configs/profile.yaml`` + ``--set``) and exits. An agent takes the campaign's chunks
of architectures not yet measured for its device config, one atomic claim at a time (two agents of one config
split the work), measures each with ``profiling/`` and logs its rows as soon as it is done; restarted with the
same ``--agent-id`` (default ``<device>@<host>``) it resumes its own run and measures only what was never
logged (see :mod:`profiling.team`). Point ``MLFLOW_TRACKING_URI`` at the team's server. Bad input: one line
on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # run as a script: import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from modnas_ops.cli import add_config_arguments, config_from_args, run_main

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "profile.yaml"


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", required=True, help="campaign name (experiment campaign/NAME)")
    parser.add_argument("--create", action="store_true", help="create the campaign from --config / --set and exit")
    parser.add_argument("--device", default=None, help="this host's device config, e.g. cpu-ort-t1-b1")
    parser.add_argument("--agent-id", default=None, help="stable id of this agent (default: <device>@<host>)")
    parser.add_argument("--workdir", default="outputs/agents", help="local resumable tables of this host")
    add_config_arguments(parser, DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    if not args.create and not args.device:
        parser.error("give --device (join the campaign) or --create")

    import platform
    import time

    from modnas_ops.config import load_config
    from modnas_ops.errors import UserError
    from profiling import team
    from profiling.config import CampaignConfig

    if args.create:
        import dataclasses

        from projects.profile import ProfileConfig  # profile.yaml's schema: CampaignConfig + run names

        full = config_from_args(ProfileConfig, args)
        cfg = CampaignConfig(**{f.name: getattr(full, f.name) for f in dataclasses.fields(CampaignConfig)})
        campaign = team.create_campaign(args.campaign, cfg)
        print(f"campaign {campaign.name}: experiment {campaign.experiment_id}, campaign run {campaign.run_id}")
        return 0

    campaign = team.open_campaign(args.campaign)
    host = platform.node()
    agent_id = args.agent_id or f"{args.device}@{host}"
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    import json

    overrides = [f"{k}={json.dumps(v)}" for k, v in campaign.config.items()]
    overrides += [f"devices={json.dumps([args.device])}", "add_cuda_devices=false",
                  f"output={workdir / f'{team.safe_key(campaign.name)}-{team.safe_key(args.device)}.csv'}"]  # fmt: skip
    cfg = load_config(CampaignConfig, None, overrides)
    for d in cfg.device_configs():
        try:
            d.check_available()
        except ValueError as e:
            raise UserError(f"device: {e}") from None

    from mlflow.tracking import MlflowClient

    from modnas_ops.spaces import get_search_space
    from profiling.campaign import run_campaign, select_architectures

    client = MlflowClient()
    run_id = team.agent_run_id(campaign, args.device, agent_id)
    if run_id is None:
        tags = team.agent_tags(campaign, args.device, agent_id, host)
        run_id = client.create_run(campaign.experiment_id, run_name=agent_id, tags=tags).info.run_id
        print(f"agent {agent_id}: new run {run_id}")
    else:
        client.update_run(run_id, status="RUNNING")
        print(f"agent {agent_id}: resuming run {run_id}")
    space = get_search_space(cfg.space)
    archs = select_architectures(space, cfg.num_archs, cfg.seed, cfg.stratified_fraction, cfg.anchors)
    chunks = [archs[i : i + cfg.chunk_size] for i in range(0, len(archs), cfg.chunk_size)]
    from modnas_ops.tracking import sigterm_raises

    status, measured, start = "FAILED", 0, time.perf_counter()
    try:
        with sigterm_raises():  # SIGTERM ends the run KILLED, like Ctrl-C
            done = team.done_chunks(campaign, args.device)
            for j, chunk in enumerate(chunks):
                if j in done or not team.claim(campaign, args.device, j, agent_id):
                    continue
                result = run_campaign(cfg, archs=chunk, progress=False)
                names = {a.arch for a in chunk}
                rows = [r for r in result.rows if r["arch"] in names and r["device"] == args.device]
                team.log_chunk(run_id, args.device, j, rows)
                measured += len(rows)
                client.log_metric(run_id, "pairs_logged", measured, step=j)
                print(f"agent {agent_id}: chunk {j + 1}/{len(chunks)} logged ({len(rows)} archs)", flush=True)
            seconds = time.perf_counter() - start
            client.log_metric(run_id, "agent_seconds", seconds)
            if measured:
                client.log_metric(run_id, "pairs_per_min", 60.0 * measured / seconds)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(run_id, status)
    print(f"agent {agent_id}: {measured} pairs logged in {time.perf_counter() - start:.1f} s; campaign "
          f"{campaign.name} has {len(team.done_chunks(campaign, args.device))}/{len(chunks)} chunks of {args.device}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

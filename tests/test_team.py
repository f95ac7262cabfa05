"""Running as a team, with the real components: a throw-away PostgreSQL cluster (run as the postgres user), the
team's ``mlflow server`` on it (``projects/tracking_server.py``), profiling agents as separate processes that
start at the same instant — three device configs plus a second agent of one config — one of them killed with
SIGKILL mid-campaign and restarted; then ``fit_predictor --campaign`` on everything they logged."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, running

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ("cpu-ort-t1-b1", "cpu-ort-t2-b1", "cpu-ort-t1-b32")
CAMPAIGN = ["--set", "num_archs=10", "--set", "rounds=3", "--set", "repeats=2", "--set", "chunk_size=2",
            "--set", "energy=false", "--set", "max_seconds=5"]  # fmt: skip


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away cluster under a temp dir, run as the postgres user, on 127.0.0.1; yields its URI."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL as the postgres user needs root here")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user on this machine")
    data = Path(tempfile.mkdtemp(prefix="modnas-pg-"))
    shutil.chown(data, "postgres", "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "-E", "UTF8",
                    "--locale=C.UTF-8", "-A", "trust"], check=True, capture_output=True)  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-o",
                    options, "start"], check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([*as_pg, "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c",
                        "CREATE DATABASE mlflow"], check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("team-server")
    port = free_port()
    cmd = [sys.executable, "-m", "projects.tracking_server", "--backend-store-uri", postgres,
           "--artifacts-destination", str(root / "artifacts"), "--port", str(port), "--workers", "2"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running(cmd, root / "server.log", f"{url}/health", cwd=ROOT):
        yield url


def _env(server: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": server, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)
    return env


def _agent(server: str, device: str, agent_id: str, workdir: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "projects.profile_agent", "--campaign", "team", "--device", device,
           "--agent-id", agent_id, "--workdir", str(workdir)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, env=_env(server))


def test_agents_measure_every_pair_once_and_one_predictor_fits_them_all(server, tmp_path, monkeypatch) -> None:
    import mlflow

    from modnas_ops.spaces import get_search_space
    from profiling import team
    from profiling.campaign import select_architectures

    env = _env(server)
    create = [sys.executable, "-m", "projects.profile_agent", "--campaign", "team", "--create", *CAMPAIGN]
    subprocess.run(create, check=True, cwd=ROOT, env=env, capture_output=True)
    again = subprocess.run([*create, "--set", "seed=1"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "exists with another config (differs in seed)" in again.stderr

    agents = {  # agent id -> device; two agents share cpu-ort-t1-b1 and must split its chunks
        "b1-a": DEVICES[0], "b1-b": DEVICES[0], "t2": DEVICES[1], "b32": DEVICES[2],
    }  # fmt: skip
    started = time.monotonic()
    procs = {a: _agent(server, d, a, tmp_path / "work", tmp_path / f"{a}.log") for a, d in agents.items()}
    deadline = time.monotonic() + 300
    while "logged" not in (tmp_path / "b32.log").read_text():  # kill b32 once it has logged a chunk
        assert procs["b32"].poll() is None, (tmp_path / "b32.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    procs["b32"].send_signal(signal.SIGKILL)
    procs["b32"].wait()
    first = (tmp_path / "b32.log").read_text()
    procs["b32"] = _agent(server, DEVICES[2], "b32", tmp_path / "work", tmp_path / "b32-restart.log")
    for a, p in procs.items():
        assert p.wait(timeout=600) == 0, (tmp_path / f"{a}.log").read_text()[-3000:]
    restart = (tmp_path / "b32-restart.log").read_text()
    assert "resuming run" in restart and restart.split("resuming run ")[1].split()[0] in first  # the same run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    mlflow.set_tracking_uri(server)
    try:
        campaign = team.open_campaign("team")
        rows = team.gather(campaign)
        archs = [a.arch for a in select_architectures(get_search_space("nb201"), 10, 0)]  # 10 anchors + 10
        chunks = range(len(archs) // 2)
        got = sorted((r["device"], r["arch"]) for r in rows)
        assert got == sorted(itertools.product(DEVICES, archs))  # every pair, none twice, none lost
        owners = team.claims(campaign)
        b1 = [owners[(DEVICES[0], j)] for j in chunks]
        assert set(b1) == {"b1-a", "b1-b"}  # the two agents of one config split its chunks
        assert all(owners[(DEVICES[2], j)] == "b32" for j in chunks)
        statuses = {r.data.tags[team.AGENT_TAG]: r.info.status for r in team.agent_runs(campaign)}
        assert statuses == dict.fromkeys(agents, "FINISHED")
        for r in team.agent_runs(campaign):  # the README's throughput figures (pytest -s shows them)
            m = r.data.metrics
            print(f"agent {r.data.tags[team.AGENT_TAG]}: {m.get('pairs_logged', 0):.0f} pairs, "
                  f"{m.get('pairs_per_min', 0):.1f} pairs/min, {m.get('agent_seconds', 0):.1f} s (last start)")
        print(f"campaign: {len(rows)} pairs from {len(agents)} agents in {time.monotonic() - started:.1f} s")

        fit = subprocess.run(
            [sys.executable, "-m", "projects.fit_predictor", "--campaign", "team", "--set", "predictor.epochs=30",
             "--set", "split=[0.5,0.2,0.3]",
             "--set", "registered_model_name=", "--set", "plots=false"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert fit.returncode == 0, "\n".join(x for x in fit.stderr.splitlines() if "it/s" not in x)[-3000:]
        client = mlflow.tracking.MlflowClient()
        (run,) = client.search_runs([client.get_experiment_by_name("fit_predictor").experiment_id])
        assert {f"kendall_tau/{d}" for d in DEVICES} <= set(run.data.metrics)
        (data,) = run.inputs.dataset_inputs
        assert data.dataset.name == "campaign-team" and '"num_rows": 60' in data.dataset.profile
    finally:
        mlflow.set_tracking_uri(None)


def test_basic_auth_server_on_postgres_refuses_anonymous_and_hides_the_password(postgres, tmp_path) -> None:
    import base64
    import urllib.error

    auth_db = postgres.rsplit("/", 1)[0] + "/mlflow_auth"
    pg_port = postgres.split(":")[-1].split("/")[0]
    psql = ["runuser", "-u", "postgres", "--", "psql", "-h", "127.0.0.1", "-p", pg_port, "-U", "postgres"]
    subprocess.run([*psql, "-c", "CREATE DATABASE mlflow_auth"], check=True, capture_output=True)
    port = free_port()
    password = "a-long-admin-password-1"
    env = {**_env("unused"), "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32}
    cmd = [sys.executable, "-m", "projects.tracking_server", "--backend-store-uri", postgres,
           "--artifacts-destination", str(tmp_path / "a"), "--port", str(port), "--workers", "1", "--auth",
           "--auth-database-uri", auth_db]  # fmt: skip
    log = tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
    with running(cmd, log, url, env=env, cwd=ROOT) as proc:
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(url, timeout=10)
        assert anonymous.value.code == 401  # an anonymous request is refused
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        assert password not in cmdline and password not in log.read_text()

"""The team's MLflow tracking server: PostgreSQL backend store, proxied artifacts, 127.0.0.1 unless told.

    python -m projects.tracking_server --backend-store-uri postgresql+psycopg2://USER@HOST:PORT/DB \\
        --artifacts-destination DIR [--host 127.0.0.1] [--port 5000] [--workers 2] [--auth] [--dry-run]

Runs ``mlflow server`` with ``--artifacts-destination`` (clients see ``mlflow-artifacts:`` URIs and never
touch the artifact store themselves). ``--auth`` adds MLflow's basic auth (``--app-name basic-auth``): the
admin password and the Flask secret key come from the environment (``MLFLOW_AUTH_ADMIN_PASSWORD``, >= 12
characters, and ``MLFLOW_FLASK_SERVER_SECRET_KEY``; never from arguments, so they reach no process list or log),
the auth database lives in the same PostgreSQL server (``--auth-database-uri``, default: the backend store),
and the login cache is on (``auth_cache_ttl_seconds``: a request then costs ~11 ms instead of ~0.3 s of
password hashing). ``postgresql://`` URIs are rewritten to ``postgresql+psycopg2://`` (SQLAlchemy 2.1 would
pick psycopg 3). ``--dry-run`` prints the command (credentials masked) instead of running it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from modnas_ops.cli import run_main
from modnas_ops.errors import UserError

MIN_PASSWORD = 12


def psycopg2_uri(uri: str) -> str:
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", uri)


def mask(uri: str) -> str:
    """``uri`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", uri)


def auth_ini(database_uri: str, cache_ttl_s: int) -> str:
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {cache_ttl_s}\n"
    )


def server_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """(argv of ``mlflow server``, extra environment) for the parsed options; UserError on bad ones."""
    if not re.match(r"^(postgres(ql)?(\+psycopg2)?|sqlite)://", args.backend_store_uri):
        raise UserError(f"--backend-store-uri: expected postgresql://... (or sqlite:// for a trial), got "
                        f"{mask(args.backend_store_uri)!r}")  # fmt: skip
    store = psycopg2_uri(args.backend_store_uri)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
           "--artifacts-destination", str(args.artifacts_destination), "--host", args.host, "--port", str(args.port),
           "--workers", str(args.workers)]  # fmt: skip
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    if args.auth:
        password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"--auth: set MLFLOW_AUTH_ADMIN_PASSWORD (>= {MIN_PASSWORD} characters) in the environment")
        if not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
            raise UserError("--auth: set MLFLOW_FLASK_SERVER_SECRET_KEY (a long random string) in the environment")
        ini = Path(tempfile.mkdtemp(prefix="mlflow-auth-")) / "basic_auth.ini"
        ini.write_text(auth_ini(psycopg2_uri(args.auth_database_uri or args.backend_store_uri), args.auth_cache_ttl))
        ini.chmod(0o600)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        cmd += ["--app-name", "basic-auth"]
    return cmd, env


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend-store-uri", required=True, help="postgresql://USER@HOST:PORT/DB")
    parser.add_argument("--artifacts-destination", required=True, help="where the server keeps artifacts")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this host only)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--auth", action="store_true", help="basic auth (password and secret key from the env)")
    parser.add_argument("--auth-database-uri", default="", help="auth users' database (default: the backend's)")
    parser.add_argument("--auth-cache-ttl", type=int, default=60, help="seconds a checked login is cached")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    args = parser.parse_args(argv)
    cmd, env = server_command(args)
    if args.dry_run:
        print(" ".join(mask(c) for c in cmd))
        return 0
    os.execve(cmd[0], cmd, {**os.environ, **env})  # the server replaces this process (signals reach it)
    return 0  # unreachable


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

"""projects/tracking_server.py: the command it runs, without starting a server."""

from __future__ import annotations

import pytest

from projects.tracking_server import main, mask, psycopg2_uri


def test_dry_run_binds_localhost_proxies_artifacts_and_masks_credentials(capsys) -> None:
    assert main(["--backend-store-uri", "postgresql://team:secret@db:5432/mlflow", "--artifacts-destination", "/srv/a",
                 "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "--host 127.0.0.1" in out and "--artifacts-destination /srv/a" in out
    assert "postgresql+psycopg2://team:***@db:5432/mlflow" in out and "secret" not in out


def test_auth_needs_its_secrets_in_the_environment(monkeypatch, capsys) -> None:
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    argv = ["--backend-store-uri", "postgresql://u@h/db", "--artifacts-destination", "/a", "--auth", "--dry-run"]
    assert main(argv) == 2
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "short")
    assert main(argv) == 2
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "long-enough-password")
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "x" * 32)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "--app-name basic-auth" in out and "long-enough-password" not in out


@pytest.mark.parametrize(("uri", "want"), [("postgres://u@h/d", "postgresql+psycopg2://u@h/d"),
                                           ("postgresql://u@h/d", "postgresql+psycopg2://u@h/d"),
                                           ("postgresql+psycopg2://u@h/d", "postgresql+psycopg2://u@h/d")])  # fmt: skip
def test_uri_rewriting(uri, want) -> None:
    assert psycopg2_uri(uri) == want
    assert mask("postgresql://u:pw@h/d") == "postgresql://u:***@h/d"


def test_bad_store_uri_is_a_usage_error(capsys) -> None:
    assert main(["--backend-store-uri", "mysql://x", "--artifacts-destination", "/a", "--dry-run"]) == 2
    assert "expected postgresql://" in capsys.readouterr().err

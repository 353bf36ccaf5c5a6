"""Settings come from the seed's variable names, the environment winning over .env."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudgrpc_proto import environment
from cloudgrpc_server.config import load_settings

SEED_VARS = ("DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD",
             "GMAIL_USER", "GMAIL_APP_PASSWORD", "SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY",
             "DATA_DIR", "REPLICATION_FACTOR")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in SEED_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDGRPC_ENV_FILE", str(tmp_path / ".env"))
    monkeypatch.setattr(environment, "_loaded", None)
    return monkeypatch


def test_embedded_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///data/cloudgrpc.db"
    assert not s.mail_configured and s.replication_factor == 2
    assert s.default_quota_bytes == 1024**3


def test_seed_db_variables_make_a_postgres_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DB_HOST", "db.internal")
    clean_env.setenv("DB_NAME", "cloud_storage")
    clean_env.setenv("DB_USER", "cloud_admin")
    clean_env.setenv("DB_PASSWORD", "p@ss word")
    s = load_settings()
    assert s.database_url == (
        "postgresql+psycopg2://cloud_admin:p%40ss+word@db.internal:5432/cloud_storage")


def test_gmail_defaults_and_env_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "GMAIL_USER=me@gmail.com\nGMAIL_APP_PASSWORD='abcd efgh'\nREPLICATION_FACTOR=3\n")
    clean_env.setenv("REPLICATION_FACTOR", "2")  # the environment wins over .env
    s = load_settings()
    assert (s.smtp_host, s.smtp_port, s.smtp_security) == ("smtp.gmail.com", 465, "ssl")
    assert s.smtp_password == "abcd efgh" and s.replication_factor == 2


def test_malformed_number_names_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REPLICATION_FACTOR", "two")
    with pytest.raises(environment.ConfigError, match="REPLICATION_FACTOR"):
        load_settings()

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


def test_secrets_can_come_from_files(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Compose secrets and systemd credentials hand secrets over as files (NAME_FILE)."""
    for name in ("CLUSTER_SECRET", "OTP_KEY", "SMTP_PASSWORD", "GMAIL_APP_PASSWORD"):
        clean_env.delenv(name, raising=False)
    db_password = tmp_path / "db_password"
    db_password.write_text("s3cret pass\n")
    cluster_secret = tmp_path / "cluster_secret"
    cluster_secret.write_text("the-cluster-secret\n")
    clean_env.setenv("DB_HOST", "postgres")
    clean_env.setenv("DB_USER", "cloudgrpc")
    clean_env.setenv("DB_NAME", "cloudgrpc")
    clean_env.setenv("DB_PASSWORD_FILE", str(db_password))
    clean_env.setenv("CLUSTER_SECRET_FILE", str(cluster_secret))
    s = load_settings()
    assert s.database_url == "postgresql+psycopg2://cloudgrpc:s3cret+pass@postgres:5432/cloudgrpc"
    assert s.cluster_secret == "the-cluster-secret"
    # The variable itself still wins over its file.
    clean_env.setenv("CLUSTER_SECRET", "from-the-variable")
    assert load_settings().cluster_secret == "from-the-variable"


def test_unreadable_secret_file_names_the_file_not_a_value(clean_env: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    clean_env.delenv("CLUSTER_SECRET", raising=False)
    missing = tmp_path / "nowhere" / "cluster_secret"
    clean_env.setenv("CLUSTER_SECRET_FILE", str(missing))
    with pytest.raises(environment.ConfigError, match="CLUSTER_SECRET_FILE: cannot read .*nowhere"):
        load_settings()

"""The command-line pieces deployments rely on: ``switchyard migrate``, ``NAME_FILE`` secrets,
and ``server.drain_timeout_s`` with its older name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from alembic.script import ScriptDirectory

from gateway.cli import main as switchyard
from gateway.cli import secrets_from_files
from gateway.config import ConfigError, parse_config
from gateway.db.engine import alembic_config


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_migrate_brings_an_empty_database_to_the_newest_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(
        tmp_path / "c.yaml",
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [
                {
                    "name": "d",
                    "provider": "openai_compatible",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "locality": "self_hosted",
                }
            ],
        },
    )
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert switchyard(["migrate", "--config", str(config)]) == 0
    assert capsys.readouterr().out == f"database schema: (empty) -> {head}\n"
    assert switchyard(["migrate", "--config", str(config)]) == 0  # idempotent
    assert capsys.readouterr().out == f"database schema: {head} -> {head}\n"


def test_migrate_reports_an_unreachable_database_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(
        tmp_path / "c.yaml",
        {
            "database_url": "postgresql://nobody@127.0.0.1:1/none",
            "deployments": [
                {
                    "name": "d",
                    "provider": "openai_compatible",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "locality": "self_hosted",
                }
            ],
        },
    )
    assert switchyard(["migrate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "migration failed" in err and "Traceback" not in err


def test_name_file_fills_only_the_variables_the_config_names(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  master_key: ${MASTER}\ndatabase_url: postgresql://u:${DB_PASSWORD:-x}@h/db\n")
    (tmp_path / "master").write_text("sk-from-file\n")
    (tmp_path / "pw").write_text("pw-from-file")
    (tmp_path / "unrelated").write_text("never read")
    env = {
        "MASTER_FILE": str(tmp_path / "master"),
        "DB_PASSWORD_FILE": str(tmp_path / "pw"),
        "SSL_CERT_FILE": str(tmp_path / "unrelated"),  # not referenced: left alone
    }
    assert secrets_from_files(config, env) == ["MASTER", "DB_PASSWORD"]
    assert env["MASTER"] == "sk-from-file" and env["DB_PASSWORD"] == "pw-from-file"
    assert "SSL_CERT" not in env
    # A variable already set wins over its file.
    env2 = {"MASTER": "sk-from-env", "MASTER_FILE": str(tmp_path / "master")}
    assert secrets_from_files(config, env2) == []
    assert env2["MASTER"] == "sk-from-env"


def test_an_unreadable_secret_file_is_a_clear_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(
        tmp_path / "c.yaml",
        {
            "server": {"master_key": "${MASTER}"},
            "deployments": [
                {
                    "name": "d",
                    "provider": "openai_compatible",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "locality": "self_hosted",
                }
            ],
        },
    )
    with pytest.raises(ConfigError, match=r"MASTER_FILE=.*cannot read the secret file"):
        secrets_from_files(config, {"MASTER_FILE": str(tmp_path / "missing")})
    monkeypatch.delenv("MASTER", raising=False)
    monkeypatch.setenv("MASTER_FILE", str(tmp_path / "missing"))
    assert switchyard(["serve", "--config", str(config)]) == 2
    assert "cannot read the secret file" in capsys.readouterr().err


def test_drain_timeout_defaults_and_honours_its_older_name() -> None:
    base = "deployments: [{name: d, provider: openai_compatible, base_url: 'http://h/v1', model: m, locality: self_hosted}]\n"
    assert parse_config(base).server.drain_timeout_s == 30
    assert parse_config(base + "server: {graceful_shutdown_s: 12}").server.drain_timeout_s == 12
    assert parse_config(base + "server: {graceful_shutdown_s: 12, drain_timeout_s: 5}").server.drain_timeout_s == 5
    with pytest.raises(ConfigError, match=r"server\.drain_timeout_s"):
        parse_config(base + "server: {drain_timeout_s: -1}")

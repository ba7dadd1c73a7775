"""The request log (one line per request, metadata only, bodies masked when asked for) and the
scrubbing of every other log line (in-process gateway, real SQLite, fake upstreams)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.config import LoggingConfig
from gateway.db import Database
from gateway.keys import KeyStore
from gateway.logs import (
    REQUEST_LOGGER,
    JsonFormatter,
    TextFormatter,
    logging_config,
    remember_secrets,
    scrub,
)
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

CARD = "5555 5555 5555 4444"
PLANTED_KEY = "sk-proj-Qw8rT5yU2iO9pA3sD6fG1hJ4kL7zX0cV"
PROMPT = f"Refund {CARD} and rotate {PLANTED_KEY} today"
PG_PASSWORD = "PgSecret-7e1c2d"


@contextmanager
def captured(logger: str = "", level: int = logging.DEBUG, formatter: logging.Formatter | None = None) -> Iterator[io.StringIO]:
    """Everything ``logger`` (the root by default) emits at ``level`` and above, formatted."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or JsonFormatter())
    target = logging.getLogger(logger)
    old_level, old_propagate = target.level, target.propagate
    target.addHandler(handler)
    target.setLevel(level)
    try:
        yield stream
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)
        target.propagate = old_propagate


def _config(first: FakeUpstream, second: FakeUpstream, tmp_path: Path, **extra: Any):
    prices = {"input_per_mtok": 1, "output_per_mtok": 2}
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 10},
            "deployments": [
                fake_deployment("first", first.base_url, model="error-500", pricing=prices),
                fake_deployment("second", second.base_url, model="good", pricing=prices),
            ],
            "routes": [
                {
                    "name": "auto",
                    "candidates": ["first", "second"],
                    "rules": [{"name": "private", "when": {"sensitivity": ["restricted"]}, "prefer": ["second"]}],
                }
            ],
            "projects": [{"name": "team", "budget": {"usd": 50}}],
            "retries": {"max_attempts_per_deployment": 1},
            **extra,
        }
    )


@pytest.fixture
async def second() -> FakeUpstream:
    fake = FakeUpstream("second")
    await fake.start()
    yield fake
    await fake.stop()


async def test_one_line_per_request_with_what_operators_need_and_never_the_key(upstream, second, tmp_path: Path) -> None:
    with captured(REQUEST_LOGGER, logging.INFO) as lines:
        async with app_client(_config(upstream, second, tmp_path)) as client:
            created = (await client.post("/admin/keys", json={"project": "team", "name": "app"})).json()
            key = {"authorization": f"Bearer {created['key']}"}
            ok = await client.post(
                "/v1/chat/completions",
                headers=key,
                json={"model": "auto", "messages": [{"role": "user", "content": "hello there"}]},
            )
            refused = await client.post(
                "/v1/chat/completions",
                headers={"authorization": "Bearer sk-not-a-key-123456"},
                json={"model": "auto", "messages": []},
            )
            await client.get("/healthz")
    assert ok.status_code == 200
    assert refused.status_code == 401
    text = lines.getvalue()
    assert created["key"] not in text
    assert "sk-not-a-key-123456" not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["path"] for r in records] == ["/admin/keys", "/v1/chat/completions", "/v1/chat/completions"]  # no probes
    answered = records[1]
    usage = ok.json()["usage"]
    expected = {
        "logger": "switchyard.requests",
        "level": "info",
        "msg": "request",
        "request_id": ok.headers["x-request-id"],
        "method": "POST",
        "status": 200,
        "key_id": created["id"],
        "project": "team",
        "model": "auto",
        "route": "auto",
        "rule": None,
        "sensitivity": "public",
        "task": ok.headers["x-switchyard-task"],
        "deployment": "second",
        "attempts": 2,
        "fallbacks": 1,
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "stream": False,
    }
    assert {k: answered.get(k) for k in expected} == expected
    assert answered["cost_usd"] == pytest.approx(float(ok.headers["x-switchyard-cost-usd"]))
    assert answered["latency_ms"] > 0
    assert answered["time"].endswith("Z")
    assert "request_body" not in answered
    assert "completion" not in answered
    assert records[2]["status"] == 401
    assert records[2]["error"] == "invalid_api_key"
    assert records[2]["key_id"] is None
    assert records[0]["status"] == 201


async def test_bodies_appear_only_when_asked_for_and_then_masked(upstream, second, tmp_path: Path) -> None:
    config = _config(upstream, second, tmp_path, logging={"include_bodies": True, "max_body_chars": 400})
    long_text = "words " * 200 + PLANTED_KEY  # the key sits past the cut: masked before cutting, never half shown
    with captured(REQUEST_LOGGER, logging.INFO) as lines:
        async with app_client(config) as client:
            chat = await client.post(
                "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": PROMPT}]}
            )
            await client.post(
                "/v1/chat/completions", json={"model": "second", "messages": [{"role": "user", "content": long_text}]}
            )
    assert chat.status_code == 200
    text = lines.getvalue()
    assert CARD not in text
    assert PLANTED_KEY not in text
    assert PLANTED_KEY[:20] not in text
    first, second_line = (json.loads(line) for line in text.splitlines())
    content = first["request_body"]["messages"][0]["content"]
    assert content.startswith("Refund [credit_card] and rotate ")
    assert content.endswith(" today")
    assert first["sensitivity"] == "restricted"
    assert first["rule"] == "private"
    assert first["completion"] == chat.json()["choices"][0]["message"]["content"]
    assert len(second_line["request_body"]["messages"][0]["content"]) <= 403


async def test_text_format_writes_key_value_lines(upstream, second, tmp_path: Path) -> None:
    with captured(REQUEST_LOGGER, logging.INFO, TextFormatter()) as lines:
        async with app_client(_config(upstream, second, tmp_path)) as client:
            response = await client.post(
                "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            )
    (line,) = lines.getvalue().splitlines()
    assert " INFO switchyard.requests: " in line
    assert f"request_id={response.headers['x-request-id']}" in line
    assert "status=200" in line
    assert "deployment=second" in line


def test_the_logging_config_sends_requests_to_stdout_and_the_rest_to_stderr() -> None:
    config = logging_config(LoggingConfig(format="text", level="warning"), access_log=True)
    assert config["loggers"][REQUEST_LOGGER] == {"handlers": ["stdout"], "level": "INFO", "propagate": False}
    assert config["loggers"]["uvicorn.access"]["handlers"] == ["stdout"]
    assert config["root"] == {"handlers": ["stderr"], "level": "WARNING"}
    assert config["formatters"]["line"]["()"].endswith("TextFormatter")
    assert config["handlers"]["stdout"]["stream"] == "ext://sys.stdout"
    assert all(config["loggers"][name]["level"] == "WARNING" for name in ("litellm", "httpx", "sqlalchemy.engine", "openai"))
    quiet = logging_config(LoggingConfig(requests=False), level="debug")
    assert quiet["loggers"][REQUEST_LOGGER]["level"] == "CRITICAL"
    assert quiet["root"]["level"] == "DEBUG"
    assert quiet["loggers"]["uvicorn.access"]["handlers"] == []


def test_scrub_removes_config_secrets_credentials_and_what_the_detectors_find(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=collector-key-5f6e7d,other=1")
    config = make_config(
        {
            "server": {"master_key": "plain-master-secret-value"},
            "database_url": f"postgresql+asyncpg://app:{PG_PASSWORD}@db:5432/ledger",
            "redis_url": "redis://:RedisPass-99x@cache:6379/0",
            "deployments": [
                fake_deployment(
                    "a",
                    "http://127.0.0.1:9/v1",
                    api_key="backend-key-ABCDEF123",
                    headers={"x-api-key": "header-secret-XYZ987", "x-title": "ordinary-title"},
                )
            ],
        }
    )
    remember_secrets(config)
    text = (
        "boom: master plain-master-secret-value, backend-key-ABCDEF123 header-secret-XYZ987; "
        f"dsn postgresql://app:{PG_PASSWORD}@db/ledger; redis RedisPass-99x; Authorization: Bearer abc.def.ghi; "
        f"prompt {PROMPT}; other dsn mysql://u:hunter22@h/x; collector said collector-key-5f6e7d"
    )
    cleaned = scrub(text)
    for secret in (
        "plain-master-secret-value",
        "backend-key-ABCDEF123",
        "header-secret-XYZ987",
        PG_PASSWORD,
        "RedisPass-99x",
        "abc.def.ghi",
        CARD,
        PLANTED_KEY,
        "hunter22",
        "collector-key-5f6e7d",
    ):
        assert secret not in cleaned, secret
    assert cleaned.startswith("boom: master ***")
    assert "[credit_card]" in cleaned
    assert scrub("nothing secret here, 42 apples") == "nothing secret here, 42 apples"
    assert scrub("an ordinary-title stays") == "an ordinary-title stays"  # a header named for no credential


async def test_failure_paths_log_no_key_password_or_prompt(upstream, second, tmp_path: Path) -> None:
    """The key store down, admission down, an upstream quoting the prompt back, an adapter bug:
    every line at every level, stack traces included, is free of keys, passwords and the prompt's
    secrets."""
    from gateway.admission import RedisAdmission

    second.mode = "echo-500"
    redis_password = "RedisPw-0a9b8c"
    with captured() as lines:
        async with app_client(_config(upstream, second, tmp_path, projects=[{"name": "team", "limits": {"rpm": 100}}])) as client:
            state = client.app.state.gateway
            created = (await client.post("/admin/keys", json={"project": "team", "name": "app"})).json()
            key = {"authorization": f"Bearer {created['key']}"}
            body = {"model": "auto", "messages": [{"role": "user", "content": PROMPT}]}
            echoed = await client.post("/v1/chat/completions", headers=key, json=body)  # both upstreams fail

            dead = RedisAdmission(f"redis://:{redis_password}@127.0.0.1:9/0", prefix="dead", timeout_s=0.3)
            live, state.accountant.admission = state.accountant.admission, dead
            try:
                no_admission = await client.post("/v1/chat/completions", headers=key, json=body)
            finally:
                state.accountant.admission = live
                await dead.aclose()

            broken_db = Database(f"postgresql+asyncpg://postgres:{PG_PASSWORD}@127.0.0.1:9/none", connect_timeout_s=0.5)
            state.services.keys = KeyStore(broken_db)
            try:
                no_keys = await client.post("/v1/chat/completions", headers=key, json=body)
            finally:
                await broken_db.aclose()
    assert echoed.status_code in (502, 503)
    assert no_admission.status_code == 503
    assert no_keys.status_code == 503
    text = lines.getvalue()
    assert "admission backend failed" in text
    assert "key lookup failed" in text
    for secret in (created["key"], MASTER_KEY, redis_password, PG_PASSWORD, CARD, CARD.replace(" ", ""), PLANTED_KEY):
        assert secret not in text, secret
    for line in text.splitlines():
        json.loads(line)


async def test_every_inbound_format_gets_its_line(upstream, second, tmp_path: Path) -> None:
    """Anthropic Messages and OpenAI Responses are served and logged like chat; token counting,
    which is not served by a backend, still gets a line."""
    message = {"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}
    version = {"anthropic-version": "2023-06-01"}
    with captured(REQUEST_LOGGER, logging.INFO) as lines:
        async with app_client(_config(upstream, second, tmp_path)) as client:
            messages = await client.post("/v1/messages", json=message, headers=version)
            responses = await client.post("/v1/responses", json={"model": "auto", "input": "hello"})
            counted = await client.post("/v1/messages/count_tokens", json=message, headers=version)
    assert (messages.status_code, responses.status_code, counted.status_code) == (200, 200, 200)
    records = {json.loads(line)["path"]: json.loads(line) for line in lines.getvalue().splitlines()}
    assert set(records) == {"/v1/messages", "/v1/responses", "/v1/messages/count_tokens"}
    for path in ("/v1/messages", "/v1/responses"):
        assert records[path]["deployment"] == "second"
        assert records[path]["fallbacks"] == 1
        assert records[path]["route"] == "auto"
    assert records["/v1/messages/count_tokens"]["status"] == 200

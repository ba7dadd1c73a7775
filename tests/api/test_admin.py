"""The admin API in-process (both databases), and the CLI against a real server on 127.0.0.1."""

from __future__ import annotations

import argparse
import csv
import functools
import io
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from core.errors import GatewayError
from gateway.api.admin import router
from gateway.config import Budget, GatewayConfig, ProjectConfig
from gateway.db import Database, UsageRecord, sync_projects
from gateway.keys import KeyStore
from gateway.ledger.rollups import write_ledger
from gateway.roles import RoleGuard
from gateway.state import GatewayState
from tests.db.fixtures import database, fresh_sqlite, pg_url  # noqa: F401 - fixtures
from tests.helpers import MASTER_KEY, fake_deployment, free_port, make_config

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def _config() -> GatewayConfig:
    return make_config(
        {
            "deployments": [fake_deployment("d0", "http://127.0.0.1:9/v1")],
            "projects": [{"name": "default", "budget": {"usd": 100, "period": "monthly"}, "limits": {"rpm": 600}}],
        }
    )


def gateway_state(config: GatewayConfig, db: Database, keys: KeyStore) -> SimpleNamespace:
    """Just the services the admin routes use, with the real ``GatewayState.authenticate``."""
    state = SimpleNamespace(
        config=config,
        db=db,
        keys=keys,
        ledger=None,
        metrics=None,
        runtime=SimpleNamespace(default_project=config.projects[0].name),
        clock=lambda: datetime.now(UTC),
    )
    state.authenticate = functools.partial(GatewayState.authenticate, state)
    return state


def build_app(gateway: object) -> FastAPI:
    app = FastAPI()
    app.state.gateway = gateway

    @app.exception_handler(GatewayError)
    async def render(_request: Request, error: GatewayError) -> Response:
        return Response(
            orjson.dumps(error.to_dict()), status_code=error.status, headers=error.headers, media_type="application/json"
        )

    app.include_router(router)
    app.add_middleware(RoleGuard, routes=app.router.routes)
    return app


@pytest.fixture
async def client(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    config = _config()
    await sync_projects(database, config.projects)
    gateway = gateway_state(config, database, KeyStore(database, ttl_s=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build_app(gateway)), base_url="http://gw") as c:
        c.gateway = gateway  # type: ignore[attr-defined]
        yield c


def _error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


async def test_admin_routes_refuse_missing_keys_and_app_keys(client: httpx.AsyncClient) -> None:
    _, secret = await client.gateway.keys.create("default", "app")  # type: ignore[attr-defined]
    routes = (
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("GET", "/admin/usage"),
        ("POST", "/admin/projects"),
        ("POST", "/admin/keys/x/revoke"),
    )
    for headers in ({}, {"authorization": "Bearer wrong"}):
        for method, path in routes:
            _error(await client.request(method, path, headers=headers), 401, "invalid_api_key")
    for method, path in routes:  # a valid app key: authenticated, but not allowed
        error = _error(
            await client.request(method, path, headers={"authorization": f"Bearer {secret}"}), 403, "permission_denied"
        )
        assert "role is 'app'" in error["message"]


async def test_projects_can_be_created_once(client: httpx.AsyncClient) -> None:
    body = {
        "name": "research",
        "budget": {"usd": "12.50", "period": "weekly"},
        "limits": {"rpm": 30},
        "sensitivity_floor": "internal",
    }
    created = await client.post("/admin/projects", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    project = created.json()
    assert (project["name"], project["budget"], project["limits"], project["source"]) == (
        "research",
        {"usd": "12.5", "period": "weekly", "alert_thresholds": None},
        {"rpm": 30, "tpm": None},
        "api",
    )
    _error(await client.post("/admin/projects", json=body, headers=AUTH), 409, "project_exists")
    listed = (await client.get("/admin/projects", headers=AUTH)).json()["data"]
    assert [(p["name"], p["source"]) for p in listed] == [("default", "config"), ("research", "api")]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": " spaces"}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "budget": {"usd": -1}}, "budget.usd"),
        ({"name": "x", "budget": {"usd": 1, "period": "hourly"}}, "budget.period"),
        ({"name": "x", "limits": {"rpm": 0}}, "limits.rpm"),
    ],
)
async def test_bad_project_bodies_are_400_with_the_field(client: httpx.AsyncClient, body: dict, param: str) -> None:
    error = _error(await client.post("/admin/projects", json=body, headers=AUTH), 400, "invalid_request")
    assert error["param"] == param and error["message"].startswith(param)


async def test_body_must_be_a_json_object(client: httpx.AsyncClient) -> None:
    _error(await client.post("/admin/keys", content=b"{not json", headers=AUTH), 400)
    _error(await client.post("/admin/keys", json=[1, 2], headers=AUTH), 400)


async def test_key_lifecycle(client: httpx.AsyncClient) -> None:
    keys: KeyStore = client.gateway.keys  # type: ignore[attr-defined]
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    body = {
        "project": "default",
        "name": "ci",
        "budget": {"usd": 1, "period": "daily"},
        "limits": {"rpm": 60, "tpm": 1000},
        "models": ["auto"],
        "tags": ["team-a"],
        "expires_at": expires,
    }
    created = await client.post("/admin/keys", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["key"].startswith("sk-sy-") and key["prefix"] == key["key"][:12]
    assert (key["budget"], key["limits"], key["models"], key["tags"], key["active"]) == (
        {"usd": "1", "period": "daily", "alert_thresholds": None},
        {"rpm": 60, "tpm": 1000},
        ["auto"],
        ["team-a"],
        True,
    )
    info = await keys.authenticate(key["key"])
    assert info is not None and info.id == key["id"] and info.rpm == 60

    listed = await client.get("/admin/keys", params={"project": "default"}, headers=AUTH)
    assert [k["id"] for k in listed.json()["data"]] == [key["id"]]
    assert key["key"] not in listed.text and "key_hash" not in listed.text  # the secret is never shown again
    assert (await client.get(f"/admin/keys/{key['id']}", headers=AUTH)).json()["name"] == "ci"

    rotated = (await client.post(f"/admin/keys/{key['id']}/rotate", headers=AUTH)).json()
    assert rotated["id"] == key["id"] and rotated["key"] != key["key"] and rotated["rotated_at"]
    assert await keys.authenticate(key["key"]) is None
    assert await keys.authenticate(rotated["key"]) is not None

    revoked = (await client.post(f"/admin/keys/{key['id']}/revoke", headers=AUTH)).json()
    assert revoked["revoked_at"] and revoked["active"] is False and "key" not in revoked
    assert await keys.authenticate(rotated["key"]) is None
    _error(await client.post(f"/admin/keys/{key['id']}/rotate", headers=AUTH), 400, "key_revoked")


async def test_key_errors(client: httpx.AsyncClient) -> None:
    error = _error(
        await client.post("/admin/keys", json={"project": "nope", "name": "x"}, headers=AUTH), 404, "project_not_found"
    )
    assert "nope" in error["message"] and error["param"] == "project"
    _error(await client.get("/admin/keys", params={"project": "nope"}, headers=AUTH), 404, "project_not_found")
    for path in ("/admin/keys/missing/revoke", "/admin/keys/missing/rotate"):
        _error(await client.post(path, headers=AUTH), 404, "key_not_found")
    _error(await client.get("/admin/keys/missing", headers=AUTH), 404, "key_not_found")
    past = {"project": "default", "name": "x", "expires_at": "2020-01-01T00:00:00Z"}
    assert _error(await client.post("/admin/keys", json=past, headers=AUTH), 400)["param"] == "expires_at"
    _error(await client.post("/admin/keys", json={"project": "default"}, headers=AUTH), 400)


async def test_usage_report(client: httpx.AsyncClient) -> None:
    db: Database = client.gateway.db  # type: ignore[attr-defined]
    await write_ledger(
        db,
        [
            UsageRecord(
                id=f"u{i}",
                ts=datetime(2026, 11, 2 + i, tzinfo=UTC),
                project="default",
                key_id="k",
                requested_model=model,
                prompt_tokens=10,
                completion_tokens=1,
                cost_usd=Decimal(cost),
            )
            for i, (model, cost) in enumerate([("auto", "0.25"), ("auto", "0.5"), ("gpt-4o-mini", "0.125")])
        ],
    )
    query = {"project": "default", "since": "2026-11-01", "until": "2026-11-03", "group_by": "day,model"}
    report = (await client.get("/admin/usage", params=query, headers=AUTH)).json()
    assert (
        report["total_requests"],
        report["total_prompt_tokens"],
        report["total_completion_tokens"],
        report["total_cost_usd"],
    ) == (2, 20, 2, "0.75")
    assert [(r["day"], r["model"], r["cost_usd"]) for r in report["rows"]] == [
        ("2026-11-02", "auto", "0.25"),
        ("2026-11-03", "auto", "0.5"),
    ]
    as_csv = await client.get("/admin/usage", params={"group_by": "model", "format": "csv"}, headers=AUTH)
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert [r["model"] for r in csv.DictReader(io.StringIO(as_csv.text))] == ["auto", "gpt-4o-mini"]
    assert _error(await client.get("/admin/usage", params={"group_by": "day,colour"}, headers=AUTH), 400)["param"] == "group_by"
    assert _error(await client.get("/admin/usage", params={"since": "last week"}, headers=AUTH), 400)["param"] == "since"
    _error(await client.get("/admin/usage", params={"project": "nope"}, headers=AUTH), 404, "project_not_found")


# ---------------------------------------------------------------- the CLI against a real server


class ServerThread:
    """The admin router under uvicorn on 127.0.0.1, in its own thread and event loop."""

    def __init__(self, db_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            db = await fresh_sqlite(db_path)
            config = _config()
            await sync_projects(db, [*config.projects, ProjectConfig(name="web", budget=Budget(usd=Decimal(5)))])
            await write_ledger(
                db, [UsageRecord(id="u1", project="web", requested_model="auto", prompt_tokens=7, cost_usd=Decimal("0.02"))]
            )
            app.state.gateway = gateway_state(config, db, KeyStore(db))
            yield
            await db.aclose()

        app = build_app(None)
        app.router.lifespan_context = lifespan
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "admin test server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _cli(*argv: str) -> int:
    from gateway.cli_admin import add_admin_commands

    parser = argparse.ArgumentParser(prog="switchyard")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_drives_a_running_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_MASTER_KEY", MASTER_KEY)
    with ServerThread(tmp_path / "cli.db") as server:
        url = ("--url", server.url)
        assert (
            _cli(
                "keys",
                "create",
                "--project",
                "web",
                "--name",
                "ci",
                "--budget-usd",
                "2.5",
                "--rpm",
                "10",
                "--models",
                "auto,gpt-4o-mini",
                *url,
            )
            == 0
        )
        created = orjson.loads(capsys.readouterr().out)
        assert created["key"].startswith("sk-sy-") and created["models"] == ["auto", "gpt-4o-mini"]
        assert created["budget"] == {"usd": "2.5", "period": "monthly", "alert_thresholds": None}

        assert _cli("keys", "list", "--project", "web", *url) == 0
        table = capsys.readouterr().out
        assert created["id"] in table and "active" in table and created["key"] not in table

        assert _cli("keys", "rotate", created["id"], *url) == 0
        assert orjson.loads(capsys.readouterr().out)["key"] != created["key"]
        assert _cli("keys", "revoke", created["id"], *url) == 0
        assert orjson.loads(capsys.readouterr().out)["revoked_at"]

        assert _cli("usage", "--project", "web", "--group-by", "model", "--format", "csv", *url) == 0
        assert capsys.readouterr().out.splitlines()[1] == "auto,1,0,7,0,0,0.02"
        assert _cli("usage", "--format", "json", *url) == 0
        assert orjson.loads(capsys.readouterr().out)["total_cost_usd"] == "0.02"

        assert _cli("projects", "create", "--name", "cli-made", "--budget-usd", "3", "--budget-period", "total", *url) == 0
        assert orjson.loads(capsys.readouterr().out)["budget"] == {"usd": "3", "period": "total", "alert_thresholds": None}

        assert _cli("keys", "create", "--project", "nope", "--name", "x", *url) == 1
        assert "404: Project 'nope' does not exist" in capsys.readouterr().err
        assert _cli("keys", "list", "--master-key", "wrong", *url) == 1
        assert "401" in capsys.readouterr().err
    assert _cli("keys", "list", "--url", f"http://127.0.0.1:{free_port()}") == 1
    assert "cannot reach the gateway" in capsys.readouterr().err

"""POST /admin/simulate in-process on a seeded ledger (real SQLite and PostgreSQL): the current
column is the ledger's, an unchanged config changes nothing, a rule moved home saves what the
prices say, a removed deployment shows what would be refused, bad candidates are a 400 with
their key paths, and who may see what follows the key."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.policies import as_candidate, running_config, simple_tasks_home, without
from gateway.ledger.seed import LedgerSeeder, seed_ledger
from gateway.simulation.render import PROJECT_COLUMNS
from tests.db.fixtures import fresh_postgres, pg_url  # noqa: F401 - fixtures
from tests.helpers import app_client, make_config
from tests.reports.helpers import table_counts

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RANGE = {"since": "2026-10-22", "until": "2026-11-20"}
ROWS = 6000


@pytest.fixture(params=["sqlite", "postgres"])
async def setup(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    url = f"sqlite:///{tmp_path}/ledger.db" if request.param == "sqlite" else pg_url
    if request.param == "postgres":
        await (await fresh_postgres(pg_url)).aclose()
    data = running_config(url, str(tmp_path / "spool"))
    config = make_config(data)
    async with app_client(config) as client:
        state = client.app.state.gateway  # type: ignore[attr-defined]
        state.clock = lambda: NOW
        await seed_ledger(state.db, LedgerSeeder(config, rows=ROWS, days=30, projects=5, seed=5, now=NOW))
        yield client, data


async def _simulate(client: httpx.AsyncClient, candidate: str, **params: Any) -> dict[str, Any]:
    answer = await client.post("/admin/simulate", params={**RANGE, **params}, content=candidate.encode())
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_an_unchanged_config_costs_exactly_what_the_ledger_says(
    setup: tuple[httpx.AsyncClient, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, data = setup
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the candidate names it; the simulation never needs it
    report = await _simulate(client, as_candidate(data))
    assert report["rows"] == ROWS and (report["since"], report["until"]) == ("2026-10-22", "2026-11-20")
    assert len(report["projects"]) == 5
    for project in report["projects"]:
        assert (project["delta_usd"], project["moved_requests"], project["classes"]) == ("0", 0, []), project["project"]
        assert project["current_cost_usd"] == project["simulated_cost_usd"]
        usage = (await client.get("/admin/usage", params={"project": project["project"], **RANGE})).json()
        assert project["current_cost_usd"] == usage["total_cost_usd"] and project["requests"] == usage["total_requests"]
        assert project["failed_requests"] == usage["total_errors"]
        now, then = project["self_hosted"]["current"], project["self_hosted"]["simulated"]
        assert now == then and 0 < now["by_requests"] < 1
    everything = (await client.get("/admin/usage", params=RANGE)).json()
    totals = report["totals"]
    assert totals["current_cost_usd"] == everything["total_cost_usd"] and Decimal(totals["current_cost_usd"]) > 0
    assert totals["delta_usd"] == "0" and totals["requests"] == ROWS


async def test_moving_simple_tasks_home_saves_at_home_prices(setup: tuple[httpx.AsyncClient, dict]) -> None:
    client, data = setup
    report = await _simulate(client, yaml.safe_dump(simple_tasks_home(data)))
    totals = report["totals"]
    assert Decimal(totals["delta_usd"]) < 0 and totals["blocked_requests"] == totals["unservable_requests"] == 0
    assert totals["self_hosted"]["simulated"]["by_tokens"] > totals["self_hosted"]["current"]["by_tokens"]
    for project in report["projects"]:
        assert Decimal(project["simulated_cost_usd"]) - Decimal(project["current_cost_usd"]) == Decimal(project["delta_usd"])
        for shift in project["shifts"]:  # every move is from hosted (or the dearer self-hosted) to llama
            assert shift["to"] == "llama-3.1-8b" and shift["from"] != "llama-3.1-8b"
        moved = sum(s["requests"] for s in project["shifts"])
        assert moved == project["moved_requests"] > 0
        deployments = {d["deployment"]: d for d in project["deployments"]}
        assert sum(d["simulated_requests"] for d in deployments.values()) == project["requests"]
        assert deployments["llama-3.1-8b"]["simulated_requests"] == deployments["llama-3.1-8b"]["current_requests"] + moved
    # the CSV is the JSON, exactly
    answer = await client.post(
        "/admin/simulate", params={**RANGE, "format": "csv"}, content=yaml.safe_dump(simple_tasks_home(data)).encode()
    )
    assert answer.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert tuple(lines[0]) == PROJECT_COLUMNS
    assert [(r["project"], r["current_cost_usd"], r["delta_usd"]) for r in lines] == [
        (p["project"], p["current_cost_usd"], p["delta_usd"]) for p in report["projects"]
    ]
    shifts = await client.post(
        "/admin/simulate",
        params={**RANGE, "format": "csv", "table": "shifts"},
        content=yaml.safe_dump(simple_tasks_home(data)).encode(),
    )
    assert len(list(csv.DictReader(io.StringIO(shifts.text)))) == sum(len(p["shifts"]) for p in report["projects"])


async def test_removing_a_deployment_shows_the_refused_requests(setup: tuple[httpx.AsyncClient, dict]) -> None:
    client, data = setup
    report = await _simulate(client, yaml.safe_dump(without(data, "llama-3.1-8b")))
    classes = [c for p in report["projects"] for c in p["classes"]]
    embeddings = [c for c in classes if c["requested_model"] == "auto" and c["endpoints"] == ["embeddings"]]
    assert embeddings and all(c["kind"] == "unservable" and "supports embeddings" in c["reason"] for c in embeddings)
    pinned = [c for c in classes if c["requested_model"] == "llama-3.1-8b"]
    assert pinned and all("neither a route nor a deployment" in c["reason"] for c in pinned)
    totals = report["totals"]
    assert totals["unservable_requests"] == sum(c["requests"] for c in classes if c["kind"] == "unservable")
    refused = sum(Decimal(c["current_cost_usd"]) for c in classes)
    assert Decimal(totals["refused_current_cost_usd"]) == refused


async def test_bad_candidates_are_refused_with_their_key_paths(tmp_path: Path) -> None:
    data = running_config(f"sqlite:///{tmp_path}/ledger.db", str(tmp_path / "spool"))
    async with app_client(
        make_config({**data, "server": {"master_key": "sk-test-master", "max_admin_body_bytes": 4096}})
    ) as client:
        before = await table_counts(client.app.state.gateway.db)  # type: ignore[attr-defined]
        unknown_key, unknown_name = simple_tasks_home(data), simple_tasks_home(data)
        unknown_key["routes"][0]["rules"][0]["when"]["colour"] = "blue"
        unknown_name["routes"][0]["candidates"].append("gpt-5")
        cases = [
            (yaml.safe_dump(unknown_key), "routes[0].rules[0].when.colour: unknown key"),
            (yaml.safe_dump(unknown_name), "routes[0].candidates[4]: unknown deployment 'gpt-5'"),
            ("deployments: [\n", "not valid YAML"),
            ("", "the config is empty"),
            ("- a list\n", "the top level must be a mapping"),
            ("[" * 3000, "nested too deeply"),
        ]
        for text, expected in cases:
            answer = await client.post("/admin/simulate", content=text.encode())
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["param"] == "config" and expected in error["message"], (expected, error["message"])
        bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, n in zip("abcdef", "bcdefg", strict=True)
        )
        answer = await client.post("/admin/simulate", content=bomb.encode())
        assert answer.status_code == 400 and "aliases are expanded" in answer.json()["error"]["message"]
        answer = await client.post("/admin/simulate", content=b"x: " + b"y" * 5000)
        assert answer.status_code == 413
        for params, param in (({"since": "2026-13-01"}, "since"), ({"table": "pies"}, "table"), ({"project": "nope"}, "project")):
            answer = await client.post("/admin/simulate", params=params, content=as_candidate(data).encode())
            assert answer.status_code == 400 and answer.json()["error"]["param"] == param
        answer = await client.post("/admin/simulate", json={"config": 1})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "config"
        answer = await client.post("/admin/simulate", json={"config": "x: 1", "colour": "blue"})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "colour"
        assert await table_counts(client.app.state.gateway.db) == before  # type: ignore[attr-defined]


async def test_finance_keys_simulate_their_own_projects_only(setup: tuple[httpx.AsyncClient, dict]) -> None:
    client, data = setup
    keys = {}
    for name, body in (("finance", {"role": "finance"}), ("narrow", {"role": "finance", "projects": ["search"]}), ("app", {})):
        made = await client.post("/admin/keys", json={"project": "checkout", "name": name, **body})
        keys[name] = {"authorization": f"Bearer {made.json()['key']}"}
    text = as_candidate(data).encode()
    answer = await client.post("/admin/simulate", params=RANGE, content=text, headers=keys["app"])
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "permission_denied"
    full = await client.post("/admin/simulate", params=RANGE, content=text, headers=keys["finance"])
    assert full.status_code == 200 and len(full.json()["projects"]) == 5
    narrow = await client.post("/admin/simulate", json={"config": text.decode(), **RANGE}, headers=keys["narrow"])
    assert [p["project"] for p in narrow.json()["projects"]] == ["search"]
    search = next(p for p in full.json()["projects"] if p["project"] == "search")
    assert narrow.json()["totals"]["current_cost_usd"] == search["current_cost_usd"]
    denied = await client.post("/admin/simulate", params={**RANGE, "project": "checkout"}, content=text, headers=keys["narrow"])
    assert denied.status_code == 403

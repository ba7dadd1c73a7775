"""The report API in-process (real SQLite ledger, pinned clock): figures worked out by hand,
equality with /admin/usage, CSV equal to JSON, finance scopes, and bad input refused with a 400
that leaves the ledger untouched."""

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

from gateway.ledger.rollups import write_ledger
from gateway.reports.projects import PROJECT_COLUMNS
from tests.helpers import app_client, fake_deployment, make_config
from tests.reports.helpers import ledger_row, table_counts

D = Decimal
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # 19.5 days into November
NOV = {"since": "2026-11-01", "until": "2026-11-30"}


def _config(tmp_path: Path) -> Any:
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [
                fake_deployment("local", "http://127.0.0.1:9/v1"),
                fake_deployment("cloud", "http://127.0.0.1:9/v1", locality="hosted"),
                fake_deployment(
                    "reference",
                    "http://127.0.0.1:9/v1",
                    locality="hosted",
                    enabled=False,
                    pricing={"input_per_mtok": "2.5", "cached_input_per_mtok": "1.25", "output_per_mtok": 10},
                ),
            ],
            "projects": [
                {"name": "web", "budget": {"usd": 9, "period": "monthly"}},
                {"name": "shop", "budget": {"usd": 5, "period": "weekly"}},
                {"name": "lab"},
            ],
            "reporting": {"reference_model": "reference"},
        }
    )


ROWS = [
    # web: 6.5 USD in November, 1 USD in October
    ledger_row(
        1,
        datetime(2026, 11, 1, 0, 0),
        "web",
        "2.25",
        deployment="cloud",
        locality="hosted",
        prompt_tokens=1_000_000,
        cached_tokens=200_000,
        completion_tokens=100_000,
        key_id="k-web",
        end_user="alice",
        key_tags='["team:web"]',
    ),
    ledger_row(
        2,
        datetime(2026, 11, 10, 9, 30),
        "web",
        "4.25",
        deployment="cloud",
        locality="hosted",
        prompt_tokens=500_000,
        completion_tokens=300_000,
        key_id="k-web",
        end_user="bob",
        key_tags='["env:prod","team:web"]',
        task="code",
    ),
    ledger_row(
        3,
        datetime(2026, 11, 15, 23, 59, 59),
        "web",
        "0",
        prompt_tokens=2_000_000,
        completion_tokens=600_000,
        key_id="k-batch",
        project_tag="nightly",
    ),
    ledger_row(4, datetime(2026, 11, 16, 1), "web", "0", status=502, prompt_tokens=0, completion_tokens=0, key_id="k-batch"),
    ledger_row(5, datetime(2026, 10, 31, 23, 59, 59), "web", "1", deployment="cloud", locality="hosted", key_id="k-web"),
    # shop: 0.3 this ISO week (Mon 16 Nov ..), 0.7 earlier in November
    ledger_row(6, datetime(2026, 11, 3, 8), "shop", "0.7000000001", deployment="cloud", locality="hosted", key_id="k-shop"),
    ledger_row(7, datetime(2026, 11, 18, 8), "shop", "0.2999999999", deployment="cloud", locality="hosted", key_id="k-shop"),
    # lab: self-hosted only, and a project the config no longer has
    ledger_row(8, datetime(2026, 11, 19, 8), "lab", "0.0000000001", key_id="k-lab"),
    ledger_row(9, datetime(2026, 11, 19, 9), "retired", "0.5", deployment="cloud", locality="hosted", key_id=None),
]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(_config(tmp_path)) as c:
        state = c.app.state.gateway  # type: ignore[attr-defined]
        state.clock = lambda: NOW
        await write_ledger(state.db, ROWS)
        for name, project in (("web-app", "web"), ("batch", "web"), ("shop-app", "shop")):
            await c.post("/admin/keys", json={"project": project, "name": name})
        yield c


async def _key(client: httpx.AsyncClient, role: str, **body: Any) -> dict[str, str]:
    created = await client.post("/admin/keys", json={"project": "web", "name": f"{role}-key", "role": role, **body})
    assert created.status_code == 201, created.text
    return {"authorization": f"Bearer {created.json()['key']}"}


async def test_project_figures_match_the_ledger_to_the_last_digit(client: httpx.AsyncClient) -> None:
    finance = await _key(client, "finance")
    answer = await client.get("/admin/reports/projects", params=NOV, headers=finance)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["since"], report["until"], report["currency"]) == ("2026-11-01", "2026-11-30", "USD")
    rows = {p["project"]: p for p in report["projects"]}
    assert sorted(rows) == ["lab", "retired", "shop", "web"]

    web = rows["web"]
    assert web["spend_usd"] == "6.5" and web["requests"] == 4 and web["errors"] == 1
    assert (web["input_tokens"], web["cached_input_tokens"], web["output_tokens"]) == (3_500_000, 200_000, 1_000_000)
    assert (web["self_hosted_spend_usd"], web["hosted_spend_usd"]) == ("0", "6.5")
    assert web["self_hosted_token_share"] == round(2_600_000 / 4_500_000, 4)
    # reference: (3.5M - 0.2M) x 2.5 + 0.2M x 1.25 + 1M x 10, per million = 8.25 + 0.25 + 10 = 18.5
    assert web["savings_usd"] == "12"
    assert (web["budget_usd"], web["budget_period"], web["period_start"], web["period_end"]) == (
        "9",
        "monthly",
        "2026-11-01",
        "2026-11-30",
    )
    assert web["budget_used_pct"] == round(6.5 / 9 * 100, 2)
    assert web["forecast_usd"] == "10" and web["forecast_exceeds_budget"] is True  # 6.5 x 30 / 19.5

    shop = rows["shop"]
    assert shop["spend_usd"] == "1" and shop["budget_period"] == "weekly"
    assert (shop["period_start"], shop["period_end"], shop["period_spend_usd"]) == ("2026-11-16", "2026-11-22", "0.2999999999")
    assert shop["forecast_usd"] == "0.47" and shop["forecast_exceeds_budget"] is False  # 0.3 x 7 / 4.5
    assert rows["lab"]["spend_usd"] == "0.0000000001" and rows["lab"]["self_hosted_token_share"] == 1.0
    assert rows["lab"]["budget_usd"] is None and rows["lab"]["forecast_exceeds_budget"] is False
    assert rows["retired"]["budget_usd"] is None  # only the ledger still knows it: its spend is not dropped

    totals = report["totals"]
    assert totals["spend_usd"] == "8.0000000001" and totals["requests"] == 8 and totals["forecast_usd"] is None
    assert D(totals["spend_usd"]) == sum(D(p["spend_usd"]) for p in report["projects"])

    for name, row in rows.items():  # equal to /admin/usage for the same filters
        usage = (await client.get("/admin/usage", params={"project": name, **NOV}, headers=finance)).json()
        assert (row["spend_usd"], row["requests"]) == (usage["total_cost_usd"], usage["total_requests"])
        assert (row["input_tokens"], row["output_tokens"]) == (usage["total_prompt_tokens"], usage["total_completion_tokens"])

    as_csv = await client.get("/admin/reports/projects", params={**NOV, "format": "csv"}, headers=finance)
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert tuple(lines[0]) == PROJECT_COLUMNS
    for line, row in zip(lines, report["projects"], strict=True):
        expected = {k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in row.items()}
        assert line == expected


async def test_the_default_range_is_the_current_month(client: httpx.AsyncClient) -> None:
    report = (await client.get("/admin/reports/projects")).json()
    assert (report["since"], report["until"]) == ("2026-11-01", "2026-11-30")
    only_since = (await client.get("/admin/reports/projects", params={"since": "2026-11-15"})).json()
    assert (only_since["since"], only_since["until"]) == ("2026-11-15", "2026-11-30")
    october = (await client.get("/admin/reports/projects", params={"until": "2026-10-31"})).json()
    assert october["since"] == "2026-10-01" and october["totals"]["spend_usd"] == "1"


async def test_a_finance_key_sees_only_its_projects(client: httpx.AsyncClient) -> None:
    narrow = await _key(client, "finance", projects=["shop"])
    report = (await client.get("/admin/reports/projects", params=NOV, headers=narrow)).json()
    assert [p["project"] for p in report["projects"]] == ["shop"] and report["totals"]["spend_usd"] == "1"
    denied = await client.get("/admin/reports/projects/web/daily", headers=narrow)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert (await client.get("/admin/usage", params={"project": "web"}, headers=narrow)).status_code == 403
    usage = (await client.get("/admin/usage", params=NOV, headers=narrow)).json()
    assert usage["total_cost_usd"] == "1"
    keys = (await client.get("/admin/keys", headers=narrow)).json()["data"]
    assert {k["project"] for k in keys} == {"shop"} and all("key" not in k for k in keys)
    assert [p["name"] for p in (await client.get("/admin/projects", headers=narrow)).json()["data"]] == ["shop"]
    app_key = await _key(client, "app")
    created = await client.post("/admin/keys", json={"project": "web", "name": "x", "role": "app", "projects": ["shop"]})
    assert created.status_code == 400 and created.json()["error"]["param"] == "projects"
    assert (await client.get("/admin/reports/projects", headers=app_key)).status_code == 403


async def test_daily_series_and_breakdowns(client: httpx.AsyncClient) -> None:
    daily = (await client.get("/admin/reports/projects/web/daily", params={**NOV, "group_by": "deployment"})).json()
    assert len(daily["days"]) == 30 and daily["days"][0] == "2026-11-01"
    series = {s["group"]: s for s in daily["series"]}
    assert series["cloud"]["spend_usd"] == "6.5" and series["local"]["spend_usd"] == "0"
    assert [p["spend_usd"] for p in series["cloud"]["points"][:2]] == ["2.25", "0"] and len(series["cloud"]["points"]) == 30
    assert daily["totals"]["spend_usd"] == "6.5"

    by_key = (await client.get("/admin/reports/projects/web/breakdown", params={**NOV, "group_by": "key"})).json()
    assert [(r["group"], r["spend_usd"], r["requests"]) for r in by_key["rows"]] == [("k-web", "6.5", 2), ("k-batch", "0", 2)]
    assert by_key["rows"][0]["share_of_spend"] == 1.0 and by_key["rows"][1]["error_rate"] == 0.5

    by_tag = (await client.get("/admin/reports/projects/web/breakdown", params={**NOV, "group_by": "tag"})).json()
    assert {(r["label"], r["spend_usd"]) for r in by_tag["rows"]} == {
        ("team:web", "6.5"),
        ("env:prod", "4.25"),
        ("(untagged)", "0"),
    }
    by_user = (await client.get("/admin/reports/projects/web/breakdown", params={**NOV, "group_by": "user"})).json()
    assert {(r["group"], r["spend_usd"]) for r in by_user["rows"]} == {("alice", "2.25"), ("bob", "4.25"), (None, "0")}
    by_tag_daily = (await client.get("/admin/reports/projects/web/daily", params={**NOV, "group_by": "project_tag"})).json()
    assert {s["label"] for s in by_tag_daily["series"]} == {"nightly", "(no tag)"}

    everyone = (await client.get("/admin/reports/daily", params={**NOV, "format": "csv"})).text
    lines = list(csv.DictReader(io.StringIO(everyone)))
    assert sum(D(line["spend_usd"]) for line in lines) == D("8.0000000001")
    assert {line["group"] for line in lines} == {"web", "shop", "lab", "retired"}


@pytest.mark.parametrize(
    ("path", "query", "param"),
    [
        ("/admin/reports/projects", {"since": "2026-13-01"}, "since"),
        ("/admin/reports/projects", {"since": "yesterday"}, "since"),
        ("/admin/reports/projects", {"until": "2026-11-31"}, "until"),
        ("/admin/reports/projects", {"since": "2026-11-20", "until": "2026-11-19"}, "since"),
        ("/admin/reports/projects", {"since": "1990-01-01", "until": "2026-01-01"}, "until"),
        ("/admin/reports/projects", {"format": "xlsx"}, "format"),
        ("/admin/reports/daily", {"group_by": "colour"}, "group_by"),
        ("/admin/reports/projects/nope/daily", {}, "project"),
        ("/admin/reports/projects/nope/breakdown", {}, "project"),
        ("/admin/reports/projects/web/daily", {"group_by": "weather"}, "group_by"),
        ("/admin/reports/projects/web/breakdown", {"group_by": "DROP TABLE"}, "group_by"),
        ("/admin/reports/projects/web/breakdown", {"since": "2026-11-02", "until": "2026-11-01"}, "since"),
        ("/admin/usage", {"since": "2026-11-05", "until": "2026-11-04"}, "since"),
        ("/admin/usage", {"group_by": "colour"}, "group_by"),
    ],
)
async def test_bad_input_is_a_clear_400_and_leaves_the_ledger_untouched(
    client: httpx.AsyncClient, path: str, query: dict[str, str], param: str
) -> None:
    db = client.app.state.gateway.db  # type: ignore[attr-defined]
    before = await table_counts(db)
    usage_before = (await client.get("/admin/usage", params={"group_by": "day,project"})).json()
    answer = await client.get(path, params=query)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]
    assert await table_counts(db) == before
    assert (await client.get("/admin/usage", params={"group_by": "day,project"})).json() == usage_before

"""Usage reports: SQL grouping on SQLite and Postgres, filters, exact totals, CSV and table output."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest

from gateway.db import Database, UsageRecord
from gateway.ledger import render_report, usage_report
from gateway.ledger.rollups import write_ledger

D = Decimal


def _rec(
    i: int,
    ts: datetime,
    model: str,
    deployment: str,
    key: str,
    cost: str,
    task: str | None = "chat",
    project: str = "web",
    status: int = 200,
) -> UsageRecord:
    return UsageRecord(
        id=f"u{i}",
        ts=ts,
        project=project,
        key_id=key,
        requested_model=model,
        deployment=deployment,
        task=task,
        prompt_tokens=100 + i,
        cached_tokens=i % 2,
        completion_tokens=10 * i,
        cost_usd=D(cost),
        status=status,
    )


@pytest.fixture
async def ledger(database: Database) -> Database:
    rows = [
        _rec(1, datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC), "auto", "local", "k1", "0"),
        _rec(2, datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC), "auto", "gpt", "k1", "0.0000001"),
        _rec(3, datetime(2026, 11, 2, 8, 0, tzinfo=UTC), "auto", "gpt", "k2", "0.1234567891", task="code"),
        _rec(4, datetime(2026, 11, 2, 9, 0, tzinfo=UTC), "gpt-4o-mini", "gpt", "k2", "1.5", status=502),
        _rec(5, datetime(2026, 10, 31, 23, 0, tzinfo=UTC), "auto", "gpt", "k1", "7"),  # the month before
        _rec(6, datetime(2026, 11, 3, 1, 0, tzinfo=UTC), "auto", "gpt", "k3", "2", project="other", task=None),
    ]
    assert await write_ledger(database, rows) == len(rows)
    return database


async def test_totals_without_grouping(ledger: Database) -> None:
    report = await usage_report(ledger)
    assert report["total_requests"] == 6
    assert report["total_cost_usd"] == "10.6234568891"
    assert report["total_prompt_tokens"] == sum(100 + i for i in range(1, 7))
    assert report["total_completion_tokens"] == sum(10 * i for i in range(1, 7))
    assert len(report["rows"]) == 1 and report["rows"][0]["requests"] == 6


async def test_group_by_day_and_model_with_filters(ledger: Database) -> None:
    report = await usage_report(
        ledger, project="web", since=date(2026, 11, 1), until=date(2026, 11, 2), group_by=["day", "model"]
    )
    assert [(r["day"], r["model"], r["requests"], r["cost_usd"]) for r in report["rows"]] == [
        ("2026-11-01", "auto", 2, "0.0000001"),
        ("2026-11-02", "auto", 1, "0.1234567891"),
        ("2026-11-02", "gpt-4o-mini", 1, "1.5"),
    ]
    assert report["total_cost_usd"] == "1.6234568891"  # rows add up to the total, digit for digit
    assert report["rows"][-1]["errors"] == 1
    assert report["since"] == "2026-11-01T00:00:00+00:00" and report["until"] == "2026-11-03T00:00:00+00:00"


async def test_group_by_key_deployment_task_project(ledger: Database) -> None:
    report = await usage_report(
        ledger, since=datetime(2026, 11, 1, tzinfo=UTC), group_by=["project", "key", "deployment", "task"]
    )
    keys = [(r["project"], r["key"], r["deployment"], r["task"], r["requests"]) for r in report["rows"]]
    assert keys == [
        ("other", "k3", "gpt", None, 1),
        ("web", "k1", "gpt", "chat", 1),
        ("web", "k1", "local", "chat", 1),
        ("web", "k2", "gpt", "chat", 1),
        ("web", "k2", "gpt", "code", 1),
    ]
    only_k2 = await usage_report(ledger, key="k2", group_by=["deployment"])
    assert [(r["deployment"], r["requests"], r["cost_usd"]) for r in only_k2["rows"]] == [("gpt", 2, "1.6234567891")]


async def test_until_as_a_time_is_exclusive(ledger: Database) -> None:
    report = await usage_report(
        ledger, since=datetime(2026, 11, 1, tzinfo=UTC), until=datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)
    )
    assert report["total_requests"] == 1


async def test_empty_range_and_unknown_group(ledger: Database) -> None:
    empty = await usage_report(ledger, since=date(2030, 1, 1), group_by=["day"])
    assert (empty["total_requests"], empty["total_cost_usd"], empty["rows"]) == (0, "0", [])
    assert (await usage_report(ledger, since=date(2030, 1, 1)))["rows"] == []
    with pytest.raises(ValueError, match="unknown group_by"):
        await usage_report(ledger, group_by=["colour"])


async def test_renderers(ledger: Database) -> None:
    report = await usage_report(ledger, group_by=["model"])
    rows = list(csv.DictReader(io.StringIO(render_report(report, "csv"))))
    assert [r["model"] for r in rows] == ["auto", "gpt-4o-mini"]
    assert sum(D(r["cost_usd"]) for r in rows) == D(report["total_cost_usd"])
    table = render_report(report, "table")
    assert table.splitlines()[0].split() == [
        "model",
        "requests",
        "errors",
        "prompt_tokens",
        "cached_tokens",
        "completion_tokens",
        "cost_usd",
    ]
    assert table.splitlines()[-1].split()[0] == "TOTAL" and table.splitlines()[-1].endswith(report["total_cost_usd"])
    assert orjson.loads(render_report(report, "json")) == report
    with pytest.raises(ValueError):
        render_report(report, "xml")

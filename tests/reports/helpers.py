"""Factories for the finance tests: ledger rows, clean tables, reading the ledger back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from gateway.db import Database
from gateway.ledger.rollups import (
    ATTRIBUTION_DIMENSIONS,
    DAILY_DIMENSIONS,
    MEASURES,
    PROJECT_DIMENSIONS,
)

ROLLUPS = (
    ("usage_daily", DAILY_DIMENSIONS),
    ("usage_project_daily", PROJECT_DIMENSIONS),
    ("usage_daily_attribution", ATTRIBUTION_DIMENSIONS),
)
LEDGER_TABLES = ("usage_records", "usage_daily", "usage_project_daily", "usage_daily_attribution", "budget_alerts")


async def assert_rollups_equal_rows(db: Database) -> None:
    """Every rollup table equals a GROUP BY over the raw ledger rows, group for group, to the last digit."""
    for table, dims in ROLLUPS:
        assert await rollup_groups(db, table, dims) == await raw_groups(db, dims), table


async def clear_ledger(db: Database) -> None:
    """Empty the ledger, its rollups and the alerts (projects and keys stay)."""
    async with db.engine.begin() as conn:
        for table in LEDGER_TABLES:
            await conn.execute(text(f"DELETE FROM {table}"))


def ledger_row(i: int, ts: datetime, project: str = "web", cost: str = "0.001", **fields: Any) -> dict[str, Any]:
    """One ledger row with sensible defaults; ``fields`` override any column."""
    row: dict[str, Any] = {
        "id": f"t-{i:06d}",
        "ts": ts if ts.tzinfo else ts.replace(tzinfo=UTC),
        "project": project,
        "key_id": "k1",
        "requested_model": "auto",
        "route": "auto",
        "deployment": "local",
        "provider": "openai_compatible",
        "locality": "self_hosted",
        "sensitivity": "public",
        "task": "chat",
        "prompt_tokens": 100,
        "cached_tokens": 0,
        "completion_tokens": 20,
        "cost_usd": Decimal(cost),
        "status": 200,
    }
    return row | fields


async def table_counts(db: Database) -> dict[str, int]:
    """Rows per ledger table (to show a request changed nothing)."""
    async with db.engine.connect() as conn:
        return {t: (await conn.execute(text(f"SELECT COUNT(*) FROM {t}"))).scalar_one() for t in LEDGER_TABLES}


async def raw_groups(db: Database, dims: tuple[str, ...]) -> dict[tuple[str, ...], tuple[Any, ...]]:
    """A rollup table's contents as a GROUP BY over the raw ledger rows would make it."""
    day = "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')" if db.dialect == "postgresql" else "substr(ts, 1, 10)"
    source = {"model": "requested_model"}
    keys = [day] + [f"COALESCE({source.get(d, d)}, '')" for d in dims[1:]]
    sql = (
        f"SELECT {', '.join(keys)}, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(prompt_tokens), "
        f"SUM(cached_tokens), SUM(completion_tokens), SUM(cost_usd) FROM usage_records GROUP BY {', '.join(keys)}"
    )
    async with db.engine.connect() as conn:
        result = (await conn.execute(text(sql))).all()
    return {tuple(r[: len(dims)]): measures(db, r[len(dims) :]) for r in result}


async def rollup_groups(db: Database, table: str, dims: tuple[str, ...]) -> dict[tuple[str, ...], tuple[Any, ...]]:
    """A rollup table's contents: group -> (requests, errors, prompt, cached, completion, cost)."""
    async with db.engine.connect() as conn:
        result = (await conn.execute(text(f"SELECT {', '.join(dims)}, {', '.join(MEASURES)} FROM {table}"))).all()
    return {tuple(r[: len(dims)]): measures(db, r[len(dims) :]) for r in result}


def measures(db: Database, values: Any) -> tuple[Any, ...]:
    *counts, cost = values
    cost = Decimal(int(cost)).scaleb(-10) if db.dialect == "sqlite" else Decimal(cost)
    return (*(int(c) for c in counts), cost)

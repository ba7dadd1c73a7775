"""Factories for the finance tests: ledger rows, clean tables, reading the ledger back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from gateway.db import Database

LEDGER_TABLES = ("usage_records", "usage_daily", "usage_daily_attribution", "budget_alerts")


async def clear_ledger(db: Database) -> None:
    """Empty the ledger, its rollups and the alerts (projects and keys stay)."""
    async with db.engine.begin() as conn:
        for table in LEDGER_TABLES:
            await conn.execute(text(f"DELETE FROM {table}"))


def ledger_row(i: int, ts: datetime, project: str = "web", cost: str = "0.001", **fields: Any) -> dict[str, Any]:
    """One ledger row with sensible defaults; ``fields`` override any column."""
    row: dict[str, Any] = {
        "id": f"t-{i:06d}", "ts": ts if ts.tzinfo else ts.replace(tzinfo=UTC), "project": project, "key_id": "k1",
        "requested_model": "auto", "route": "auto", "deployment": "local", "provider": "openai_compatible",
        "locality": "self_hosted", "sensitivity": "public", "task": "chat", "prompt_tokens": 100, "cached_tokens": 0,
        "completion_tokens": 20, "cost_usd": Decimal(cost), "status": 200,
    }
    return row | fields


async def table_counts(db: Database) -> dict[str, int]:
    """Rows per ledger table (to show a request changed nothing)."""
    async with db.engine.connect() as conn:
        return {t: (await conn.execute(text(f"SELECT COUNT(*) FROM {t}"))).scalar_one() for t in LEDGER_TABLES}

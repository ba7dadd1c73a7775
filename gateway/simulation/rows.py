"""The ledger rows a simulation replays, read once per run (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import orjson
from sqlalchemy import select

from gateway.db.engine import Database
from gateway.ledger.rollups import LEDGER_TABLE
from routing.simulate import LedgerRow

_COLUMNS = (
    "project",
    "requested_model",
    "endpoint",
    "sensitivity",
    "task",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "deployment",
    "locality",
    "cost_usd",
    "status",
    "needs",
    "key_tags",
)


def _names(text: str | None, cache: dict[str | None, frozenset[str]]) -> frozenset[str]:
    """A sorted JSON array column (``needs``, ``key_tags``) as a set; NULL or unreadable is empty."""
    found = cache.get(text)
    if found is None:
        try:
            value = orjson.loads(text) if text else []
        except orjson.JSONDecodeError:
            value = []
        found = cache[text] = frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) else frozenset()
    return found


async def load_rows(db: Database, start: datetime, end: datetime, projects: Collection[str] | None = None) -> list[LedgerRow]:
    """Every ledger row with ``start <= ts < end``, of ``projects`` when given."""
    c = LEDGER_TABLE.c
    stmt = select(*(c[name] for name in _COLUMNS)).where(c.ts >= start, c.ts < end)
    if projects is not None:
        stmt = stmt.where(c.project.in_(sorted(projects)))
    names: dict[str | None, frozenset[str]] = {}
    async with db.engine.connect() as conn:
        result = await conn.execute(stmt)
        make = LedgerRow._make
        return [make((*row[:12], _names(row[12], names), _names(row[13], names))) for row in result]

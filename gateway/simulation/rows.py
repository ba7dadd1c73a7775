"""The ledger rows a simulation replays, read once per run (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import orjson
from sqlalchemy import select

from gateway.db.engine import Database
from gateway.db.models import UsageRecord
from routing.simulate import LedgerRow

_COLUMNS = (
    UsageRecord.project,
    UsageRecord.requested_model,
    UsageRecord.endpoint,
    UsageRecord.sensitivity,
    UsageRecord.task,
    UsageRecord.prompt_tokens,
    UsageRecord.cached_tokens,
    UsageRecord.completion_tokens,
    UsageRecord.deployment,
    UsageRecord.locality,
    UsageRecord.cost_usd,
    UsageRecord.status,
    UsageRecord.needs,
    UsageRecord.key_tags,
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
    r = UsageRecord
    stmt = select(*_COLUMNS).where(r.ts >= start, r.ts < end)  # type: ignore[arg-type]
    if projects is not None:
        stmt = stmt.where(r.project.in_(sorted(projects)))  # type: ignore[union-attr]
    names: dict[str | None, frozenset[str]] = {}
    async with db.engine.connect() as conn:
        result = await conn.execute(stmt)
        return [
            LedgerRow(
                project,
                model or "",
                endpoint,
                sensitivity,
                task,
                prompt,
                cached,
                completion,
                deployment,
                locality,
                cost,
                status,
                _names(needs, names),
                _names(tags, names),
            )
            for (
                project,
                model,
                endpoint,
                sensitivity,
                task,
                prompt,
                cached,
                completion,
                deployment,
                locality,
                cost,
                status,
                needs,
                tags,
            ) in result
        ]

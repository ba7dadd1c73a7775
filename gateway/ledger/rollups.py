"""Daily rollups of the ledger, written in the same transaction as the rows they count.

Three tables (see :mod:`gateway.db.models`): ``usage_daily`` (UTC day x project x key x model x
route x deployment x provider x locality x task x sensitivity), ``usage_project_daily`` (UTC day
x project x locality: a coarsening of the first, a few rows per project and day, for the overview
and budget figures) and ``usage_daily_attribution`` (UTC day x project x end user x project tag
x key tags). Each holds the number of rows, of error rows (status >= 400), the token sums and
the exact cost sum of its group.

:func:`write_rows` is the one way rows enter the ledger: it inserts them with insert-or-ignore
on the row id, asks the database which ids it actually inserted (``RETURNING``), and adds only
those rows to the rollups, by upsert, before the transaction commits. A replayed row (journal
replay, spool replay, a second replica replaying the same segment) is ignored by the insert
and so never counted twice. Rows are inserted in id order and rollups upserted in key order, so
concurrent writers take their locks in one global order (row ids, then rollup keys) and cannot
deadlock each other (shown by a test with four writers racing on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.models import UsageDaily, UsageDailyAttribution, UsageProjectDaily, UsageRecord

MEASURES = ("requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_usd")
DAILY_DIMENSIONS = ("day", "project", "key_id", "model", "route", "deployment", "provider", "locality", "task", "sensitivity")
PROJECT_DIMENSIONS = ("day", "project", "locality")
ATTRIBUTION_DIMENSIONS = ("day", "project", "end_user", "project_tag", "key_tags")

DAILY_TABLE: Table = UsageDaily.__table__  # type: ignore[attr-defined]
PROJECT_TABLE: Table = UsageProjectDaily.__table__  # type: ignore[attr-defined]
ATTRIBUTION_TABLE: Table = UsageDailyAttribution.__table__  # type: ignore[attr-defined]
LEDGER_TABLE: Table = UsageRecord.__table__  # type: ignore[attr-defined]

Groups = dict[tuple[str, ...], list[Any]]


class Rollups(NamedTuple):
    """A batch's groups for each rollup table: key tuple -> [requests, errors, p, c, o, cost]."""

    daily: Groups
    projects: Groups
    attribution: Groups

    def tables(self) -> list[tuple[Table, tuple[str, ...], Groups]]:
        return [
            (DAILY_TABLE, DAILY_DIMENSIONS, self.daily),
            (PROJECT_TABLE, PROJECT_DIMENSIONS, self.projects),
            (ATTRIBUTION_TABLE, ATTRIBUTION_DIMENSIONS, self.attribution),
        ]


def utc_day(ts: datetime) -> str:
    """``YYYY-MM-DD`` of a ledger timestamp, in UTC (naive timestamps are UTC)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%d")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def rollup(rows: Iterable[Mapping[str, Any]]) -> Rollups:
    """Sum ledger rows into the groups of each rollup table.

    The keys follow :data:`DAILY_DIMENSIONS`, :data:`PROJECT_DIMENSIONS` and
    :data:`ATTRIBUTION_DIMENSIONS` (None becomes "").
    """
    daily: Groups = {}
    attribution: Groups = {}
    days: dict[Any, str] = {}
    for row in rows:
        g = row.get
        ts = row["ts"]
        day = days.get(ts.date()) if ts.tzinfo is UTC else None
        if day is None:
            day = utc_day(ts)
            if ts.tzinfo is UTC:
                days[ts.date()] = day
        cost = row["cost_usd"]
        if type(cost) is not Decimal:
            cost = Decimal(str(cost))
        status = g("status")
        error = 1 if status is not None and status >= 400 else 0
        prompt, cached, completion = int(g("prompt_tokens") or 0), int(g("cached_tokens") or 0), int(g("completion_tokens") or 0)
        project = _text(g("project"))
        keys = (
            (
                daily,
                (
                    day,
                    project,
                    _text(g("key_id")),
                    _text(g("requested_model")),
                    _text(g("route")),
                    _text(g("deployment")),
                    _text(g("provider")),
                    _text(g("locality")),
                    _text(g("task")),
                    _text(g("sensitivity")),
                ),
            ),
            (attribution, (day, project, _text(g("end_user")), _text(g("project_tag")), _text(g("key_tags")))),
        )
        for groups, key in keys:
            acc = groups.get(key)
            if acc is None:
                groups[key] = [1, error, prompt, cached, completion, cost]
            else:
                acc[0] += 1
                acc[1] += error
                acc[2] += prompt
                acc[3] += cached
                acc[4] += completion
                acc[5] += cost
    projects: Groups = {}
    for day_key, measures in daily.items():  # a coarsening of the daily groups
        short = (day_key[0], day_key[1], day_key[7])
        acc = projects.get(short)
        if acc is None:
            projects[short] = list(measures)
        else:
            for i, value in enumerate(measures):
                acc[i] += value
    return Rollups(daily, projects, attribution)


def rollup_params(groups: Groups, dims: Sequence[str]) -> list[dict[str, Any]]:
    """Upsert parameters, sorted by key (one lock order for every writer)."""
    return [dict(zip(dims, key, strict=True)) | dict(zip(MEASURES, groups[key], strict=True)) for key in sorted(groups)]


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def upsert_statement(table: Table, dims: Sequence[str], dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (dims) DO UPDATE SET m = table.m + excluded.m`` for every measure."""
    stmt = _insert(dialect)(table)
    return stmt.on_conflict_do_update(
        index_elements=list(dims),
        set_={m: table.c[m] + stmt.excluded[m] for m in MEASURES},
    )


class RollupWriter:
    """The statements of :func:`write_rows` for one dialect, built once."""

    def __init__(self, dialect: str) -> None:
        self.insert_rows = (
            _insert(dialect)(LEDGER_TABLE).on_conflict_do_nothing(index_elements=["id"]).returning(LEDGER_TABLE.c.id)
        )
        self.upserts = {table.name: upsert_statement(table, dims, dialect) for table, dims, _ in Rollups({}, {}, {}).tables()}

    async def write_rows(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Insert-or-ignore ``rows`` and roll up the ones inserted; returns those. The caller commits."""
        unique: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            unique.setdefault(row["id"], row)  # the same id twice in one batch counts once
        # Sorted by id: two writers inserting overlapping rows wait for each other in one order.
        result = await conn.execute(self.insert_rows, [unique[i] for i in sorted(unique)])
        inserted = {row_id for (row_id,) in result.all()}
        fresh = [row for row_id, row in unique.items() if row_id in inserted]
        if fresh:
            await self.add(conn, fresh)
        return fresh

    async def add(self, conn: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add rows (already in the ledger, never counted before) to every rollup table, each in key order."""
        for table, dims, groups in rollup(rows).tables():
            if groups:
                await conn.execute(self.upserts[table.name], rollup_params(groups, dims))


async def write_ledger(db: Any, records: Iterable[Any]) -> int:
    """Insert ledger rows and their rollups in one transaction, outside the batched writer.

    For tools and tests (``switchyard dev seed-ledger``, fixtures); the gateway itself always goes
    through :class:`~gateway.ledger.writer.LedgerWriter`. Returns how many rows were new.
    """
    from gateway.ledger.writer import normalize

    rows = [normalize(r) for r in records]
    if not rows:
        return 0
    writer = RollupWriter(db.dialect)
    async with db.engine.begin() as conn:
        return len(await writer.write_rows(conn, rows))

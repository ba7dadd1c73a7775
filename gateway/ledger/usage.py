"""Usage reports over the ledger: SQL aggregation (SQLite and Postgres), rendered as JSON, CSV or a table.

``since`` is inclusive and ``until`` exclusive; a bare date for ``until`` means "through the end
of that day" (``until=2026-11-30`` includes the 30th). Days are UTC. Money is summed exactly in
the database and shown as a plain decimal string, so rows add up to the total to the last digit.

When both bounds are whole days (or absent), the sums come from the daily rollups
(:mod:`gateway.ledger.rollups`), which count exactly the same rows; a bound with a time of day
reads the raw rows. ``source`` forces one or the other.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson
from sqlalchemy import case, func, select
from sqlmodel import col

from gateway.db.engine import Database
from gateway.db.models import UsageRecord
from gateway.db.types import decimal_str, utc_day
from gateway.ledger.rollups import ATTRIBUTION_TABLE, DAILY_TABLE, PROJECT_TABLE

GROUP_BY_FIELDS: dict[str, Any] = {
    "day": utc_day(UsageRecord.ts),
    "project": UsageRecord.project,
    "key": UsageRecord.key_id,
    "model": UsageRecord.requested_model,
    "route": UsageRecord.route,
    "deployment": UsageRecord.deployment,
    "provider": UsageRecord.provider,
    "task": UsageRecord.task,
    "sensitivity": UsageRecord.sensitivity,
    "user": UsageRecord.end_user,
    "project_tag": UsageRecord.project_tag,
}
# group_by field -> rollup column, per rollup table
_DAILY_COLUMNS = {
    "day": "day",
    "project": "project",
    "key": "key_id",
    "model": "model",
    "route": "route",
    "deployment": "deployment",
    "provider": "provider",
    "task": "task",
    "sensitivity": "sensitivity",
}
_ATTRIBUTION_COLUMNS = {"day": "day", "project": "project", "user": "end_user", "project_tag": "project_tag"}
METRICS = ("requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_usd")


def _bound(value: datetime | date | None, *, end: bool) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    start = datetime.combine(value, time.min, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


async def usage_report(
    db: Database,
    project: str | None = None,
    key: str | None = None,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    group_by: Sequence[str] = (),
    projects: Collection[str] | None = None,
    source: Literal["auto", "rollup", "raw"] = "auto",
) -> dict[str, Any]:
    """Totals and one row per group; raises ValueError for an unknown ``group_by`` field.

    ``projects`` restricts the report to those projects (a finance key's scope).
    """
    unknown = [g for g in group_by if g not in GROUP_BY_FIELDS]
    if unknown:
        raise ValueError(f"unknown group_by field(s): {', '.join(unknown)}; expected any of {', '.join(GROUP_BY_FIELDS)}")
    groups = list(dict.fromkeys(group_by))
    start, end = _bound(since, end=False), _bound(until, end=True)
    stmt = None
    if source != "raw" and not isinstance(since, datetime) and not isinstance(until, datetime):
        stmt = _rollup_query(groups, project, key, projects, start, end)
    if stmt is None:
        if source == "rollup":
            raise ValueError("these filters and groups need the raw ledger rows")
        stmt = _raw_query(groups, project, key, projects, start, end)
    async with db.engine.connect() as conn:
        result = (await conn.execute(stmt)).mappings().all()
    rows = []
    for rec in result:
        if not rec["requests"]:
            continue  # an ungrouped aggregate over no rows
        row: dict[str, Any] = {g: rec[g] for g in groups}
        row |= {m: int(rec[m] or 0) for m in METRICS if m != "cost_usd"}
        row["cost_usd"] = rec["cost_usd"] if rec["cost_usd"] is not None else Decimal(0)
        rows.append(row)
    rows.sort(key=lambda row: tuple("" if row[g] is None else str(row[g]) for g in groups))
    total_cost = sum((row["cost_usd"] for row in rows), Decimal(0))
    for row in rows:
        row["cost_usd"] = decimal_str(row["cost_usd"])
    return {
        "since": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
        "group_by": groups,
        "total_requests": sum(row["requests"] for row in rows),
        "total_errors": sum(row["errors"] for row in rows),
        "total_prompt_tokens": sum(row["prompt_tokens"] for row in rows),
        "total_cached_tokens": sum(row["cached_tokens"] for row in rows),
        "total_completion_tokens": sum(row["completion_tokens"] for row in rows),
        "total_cost_usd": decimal_str(total_cost),
        "rows": rows,
    }


def _raw_query(
    groups: list[str],
    project: str | None,
    key: str | None,
    projects: Collection[str] | None,
    start: datetime | None,
    end: datetime | None,
) -> Any:
    r = UsageRecord
    stmt = select(
        *[GROUP_BY_FIELDS[g].label(g) for g in groups],
        func.count().label("requests"),
        func.sum(case((col(r.status) >= 400, 1), else_=0)).label("errors"),
        func.sum(r.prompt_tokens).label("prompt_tokens"),
        func.sum(r.cached_tokens).label("cached_tokens"),
        func.sum(r.completion_tokens).label("completion_tokens"),
        func.sum(r.cost_usd).label("cost_usd"),
    )
    if project is not None:
        stmt = stmt.where(col(r.project) == project)
    if projects is not None:
        stmt = stmt.where(r.project.in_(sorted(projects)))  # type: ignore[union-attr]
    if key is not None:
        stmt = stmt.where(col(r.key_id) == key)
    if start is not None:
        stmt = stmt.where(col(r.ts) >= start)
    if end is not None:
        stmt = stmt.where(col(r.ts) < end)
    if groups:
        stmt = stmt.group_by(*[GROUP_BY_FIELDS[g] for g in groups])
    return stmt


def _rollup_query(
    groups: list[str],
    project: str | None,
    key: str | None,
    projects: Collection[str] | None,
    start: datetime | None,
    end: datetime | None,
) -> Any:
    """The same sums from a rollup table that has every group (None when neither has them all)."""
    needed = set(groups) | ({"key"} if key is not None else set())
    if needed <= {"day", "project"}:
        table, names = PROJECT_TABLE, {"day": "day", "project": "project"}
    elif needed <= set(_DAILY_COLUMNS):
        table, names = DAILY_TABLE, _DAILY_COLUMNS
    elif needed <= set(_ATTRIBUTION_COLUMNS):
        table, names = ATTRIBUTION_TABLE, _ATTRIBUTION_COLUMNS
    else:
        return None
    c = table.c
    # Rollups store "" for "none"; the raw report shows None.
    labels = [func.nullif(c[names[g]], "").label(g) if g != "day" else c.day.label(g) for g in groups]
    stmt = select(
        *labels,
        func.sum(c.requests).label("requests"),
        func.sum(c.errors).label("errors"),
        func.sum(c.prompt_tokens).label("prompt_tokens"),
        func.sum(c.cached_tokens).label("cached_tokens"),
        func.sum(c.completion_tokens).label("completion_tokens"),
        func.sum(c.cost_usd).label("cost_usd"),
    )
    if project is not None:
        stmt = stmt.where(c.project == project)
    if projects is not None:
        stmt = stmt.where(c.project.in_(sorted(projects)))
    if key is not None:
        stmt = stmt.where(c.key_id == key)
    if start is not None:
        stmt = stmt.where(c.day >= start.date().isoformat())
    if end is not None:
        stmt = stmt.where(c.day < end.date().isoformat())
    if groups:
        stmt = stmt.group_by(*[c[names[g]] for g in groups])
    return stmt


def render_report(report: dict[str, Any], fmt: str = "table") -> str:
    """``json`` (the report itself), ``csv`` (one line per row, no total line) or ``table`` (with a total)."""
    if fmt == "json":
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    columns = [*report.get("group_by", []), *METRICS]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in report["rows"]:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
        return out.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format '{fmt}': expected table, csv or json")
    groups = report.get("group_by", [])
    lines = [[("-" if row.get(c) is None else str(row[c])) for c in columns] for row in report["rows"]]
    total = ["TOTAL"] + [""] * (len(groups) - 1) if groups else []
    total += [
        str(report["total_requests"]),
        str(report.get("total_errors", "")),
        str(report["total_prompt_tokens"]),
        str(report.get("total_cached_tokens", "")),
        str(report["total_completion_tokens"]),
        report["total_cost_usd"],
    ]
    widths = [max(len(c), *(len(line[i]) for line in [*lines, total])) for i, c in enumerate(columns)]
    numeric = [c in METRICS for c in columns]

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_line(columns), rule, *map(fmt_line, lines), rule, fmt_line(total)]) + "\n"

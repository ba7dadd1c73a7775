"""Usage reports over the ledger: SQL aggregation (SQLite and Postgres), rendered as JSON, CSV or a table.

``since`` is inclusive and ``until`` exclusive; a bare date for ``until`` means "through the end
of that day" (``until=2026-11-30`` includes the 30th). Days are UTC. Money is summed exactly in
the database and shown as a plain decimal string, so rows add up to the total to the last digit.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import case, func, select

from gateway.db.engine import Database
from gateway.db.models import UsageRecord
from gateway.db.types import decimal_str, utc_day

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
}
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
) -> dict[str, Any]:
    """Totals and one row per group; raises ValueError for an unknown ``group_by`` field."""
    unknown = [g for g in group_by if g not in GROUP_BY_FIELDS]
    if unknown:
        raise ValueError(f"unknown group_by field(s): {', '.join(unknown)}; expected any of {', '.join(GROUP_BY_FIELDS)}")
    groups = list(dict.fromkeys(group_by))
    keys = [GROUP_BY_FIELDS[g].label(g) for g in groups]
    r = UsageRecord
    stmt = select(
        *keys,
        func.count().label("requests"),
        func.sum(case((r.status >= 400, 1), else_=0)).label("errors"),
        func.sum(r.prompt_tokens).label("prompt_tokens"),
        func.sum(r.cached_tokens).label("cached_tokens"),
        func.sum(r.completion_tokens).label("completion_tokens"),
        func.sum(r.cost_usd).label("cost_usd"),
    )
    start, end = _bound(since, end=False), _bound(until, end=True)
    if project is not None:
        stmt = stmt.where(r.project == project)
    if key is not None:
        stmt = stmt.where(r.key_id == key)
    if start is not None:
        stmt = stmt.where(r.ts >= start)
    if end is not None:
        stmt = stmt.where(r.ts < end)
    if groups:
        stmt = stmt.group_by(*[GROUP_BY_FIELDS[g] for g in groups])
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
    total += [str(report["total_requests"]), str(report.get("total_errors", "")), str(report["total_prompt_tokens"]),
              str(report.get("total_cached_tokens", "")), str(report["total_completion_tokens"]), report["total_cost_usd"]]
    widths = [max(len(c), *(len(line[i]) for line in [*lines, total])) for i, c in enumerate(columns)]
    numeric = [c in METRICS for c in columns]

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_line(columns), rule, *map(fmt_line, lines), rule, fmt_line(total)]) + "\n"

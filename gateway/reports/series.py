"""Daily series (the charts) and breakdowns (the tables) of one project, or of every visible one.

``group_by`` is any of :data:`BREAKDOWN_DIMENSIONS`. Keys are shown by name (and id), never by
secret. Grouping by ``tag`` counts a request under each tag of its key, so tag groups can add
up to more than the total; every other grouping partitions the rows exactly.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any

from gateway.db.engine import Database
from gateway.reports.dates import DayRange
from gateway.reports.projects import money, share, usage_fields
from gateway.reports.queries import (
    DIMENSIONS,
    Sums,
    explode_tags,
    grouped_sums,
    key_names,
)
from gateway.reports.savings import ReferencePrices

BREAKDOWN_DIMENSIONS = (
    "deployment",
    "model",
    "task",
    "sensitivity",
    "key",
    "route",
    "provider",
    "locality",
    "user",
    "project_tag",
    "tag",
    "project",
)
assert set(BREAKDOWN_DIMENSIONS) <= set(DIMENSIONS)
_NONE_LABELS = {"key": "master key", "tag": "(untagged)", "user": "(no user)", "project_tag": "(no tag)"}
POINT_COLUMNS = ("spend_usd", "requests", "input_tokens", "output_tokens", "cached_input_tokens", "errors")


async def _groups(db: Database, days: DayRange, dims: list[str], projects: Collection[str] | None) -> dict[tuple[str, ...], Sums]:
    groups = await grouped_sums(db, days, dims, projects=projects)
    if "tag" in dims:
        groups = explode_tags(groups, dims.index("tag"))
    return groups


async def _labels(db: Database, dimension: str, values: Collection[str]) -> dict[str, str]:
    if dimension == "key":
        names = await key_names(db, values)
        return {v: names.get(v, v) if v else _NONE_LABELS["key"] for v in values}
    return {v: v if v else _NONE_LABELS.get(dimension, "(none)") for v in values}


def _point(day: str, sums: Sums) -> dict[str, Any]:
    return {
        "day": day,
        "spend_usd": money(sums.cost),
        "requests": sums.requests,
        "input_tokens": sums.input_tokens,
        "output_tokens": sums.output_tokens,
        "cached_input_tokens": sums.cached_tokens,
        "errors": sums.errors,
    }


async def daily_report(
    db: Database, days: DayRange, group_by: str, *, project: str | None = None, scope: Collection[str] | None = None
) -> dict[str, Any]:
    """Spend per day per group: ``days`` lists every day; each series has a point for every day."""
    projects = [project] if project is not None else scope
    groups = await _groups(db, days, ["day", group_by], projects)
    labels = await _labels(db, group_by, {k[1] for k in groups})
    per_group: dict[str, dict[str, Sums]] = {}
    for (day, value), sums in groups.items():
        per_group.setdefault(value, {})[day] = sums
    total = Sums()
    # Tag groups overlap, so their total is summed apart; every other grouping partitions the rows.
    for sums in (await grouped_sums(db, days, ["day"], projects=projects)).values() if group_by == "tag" else groups.values():
        total.add(sums)
    series: list[dict[str, Any]] = []
    for value, by_day in per_group.items():
        group_total = Sums()
        for sums in by_day.values():
            group_total.add(sums)
        series.append(
            {
                "group": value or None,
                "label": labels[value],
                "spend_usd": money(group_total.cost),
                "requests": group_total.requests,
                "points": [_point(day, by_day.get(day, Sums())) for day in days.days],
            }
        )
    series.sort(key=lambda s: (-Decimal(s["spend_usd"]), s["label"]))
    return {
        "object": "report.daily",
        "project": project,
        "since": days.first,
        "until": days.last,
        "currency": "USD",
        "group_by": group_by,
        "days": days.days,
        "series": series,
        "totals": {
            "spend_usd": money(total.cost),
            "requests": total.requests,
            "input_tokens": total.input_tokens,
            "output_tokens": total.output_tokens,
            "cached_input_tokens": total.cached_tokens,
            "errors": total.errors,
        },
    }


async def breakdown_report(
    db: Database, days: DayRange, group_by: str, *, project: str, reference: ReferencePrices | None
) -> dict[str, Any]:
    """One row per group with spend, its share of the project's spend, tokens, errors and savings."""
    groups = await _groups(db, days, [group_by], [project])
    labels = await _labels(db, group_by, {k[0] for k in groups})
    total = Sums()
    # Every grouping but tags partitions the rows: its groups add up to the total. Tag groups overlap.
    for sums in (await grouped_sums(db, days, [], projects=[project])).values() if group_by == "tag" else groups.values():
        total.add(sums)
    rows = []
    for (value,), sums in groups.items():
        row: dict[str, Any] = {"group": value or None, "label": labels[value]}
        row |= usage_fields(sums, reference)
        row["share_of_spend"] = float((sums.cost / total.cost).quantize(Decimal("0.0001"))) if total.cost else 0.0
        row["error_rate"] = share(sums.errors, sums.requests)
        rows.append(row)
    rows.sort(key=lambda r: (-Decimal(r["spend_usd"]), -r["requests"], r["label"]))
    totals = usage_fields(total, reference) | {"error_rate": share(total.errors, total.requests)}
    return {
        "object": "report.breakdown",
        "project": project,
        "since": days.first,
        "until": days.last,
        "currency": "USD",
        "group_by": group_by,
        "rows": rows,
        "totals": totals,
    }

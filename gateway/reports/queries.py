"""The one query every report is built from: sums over a rollup table, grouped by dimensions.

A dimension is a column of ``usage_daily`` (day, project, key, model, route, deployment,
provider, locality, task, sensitivity) or of ``usage_daily_attribution`` (day, project, user,
project_tag, tag); one query reads one table, so its dimensions must all live in it. Grouping by
nothing finer than day, project and locality reads ``usage_project_daily``, a few rows per project
and day. ``tag`` groups by the key's tag set; :func:`explode_tags` turns that into one group per tag.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Table, func, select

from gateway.db.engine import Database
from gateway.ledger.rollups import ATTRIBUTION_TABLE, DAILY_TABLE, PROJECT_TABLE
from gateway.reports.dates import DayRange

# report dimension -> (table, column)
DIMENSIONS: dict[str, tuple[Table, str]] = {
    "day": (DAILY_TABLE, "day"),
    "project": (DAILY_TABLE, "project"),
    "key": (DAILY_TABLE, "key_id"),
    "model": (DAILY_TABLE, "model"),
    "route": (DAILY_TABLE, "route"),
    "deployment": (DAILY_TABLE, "deployment"),
    "provider": (DAILY_TABLE, "provider"),
    "locality": (DAILY_TABLE, "locality"),
    "task": (DAILY_TABLE, "task"),
    "sensitivity": (DAILY_TABLE, "sensitivity"),
    "user": (ATTRIBUTION_TABLE, "end_user"),
    "project_tag": (ATTRIBUTION_TABLE, "project_tag"),
    "tag": (ATTRIBUTION_TABLE, "key_tags"),
}
SHARED = {"day", "project"}  # in every table
COARSE = {"day", "project", "locality"}  # usage_project_daily's dimensions


@dataclass(slots=True)
class Sums:
    """Measures of one group: exact cost, token counts, and the self-hosted part when known."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0  # every prompt token, cached ones included
    cached_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal(0))
    self_hosted_tokens: int = 0
    self_hosted_cost: Decimal = field(default_factory=lambda: Decimal(0))
    has_locality: bool = True

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Sums) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.cached_tokens += other.cached_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.self_hosted_tokens += other.self_hosted_tokens
        self.self_hosted_cost += other.self_hosted_cost
        self.has_locality = self.has_locality and other.has_locality


def table_for(dims: Sequence[str]) -> Table:
    """The smallest rollup table that has every dimension in ``dims``; ValueError if none has them all."""
    if set(dims) <= COARSE:
        return PROJECT_TABLE
    tables = {DIMENSIONS[d][0].name for d in dims if d not in SHARED}
    if len(tables) > 1:
        raise ValueError(f"cannot group by {', '.join(dims)} together")
    return ATTRIBUTION_TABLE if tables == {ATTRIBUTION_TABLE.name} else DAILY_TABLE


async def grouped_sums(
    db: Database,
    days: DayRange,
    dims: Sequence[str],
    *,
    projects: Collection[str] | None = None,
    key: str | None = None,
) -> dict[tuple[str, ...], Sums]:
    """Sums per group of ``dims`` over the range (and, optionally, some projects or one key).

    On the daily table the self-hosted part is split out by grouping on locality as well.
    """
    table = table_for([*dims, "key"] if key is not None else dims)
    cols = [table.c[DIMENSIONS[d][1]] for d in dims]
    has_locality = table is not ATTRIBUTION_TABLE
    split = has_locality and "locality" not in dims
    group = [*cols, table.c.locality] if split else cols
    c = table.c
    stmt = select(
        *group,
        func.sum(c.requests),
        func.sum(c.errors),
        func.sum(c.prompt_tokens),
        func.sum(c.cached_tokens),
        func.sum(c.completion_tokens),
        func.sum(c.cost_usd),
    ).where(c.day >= days.first, c.day <= days.last)
    if projects is not None:
        stmt = stmt.where(c.project.in_(sorted(projects)))
    if key is not None:
        stmt = stmt.where(c.key_id == key)
    if group:
        stmt = stmt.group_by(*group)
    async with db.engine.connect() as conn:
        result = (await conn.execute(stmt)).all()
    out: dict[tuple[str, ...], Sums] = {}
    n = len(dims)
    for rec in result:
        if rec[len(group)] is None:  # an ungrouped sum over no rows
            continue
        sums = Sums(
            requests=int(rec[len(group)]),
            errors=int(rec[len(group) + 1]),
            input_tokens=int(rec[len(group) + 2]),
            cached_tokens=int(rec[len(group) + 3]),
            output_tokens=int(rec[len(group) + 4]),
            cost=rec[len(group) + 5] if rec[len(group) + 5] is not None else Decimal(0),
            has_locality=has_locality,
        )
        locality = rec[n] if split else (rec[dims.index("locality")] if "locality" in dims else None)
        if locality == "self_hosted":
            sums.self_hosted_tokens, sums.self_hosted_cost = sums.tokens, sums.cost
        key_ = tuple(rec[:n])
        if key_ in out:
            out[key_].add(sums)
        else:
            out[key_] = sums
    return out


def explode_tags(groups: dict[tuple[str, ...], Sums], position: int) -> dict[tuple[str, ...], Sums]:
    """Turn a key-tag-set dimension into one group per tag (a row counts under each of its key's tags)."""
    out: dict[tuple[str, ...], Sums] = {}
    for key, sums in groups.items():
        text = key[position]
        tags = orjson.loads(text) if text else [""]
        for tag in tags or [""]:
            new_key = (*key[:position], str(tag), *key[position + 1 :])
            if new_key not in out:
                out[new_key] = Sums(has_locality=sums.has_locality)
            out[new_key].add(sums)
    return out


async def known_projects(db: Database, names: Collection[str]) -> set[str]:
    """Which of ``names`` have ledger rows (a project removed from the config still has its spend)."""
    if not names:
        return set()
    stmt = select(DAILY_TABLE.c.project).where(DAILY_TABLE.c.project.in_(sorted(names))).distinct()
    async with db.engine.connect() as conn:
        return {row[0] for row in (await conn.execute(stmt)).all()}


async def key_names(db: Database, ids: Collection[str]) -> dict[str, str]:
    """Key id -> key name (never anything secret)."""
    from gateway.db.models import ApiKey

    ids = [i for i in ids if i]
    if not ids:
        return {}
    table: Any = ApiKey.__table__  # type: ignore[attr-defined]
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(table.c.id, table.c.name).where(table.c.id.in_(sorted(ids))))).all()
    return {row[0]: row[1] for row in rows}

"""``GET /admin/reports/projects``: one row per project, spend against budget, as JSON or CSV.

Projects are those in the projects table plus any that only the ledger still names (a project
removed from the config keeps its spend), narrowed to what the caller may see. Spend, tokens
and requests are summed over the report's days; budget figures (``budget_used_pct``,
``forecast_usd``, ``period_*``) over the project's budget period, see
:mod:`gateway.reports.forecast`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.config import GatewayConfig
from gateway.db.engine import Database
from gateway.db.models import Project
from gateway.db.projects import list_projects
from gateway.db.types import decimal_str
from gateway.reports.dates import DayRange
from gateway.reports.forecast import exceeds, forecast, report_period, used_pct
from gateway.reports.queries import Sums, grouped_sums, known_projects
from gateway.reports.savings import ReferencePrices, reference_prices

PROJECT_COLUMNS = (
    "project",
    "spend_usd",
    "budget_usd",
    "budget_period",
    "budget_used_pct",
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "self_hosted_token_share",
    "self_hosted_spend_usd",
    "hosted_spend_usd",
    "savings_usd",
    "forecast_usd",
    "forecast_exceeds_budget",
    "errors",
    "period_start",
    "period_end",
    "period_spend_usd",
)
TOTAL_COLUMNS = (
    "spend_usd",
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "self_hosted_token_share",
    "self_hosted_spend_usd",
    "hosted_spend_usd",
    "savings_usd",
    "forecast_usd",
    "errors",
)


def money(value: Decimal | None) -> str | None:
    """An exact amount as plain decimal text (``'12.5'``), the ledger's notation."""
    return None if value is None else decimal_str(value)


def share(part: int, whole: int) -> float:
    """``part / whole`` rounded to four decimals; 0 when there is no whole."""
    return round(part / whole, 4) if whole else 0.0


def usage_fields(sums: Sums, reference: ReferencePrices | None) -> dict[str, Any]:
    """The columns every report shares, from one group's sums."""
    return {
        "spend_usd": money(sums.cost),
        "requests": sums.requests,
        "input_tokens": sums.input_tokens,
        "output_tokens": sums.output_tokens,
        "cached_input_tokens": sums.cached_tokens,
        "self_hosted_token_share": share(sums.self_hosted_tokens, sums.tokens) if sums.has_locality else None,
        "self_hosted_spend_usd": money(sums.self_hosted_cost) if sums.has_locality else None,
        "hosted_spend_usd": money(sums.cost - sums.self_hosted_cost) if sums.has_locality else None,
        "savings_usd": money(reference.savings(sums.input_tokens, sums.cached_tokens, sums.output_tokens, sums.cost))
        if reference is not None
        else None,
        "errors": sums.errors,
    }


async def projects_report(
    db: Database,
    config: GatewayConfig,
    days: DayRange,
    *,
    scope: Collection[str] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """The per-project report; ``scope`` (a finance key's projects) narrows it, empty means all."""
    now = now or datetime.now(UTC)
    reference = reference_prices(config)
    visible = set(scope) if scope else None
    sums = {key[0]: s for key, s in (await grouped_sums(db, days, ["project"], projects=visible)).items()}
    configured = {p.name: p for p in await list_projects(db)}
    names = set(configured) | set(sums)
    if visible is not None:
        names &= visible
    names.discard("")
    period_spend = await _period_spend(db, days, {n: configured.get(n) for n in names}, now)
    rows = []
    total = Sums()
    total_forecast: Decimal | None = None
    for name in sorted(names):
        project = configured.get(name)
        group = sums.get(name, Sums())
        total.add(group)
        budget = project.budget_usd if project else None
        period_name = project.budget_period if project else "monthly"
        period, spent = period_spend[name]
        projected = forecast(period, spent, now)
        if projected is not None:
            total_forecast = (total_forecast or Decimal(0)) + projected
        row = {"project": name} | usage_fields(group, reference)
        row |= {
            "budget_usd": money(budget),
            "budget_period": period_name,
            "budget_used_pct": used_pct(spent, budget),
            "forecast_usd": money(projected),
            "forecast_exceeds_budget": exceeds(budget, projected, spent),
            "period_start": period.window.start.date().isoformat() if period.window.start else None,
            "period_end": (period.window.end - timedelta(days=1)).date().isoformat() if period.window.end else None,
            "period_spend_usd": money(spent),
        }
        rows.append({c: row[c] for c in PROJECT_COLUMNS})
    # Forecasts of different budget periods (a week, a month) do not add up to anything.
    periods = {r["budget_period"] for r in rows if r["forecast_usd"] is not None}
    totals = usage_fields(total, reference) | {"forecast_usd": money(total_forecast) if len(periods) <= 1 else None}
    return {
        "object": "report.projects",
        "since": days.first,
        "until": days.last,
        "currency": "USD",
        "generated_at": now.isoformat().replace("+00:00", "Z"),
        "reference_model": reference.describe() if reference else None,
        "projects": rows,
        "totals": {c: totals[c] for c in TOTAL_COLUMNS},
    }


async def _period_spend(
    db: Database, days: DayRange, projects: dict[str, Project | None], now: datetime
) -> dict[str, tuple[Any, Decimal]]:
    """Each project's budget period and its spend so far: one query per distinct period."""
    by_period: dict[str, list[str]] = {}
    for name, project in projects.items():
        by_period.setdefault(project.budget_period if project else "monthly", []).append(name)
    out: dict[str, tuple[Any, Decimal]] = {}
    for period_name, names in by_period.items():
        period = report_period(period_name, days, now)
        spend: dict[str, Decimal] = {}
        if period.days is not None:
            found = await grouped_sums(db, period.days, ["project"], projects=names)
            spend = {key[0]: s.cost for key, s in found.items()}
        for name in names:
            out[name] = (period, spend.get(name, Decimal(0)))
    return out


async def project_exists(db: Database, name: str) -> bool:
    """A project in the projects table, or one the ledger still has rows for."""
    from gateway.db.projects import ProjectNotFound, get_project

    try:
        await get_project(db, name)
    except ProjectNotFound:
        return bool(await known_projects(db, [name]))
    return True

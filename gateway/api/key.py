"""``GET /v1/key``: the calling key's own spend, budget, remaining budget, period reset and limits.

``spend_usd`` is what the ledger holds for the key (or its project) in the current budget
period; ``remaining_usd`` is what admission will still grant: the budget minus the spend it has
counted and the reservations of requests still running. The same figure, for the tightest of
the key's and its project's budgets, is the ``x-switchyard-budget-remaining-usd`` header of
every model answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.admission.base import Subject, budget_window
from gateway.db.types import decimal_str
from gateway.reports.dates import DayRange
from gateway.reports.queries import grouped_sums
from gateway.roles import caller_of

router = APIRouter()


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


async def _ledger_spend(db: Any, subject: Subject, now: datetime, project: str) -> Decimal:
    window = budget_window(subject.period, now)
    first = window.start.date() if window.start else datetime(1970, 1, 1).date()
    days = DayRange(first, now.date())
    if subject.kind == "key":
        found = await grouped_sums(db, days, [], projects=[project], key=subject.id)
    else:
        found = await grouped_sums(db, days, [], projects=[subject.id])
    return sum((s.cost for s in found.values()), Decimal(0))


async def budget_view(state: Any, subject: Subject, project: str, now: datetime) -> dict[str, Any]:
    """One subject's period: spend (ledger), budget, reserved and remaining (admission), reset time."""
    window = budget_window(subject.period, now)
    view: dict[str, Any] = {
        "period": subject.period,
        "period_start": _iso(window.start),
        "period_reset_at": _iso(window.end),
        "spend_usd": decimal_str(await _ledger_spend(state.db, subject, now, project)),
        "budget_usd": decimal_str(subject.budget_usd) if subject.budget_usd is not None else None,
        "reserved_usd": None,
        "remaining_usd": None,
    }
    if subject.budget_usd is not None and state.admission is not None:
        current = await state.admission.budget_state(subject, now)
        left = subject.budget_usd - current.spent_usd - current.reserved_usd
        view["reserved_usd"] = decimal_str(current.reserved_usd)
        view["remaining_usd"] = decimal_str(max(Decimal(0), left))
    return view


@router.get("/v1/key", tags=["keys"])
async def current_key(request: Request) -> Response:
    """The calling key: its role, project, models, budget and spend this period, and its limits."""
    state = request.app.state.gateway
    caller = await caller_of(request)
    now = datetime.now(UTC)
    info = caller.key_info
    if info is None:  # the master key: no budget of its own
        body: dict[str, Any] = {
            "object": "key",
            "id": None,
            "name": "master key",
            "role": caller.role,
            "project": caller.project,
            "budget": None,
            "project_budget": None,
            "remaining_usd": None,
            "limits": {"rpm": None, "tpm": None},
        }
        return Response(orjson.dumps(body), media_type="application/json")
    subjects = info.subjects()
    key_view = await budget_view(state, subjects[0], info.project, now)
    project_view = await budget_view(state, subjects[1], info.project, now) if len(subjects) > 1 else None
    remaining = [Decimal(v["remaining_usd"]) for v in (key_view, project_view) if v and v["remaining_usd"] is not None]
    project_info = info.project_info
    body = {
        "object": "key",
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "project": info.project,
        "models": list(info.models),
        "tags": list(info.tags),
        "expires_at": _iso(info.expires_at),
        "budget": key_view,
        "project_budget": project_view,
        "remaining_usd": decimal_str(min(remaining)) if remaining else None,
        "limits": {"rpm": info.rpm, "tpm": info.tpm},
        "project_limits": {"rpm": project_info.rpm, "tpm": project_info.tpm} if project_info else None,
    }
    return Response(orjson.dumps(body), media_type="application/json", headers={"cache-control": "no-store"})

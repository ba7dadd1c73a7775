"""Finance reports (finance and admin keys): per-project spend, daily series and breakdowns.

    GET /admin/reports/projects?since=&until=&format=json|csv
    GET /admin/reports/daily?since=&until=&group_by=project&format=json|csv
    GET /admin/reports/projects/{name}/daily?since=&until=&group_by=deployment&format=json|csv
    GET /admin/reports/projects/{name}/breakdown?since=&until=&group_by=model&format=json|csv

Days are inclusive UTC days (``YYYY-MM-DD``); the default is the current month. A finance key
created with ``projects: [...]`` sees only those projects. Bad dates, ``since`` after
``until``, an unknown project or ``group_by`` are a 400 naming the parameter; nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from core.errors import InvalidRequest, PermissionDenied
from gateway.reports import (
    BREAKDOWN_DIMENSIONS,
    DayRange,
    breakdown_report,
    daily_report,
    parse_range,
    projects_report,
)
from gateway.reports.projects import project_exists
from gateway.reports.render import breakdown_csv, daily_csv, projects_csv
from gateway.reports.savings import reference_prices
from gateway.roles import caller_of

router = APIRouter(prefix="/admin/reports", tags=["reports"])


def clock(request: Request) -> datetime:
    """Now, from the gateway's clock (tests pin it through ``GatewayState.clock``)."""
    return request.app.state.gateway.clock()  # type: ignore[no-any-return]


def report_range(request: Request, since: str | None, until: str | None) -> DayRange:
    return parse_range(since, until, clock(request).date())


def check_format(fmt: str) -> str:
    if fmt not in ("json", "csv"):
        raise InvalidRequest(f"format: expected json or csv, got '{fmt[:20]}'", param="format")
    return fmt


def check_group(group_by: str, allowed: tuple[str, ...] = BREAKDOWN_DIMENSIONS) -> str:
    if group_by not in allowed:
        raise InvalidRequest(f"group_by: unknown field '{group_by[:40]}'; expected one of {', '.join(allowed)}", param="group_by")
    return group_by


async def visible_project(request: Request, name: str) -> str:
    """``name`` if it exists and the caller may see it: else a 400 (unknown) or a 403 (out of scope)."""
    caller = await caller_of(request)
    if not await project_exists(request.app.state.gateway.db, name):
        raise InvalidRequest(f"project: '{name[:200]}' is not a project", param="project", code="project_not_found")
    if not caller.sees(name):
        raise PermissionDenied(f"This key may not see project '{name}'.", code="permission_denied")
    return name


def answer(data: dict[str, Any], fmt: str, to_csv: Callable[[dict[str, Any]], str], filename: str) -> Response:
    if fmt == "csv":
        filename = re.sub(r"[^A-Za-z0-9._-]+", "_", filename)
        return Response(
            to_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}.csv"', "cache-control": "no-store"},
        )
    return Response(orjson.dumps(data), media_type="application/json", headers={"cache-control": "no-store"})


@router.get("/projects")
async def projects_route(request: Request, since: str | None = None, until: str | None = None, format: str = "json") -> Response:
    """Spend, budget use, forecast, self-hosted share and savings per project."""
    fmt = check_format(format)
    days = report_range(request, since, until)
    gw = request.app.state.gateway
    caller = await caller_of(request)
    report = await projects_report(gw.db, gw.config, days, scope=caller.scope, now=clock(request))
    return answer(report, fmt, projects_csv, f"switchyard-projects-{days.first}-{days.last}")


@router.get("/daily")
async def daily_route(
    request: Request,
    since: str | None = None,
    until: str | None = None,
    group_by: str = "project",
    format: str = "json",
) -> Response:
    """Spend per day over every visible project, grouped (by project unless told otherwise)."""
    fmt, group = check_format(format), check_group(group_by)
    days = report_range(request, since, until)
    caller = await caller_of(request)
    report = await daily_report(request.app.state.gateway.db, days, group, scope=caller.scope or None)
    return answer(report, fmt, daily_csv, f"switchyard-daily-by-{group}-{days.first}-{days.last}")


@router.get("/projects/{name}/daily")
async def project_daily_route(
    request: Request,
    name: str,
    since: str | None = None,
    until: str | None = None,
    group_by: str = "deployment",
    format: str = "json",
) -> Response:
    """One project's spend per day, by deployment, model, task, sensitivity, key, user, tag, ..."""
    fmt, group = check_format(format), check_group(group_by)
    days = report_range(request, since, until)
    project = await visible_project(request, name)
    report = await daily_report(request.app.state.gateway.db, days, group, project=project)
    return answer(report, fmt, daily_csv, f"switchyard-{project}-daily-by-{group}-{days.first}-{days.last}")


@router.get("/projects/{name}/breakdown")
async def project_breakdown_route(
    request: Request,
    name: str,
    since: str | None = None,
    until: str | None = None,
    group_by: str = "model",
    format: str = "json",
) -> Response:
    """One project's spend by one dimension: the tables of the project page."""
    fmt, group = check_format(format), check_group(group_by)
    days = report_range(request, since, until)
    project = await visible_project(request, name)
    gw = request.app.state.gateway
    report = await breakdown_report(gw.db, days, group, project=project, reference=reference_prices(gw.config))
    return answer(report, fmt, breakdown_csv, f"switchyard-{project}-by-{group}-{days.first}-{days.last}")

"""The dashboard's routes: login and logout, the overview, a page per project, and CSV downloads.

Every page is rendered on the server from the same report functions as the report API
(:mod:`gateway.reports`), so a CSV downloaded here is byte for byte the one
``/admin/reports/...?format=csv`` returns for the same filters. Filters live in the query string
(``since``, ``until``, ``by``), so a URL can be shared. Who may open what is declared in
:mod:`gateway.roles` (session routes: finance and admin keys).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import Response

from core.errors import GatewayError
from gateway.api.reports import clock
from gateway.dashboard import format as fmt
from gateway.dashboard.auth import (
    COOKIE,
    COOKIE_PATH,
    DASHBOARD_ROLES,
    LOGIN_COOKIE,
    csrf_ok,
    csrf_token,
    end_session,
    is_https,
    prune_sessions,
    same_origin,
    session_caller,
    start_session,
)
from gateway.dashboard.charts import Series, prepare, stacked_bars
from gateway.reports import (
    DayRange,
    breakdown_report,
    daily_report,
    parse_range,
    projects_report,
)
from gateway.reports.dates import current_month
from gateway.reports.projects import project_exists
from gateway.reports.render import breakdown_csv, daily_csv, projects_csv
from gateway.reports.savings import reference_prices
from gateway.roles import caller_of

router = APIRouter(prefix="/dashboard", include_in_schema=False)
HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True
)
TEMPLATES.filters.update(
    usd=fmt.usd,
    count=fmt.count,
    percent=fmt.percent,
    share=fmt.share,
    day=fmt.day_label,
    urlpart=lambda v: quote(str(v), safe=""),
)
CHART_DIMENSIONS = {"deployment": "Deployment", "model": "Model", "task": "Task", "sensitivity": "Sensitivity", "key": "Key"}
TABLES = {
    "model": ("By model", "Requested model"),
    "deployment": ("By deployment", "Deployment"),
    "key": ("By key", "Key"),
    "task": ("By task", "Task"),
    "sensitivity": ("By sensitivity", "Sensitivity"),
    "user": ("By user", "User"),
    "tag": ("By key tag", "Tag"),
    "project_tag": ("By project tag", "Project tag"),
}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    types = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    files = {}
    for path in sorted((HERE / "static").iterdir()):
        if path.suffix in types:
            data = path.read_bytes()
            files[path.name] = (data, types[path.suffix], hashlib.sha256(data).hexdigest()[:16])
    return files


STATIC = _static_files()
ASSET_VERSION = hashlib.sha256(b"".join(etag.encode() for _, _, etag in STATIC.values())).hexdigest()[:10]


class PageError(Exception):
    """A page that cannot be shown (bad filters, unknown project): rendered as an error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def render_errors(route: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Show a :class:`PageError` as a page in the dashboard's look (JSON would mean nothing to a browser user)."""

    @functools.wraps(route)
    async def wrapped(*args: Any, **kwargs: Any) -> Response:
        try:
            return await route(*args, **kwargs)
        except PageError as exc:
            return html("error.html", exc.status, title=exc.title, message=exc.message)

    return wrapped


def html(template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
    body = TEMPLATES.get_template(template).render(asset_version=ASSET_VERSION, **context)
    return Response(body, status_code=status, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS | (headers or {}))


def csv_download(text: str, filename: str) -> Response:
    headers = SECURITY_HEADERS | {"content-disposition": f'attachment; filename="{filename}.csv"'}
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


# ---------------------------------------------------------------- static files


@router.get("/static/{name}")
async def static(request: Request, name: str) -> Response:
    """The dashboard's stylesheet and icon, from the gateway itself."""
    found = STATIC.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    data, media, etag = found
    headers = {"etag": f'"{etag}"', "cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"}
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media, headers=headers)


# ---------------------------------------------------------------- login and logout


def _login_page(request: Request, status: int = 200, error: str | None = None, notice: str | None = None) -> Response:
    gw = request.app.state.gateway
    nonce = secrets.token_urlsafe(24)
    next_path = _safe_next(request.query_params.get("next"))
    response = html("login.html", status, error=error, notice=notice, csrf=csrf_token(gw, "login", nonce), next=next_path)
    response.set_cookie(
        LOGIN_COOKIE, nonce, max_age=3600, path="/dashboard/login", httponly=True, samesite="strict", secure=is_https(request)
    )
    return response


def _safe_next(target: str | None) -> str:
    """Only dashboard paths: never an open redirect."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


@router.get("/login")
async def login_form(request: Request) -> Response:
    """The login form (one field, ``key``); an open session goes straight to the overview."""
    gw = request.app.state.gateway
    if await session_caller(gw, request) is not None:
        return Response(status_code=303, headers={"location": "/dashboard", "cache-control": "no-store"})
    notice = "You are logged out." if request.query_params.get("logged_out") else None
    return _login_page(request, notice=notice)


@router.post("/login")
@render_errors
async def login(request: Request) -> Response:
    """Check the key; finance and admin keys (and the master key) get a session cookie, app keys do not."""
    gw = request.app.state.gateway
    form = await _form(request)
    if not same_origin(request) or not csrf_ok(gw, "login", request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        return _login_page(request, 400, error="The login form expired. Please enter your key again.")
    key = form.get("key", "").strip()
    if not key:
        return _login_page(request, 400, error="Enter an API key.")
    try:
        caller = await gw.authenticate({"authorization": f"Bearer {key}"})
    except GatewayError:
        return _login_page(request, 401, error="That key is not valid: it is unknown, revoked or expired.")
    if caller.role not in DASHBOARD_ROLES:
        return _login_page(
            request, 403, error="This is an app key. The dashboard needs a finance or admin key; ask an admin for one."
        )
    await prune_sessions(gw)
    cookie, max_age = await start_session(gw, caller)
    response = Response(status_code=303, headers={"location": _safe_next(form.get("next")), "cache-control": "no-store"})
    response.set_cookie(
        COOKIE, cookie, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request)
    )
    response.delete_cookie(LOGIN_COOKIE, path="/dashboard/login")
    return response


@router.post("/logout")
@render_errors
async def logout(request: Request) -> Response:
    """End the session (server-side too: a copied cookie stops working) and clear the cookie."""
    gw = request.app.state.gateway
    form = await _form(request)
    session_id = request.scope.get("state", {}).get("session_id")
    if not same_origin(request) or not csrf_ok(gw, "logout", session_id, form.get("csrf")):
        raise PageError(400, "Could not log out", "The logout form expired. Reload the page and try again.")
    await end_session(gw, session_id)
    response = Response(status_code=303, headers={"location": "/dashboard/login?logged_out=1", "cache-control": "no-store"})
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


async def _form(request: Request, limit: int = 16_384) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PageError(413, "Form too large", "That form is larger than the dashboard accepts.")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


# ---------------------------------------------------------------- pages


async def _page_context(request: Request, days: DayRange) -> dict[str, Any]:
    caller = await caller_of(request)
    gw = request.app.state.gateway
    session_id = request.scope.get("state", {}).get("session_id", "")
    today = clock(request).date()
    return {
        "caller": caller,
        "who": caller.key_name or "master key",
        "logout_csrf": csrf_token(gw, "logout", session_id),
        "days": days,
        "query": days.query(),
        "range_label": fmt.range_label(days.first, days.last),
        "quick_ranges": _quick_ranges(today, days),
        "today": today.isoformat(),
    }


def _quick_ranges(today: date, current: DayRange) -> list[dict[str, Any]]:
    this_month = current_month(today)
    last_month = current_month(this_month.since - timedelta(days=1))
    options = [
        ("This month", this_month),
        ("Last month", last_month),
        ("Last 7 days", DayRange(today - timedelta(days=6), today)),
        ("Last 30 days", DayRange(today - timedelta(days=29), today)),
        ("Year to date", DayRange(today.replace(month=1, day=1), today)),
    ]
    return [{"label": label, "query": r.query(), "current": r == current} for label, r in options]


def _range(request: Request) -> DayRange:
    try:
        return parse_range(request.query_params.get("since"), request.query_params.get("until"), clock(request).date())
    except GatewayError as exc:
        raise PageError(400, "Check the dates", exc.message) from None


def _chart(report: dict[str, Any], chart: str, title: str) -> tuple[Any, list[Series]]:
    series = prepare(
        [Series(s["label"], [Decimal(p["spend_usd"]) for p in s["points"]], key=s["group"]) for s in report["series"]]
    )
    description = f"{len(series)} series over {len(report['days'])} days; total {fmt.usd(report['totals']['spend_usd'])}."
    return stacked_bars(report["days"], series, chart=chart, title=title, description=description), series


@router.get("")
@render_errors
async def overview(request: Request) -> Response:
    """Every visible project: spend against budget, forecast, self-hosted share, savings; spend per day."""
    days = _range(request)
    gw = request.app.state.gateway
    caller = await caller_of(request)
    report = await projects_report(gw.db, gw.config, days, scope=caller.scope, now=clock(request))
    daily = await daily_report(gw.db, days, "project", scope=caller.scope or None)
    chart, series = _chart(daily, "spend-by-day", f"Spend per day by project, {fmt.range_label(days.first, days.last)}")
    over = [p for p in report["projects"] if p["forecast_exceeds_budget"]]
    return html(
        "overview.html",
        **await _page_context(request, days),
        report=report,
        totals=report["totals"],
        chart=chart,
        series=series,
        chart_days=daily["days"],
        over_budget=over,
        reference=report["reference_model"],
        budgeted=sum(1 for p in report["projects"] if p["budget_usd"] is not None),
    )


@router.get("/projects/{name}")
@render_errors
async def project_page(request: Request, name: str) -> Response:
    """One project: spend per day by deployment (or model, task, sensitivity, key), and a table per dimension."""
    days = _range(request)
    by = request.query_params.get("by", "deployment")
    if by not in CHART_DIMENSIONS:
        raise PageError(400, "Unknown grouping", f"The chart can be grouped by {', '.join(CHART_DIMENSIONS)}, not '{by[:40]}'.")
    gw = request.app.state.gateway
    await _visible(request, name)
    report = await projects_report(gw.db, gw.config, days, scope=[name], now=clock(request))
    row = report["projects"][0]
    daily = await daily_report(gw.db, days, by, project=name)
    chart, series = _chart(
        daily, "project-spend-by-day", f"{name}: spend per day by {by}, {fmt.range_label(days.first, days.last)}"
    )
    reference = reference_prices(gw.config)
    tables: list[dict[str, Any]] = []
    for dimension, (title, heading) in TABLES.items():
        data = await breakdown_report(gw.db, days, dimension, project=name, reference=reference)
        tables.append({"id": dimension, "title": title, "heading": heading, "report": data})
    keys = next(t for t in tables if t["id"] == "key")["report"]["rows"]
    return html(
        "project.html",
        **await _page_context(request, days),
        project=row,
        name=name,
        chart=chart,
        series=series,
        chart_days=daily["days"],
        by=by,
        dimensions=CHART_DIMENSIONS,
        tables=tables,
        top_keys=keys[:5],
        reference=report["reference_model"],
    )


async def _visible(request: Request, name: str) -> None:
    caller = await caller_of(request)
    if not await project_exists(request.app.state.gateway.db, name):
        raise PageError(404, "No such project", f"There is no project called '{name[:200]}'.")
    if not caller.sees(name):
        raise PageError(403, "Not for this key", f"Your key may not see project '{name[:200]}'.")


# ---------------------------------------------------------------- CSV downloads


@router.get("/projects.csv")
@render_errors
async def projects_download(request: Request) -> Response:
    """The overview table: the same CSV as GET /admin/reports/projects?format=csv."""
    days = _range(request)
    gw = request.app.state.gateway
    caller = await caller_of(request)
    report = await projects_report(gw.db, gw.config, days, scope=caller.scope, now=clock(request))
    return csv_download(projects_csv(report), f"switchyard-projects-{days.first}-{days.last}")


@router.get("/daily.csv")
@render_errors
async def daily_download(request: Request) -> Response:
    """The overview chart's numbers: spend per day and project."""
    days = _range(request)
    caller = await caller_of(request)
    report = await daily_report(request.app.state.gateway.db, days, "project", scope=caller.scope or None)
    return csv_download(daily_csv(report), f"switchyard-daily-by-project-{days.first}-{days.last}")


@router.get("/projects/{name}/daily.csv")
@render_errors
async def project_daily_download(request: Request, name: str) -> Response:
    """A project chart's numbers: spend per day by the chosen dimension."""
    days = _range(request)
    by = request.query_params.get("by", "deployment")
    if by not in CHART_DIMENSIONS:
        raise PageError(400, "Unknown grouping", f"The chart can be grouped by {', '.join(CHART_DIMENSIONS)}, not '{by[:40]}'.")
    await _visible(request, name)
    report = await daily_report(request.app.state.gateway.db, days, by, project=name)
    return csv_download(daily_csv(report), _filename(f"switchyard-{name}-daily-by-{by}-{days.first}-{days.last}"))


@router.get("/projects/{name}/{table}.csv")
@render_errors
async def table_download(request: Request, name: str, table: str) -> Response:
    """One of a project page's tables, exactly as shown (with the exact amounts)."""
    if table not in TABLES:
        raise PageError(404, "No such table", f"Project pages have no table '{table[:40]}'.")
    days = _range(request)
    await _visible(request, name)
    gw = request.app.state.gateway
    report = await breakdown_report(gw.db, days, table, project=name, reference=reference_prices(gw.config))
    return csv_download(breakdown_csv(report), _filename(f"switchyard-{name}-by-{table}-{days.first}-{days.last}"))


def _filename(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)

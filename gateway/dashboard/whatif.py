"""The dashboard's "What if" page: upload or paste a candidate config, see what it would have cost.

A plain HTML form (the dashboard runs no scripts): ``multipart/form-data`` with the YAML as a
file or pasted text, the range and an optional project, and the CSRF token of the session. The
result is the same simulation as ``POST /admin/simulate`` (:mod:`gateway.api.simulate`); a
candidate that does not validate, bad dates or a body over ``server.max_admin_body_bytes`` are
shown on the page, never as an error response. Finance and admin sessions (gateway/roles.py).
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from core.errors import GatewayError, PayloadTooLarge
from gateway.api.reports import clock
from gateway.api.simulate import run_simulation
from gateway.dashboard import format as fmt
from gateway.dashboard.auth import csrf_ok, csrf_token, same_origin
from gateway.dashboard.routes import PageError, _page_context, _range, html, render_errors
from gateway.db.projects import list_projects
from gateway.reports.dates import DayRange, current_month, parse_range
from gateway.roles import caller_of
from gateway.simulation.render import describe_class

router = APIRouter(prefix="/dashboard", include_in_schema=False)
CSRF_PURPOSE = "what-if"


def signed_usd(value: str) -> str:
    """``+$1,234.57`` / ``−$1,234.57`` / ``$0.00``: a delta always says which way it goes."""
    text = fmt.usd(value)
    return text if text.startswith(fmt.MINUS) or text == "$0.00" else "+" + text


def _share_change(now: float | None, then: float | None) -> dict[str, Any]:
    points = None if now is None or then is None else (then - now) * 100
    return {"now": fmt.share(now), "then": fmt.share(then), "points": points}


async def _form(request: Request, limit: int) -> dict[str, tuple[str | None, bytes]]:
    """The form's fields (name -> (file name, bytes)); a PageError when it is too large or unreadable."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge("too large")
    except PayloadTooLarge:
        raise PageError(413, "Config too large", f"The form is larger than this gateway accepts ({limit:,} bytes).") from None
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise PageError(400, "Could not read the form", "The form must be sent as multipart/form-data.")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + bytes(body))
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        raise PageError(400, "Could not read the form", "The form could not be read; reload the page and try again.")
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and name not in fields:
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def _text(fields: dict[str, tuple[str | None, bytes]], name: str) -> str:
    return fields.get(name, (None, b""))[1].decode("utf-8", errors="replace").strip()


async def _page(request: Request, status: int = 200, **extra: Any) -> Response:
    gw = request.app.state.gateway
    caller = await caller_of(request)
    days = extra.pop("days", None) or current_month(clock(request).date())
    session_id = request.scope.get("state", {}).get("session_id", "")
    projects = [p.name for p in await list_projects(gw.db) if caller.sees(p.name)]
    context = await _page_context(request, days)
    return html(
        "whatif.html",
        status,
        **context,
        csrf=csrf_token(gw, CSRF_PURPOSE, session_id),
        projects=projects,
        max_bytes=gw.config.server.max_admin_body_bytes,
        signed_usd=signed_usd,
        share_change=_share_change,
        describe_class=describe_class,
        **{"pasted": "", "project": "", "result": None, "error": None, "error_title": None} | extra,
    )


@router.get("/what-if")
@render_errors
async def what_if_form(request: Request) -> Response:
    """The form: a candidate config (file or pasted), a range (the query's, else this month) and an optional project."""
    return await _page(request, days=_range(request))


@router.post("/what-if")
@render_errors
async def what_if(request: Request) -> Response:
    """Simulate the uploaded or pasted candidate over the ledger and show the result under the form."""
    gw = request.app.state.gateway
    limit = gw.config.server.max_admin_body_bytes
    fields = await _form(request, limit)
    session_id = request.scope.get("state", {}).get("session_id")
    if not same_origin(request) or not csrf_ok(gw, CSRF_PURPOSE, session_id, _text(fields, "csrf")):
        raise PageError(400, "The form expired", "The form expired. Reload the page and try again.")
    filename, upload = fields.get("config_file", (None, b""))
    pasted = _text(fields, "config_text")
    since, until, project = _text(fields, "since") or None, _text(fields, "until") or None, _text(fields, "project") or None
    keep: dict[str, Any] = {"pasted": pasted, "project": project or ""}
    try:
        days = parse_range(since, until, clock(request).date())
    except GatewayError as exc:
        return await _page(request, 400, error_title="Check the dates", error=exc.message, **keep)
    keep["days"] = days
    if upload.strip():
        try:
            text, source = upload.decode("utf-8"), filename or "uploaded file"
        except UnicodeDecodeError:
            return await _page(request, 400, error_title="Not a text file", error="The uploaded file is not UTF-8 text.", **keep)
    elif pasted:
        text, source = pasted, "pasted config"
    else:
        return await _page(request, 400, error_title="No config", error="Choose a YAML file or paste a config.", **keep)
    try:
        report = await run_simulation(request, text, days.first, days.last, project, source)
    except GatewayError as exc:
        title = "The config is not valid" if exc.param == "config" else "Could not simulate"
        return await _page(request, exc.status, error_title=title, error=exc.message, **keep)
    return await _page(request, result=_view(report, days), **keep)


def _view(report: dict[str, Any], days: DayRange) -> dict[str, Any]:
    """The report with what the template shows precomputed."""
    totals = report["totals"]
    return report | {
        "range_label": fmt.range_label(days.first, days.last),
        "any_shift": any(p["shifts"] for p in report["projects"]),
        "any_class": any(p["classes"] for p in report["projects"]),
        "share_requests": _share_change(
            totals["self_hosted"]["current"]["by_requests"], totals["self_hosted"]["simulated"]["by_requests"]
        ),
        "share_tokens": _share_change(
            totals["self_hosted"]["current"]["by_tokens"], totals["self_hosted"]["simulated"]["by_tokens"]
        ),
    }

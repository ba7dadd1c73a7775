"""Policy simulation (admin and finance keys): what would a candidate config have cost?

    POST /admin/simulate?since=&until=&project=&format=json|csv&table=projects|deployments|shifts|classes

The body is the candidate config, either as YAML (any content type but JSON) or as a JSON
object ``{"config": "<yaml>", "since": ..., "until": ..., "project": ...}`` (its fields win over
the query string). It is validated like a config file, needs no secrets, and nothing is written
or reloaded: the ledger rows of the range are replayed through it by pure routing code (no
backend is called) against the running config. Days are inclusive UTC days (the current month
by default); a finance key created with ``projects: [...]`` sees only those projects.

Bad input is a 400 naming the parameter (``config`` for a candidate that does not validate,
with every key path in the message); the body is bounded by ``server.max_admin_body_bytes``
(413). One simulation runs at a time per process: another one meanwhile is a 429.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from core.errors import InvalidRequest, PermissionDenied, RateLimited
from gateway.api.reports import answer, check_format, report_range
from gateway.config import ConfigError
from gateway.reports.projects import project_exists
from gateway.roles import caller_of
from gateway.simulation import TABLES, parse_candidate, simulate_ledger, simulation_csv

router = APIRouter(prefix="/admin", tags=["reports"])
_running = 0  # simulations in progress in this process


async def candidate_body(request: Request) -> tuple[str, dict[str, Any]]:
    """The candidate's YAML text and the filters a JSON body carries."""
    raw = await request.body()
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("The request body is not valid JSON.") from None
        if not isinstance(data, dict) or not isinstance(data.get("config"), str):
            raise InvalidRequest("A JSON body must be an object with the candidate YAML in 'config'.", param="config")
        unknown = sorted(set(data) - {"config", "since", "until", "project"})
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: unknown field", param=unknown[0])
        filters = {k: data[k] for k in ("since", "until", "project") if data.get(k) is not None}
        for name, value in filters.items():
            if not isinstance(value, str):
                raise InvalidRequest(f"{name}: expected a string", param=name)
        return data["config"], filters
    try:
        return raw.decode("utf-8"), {}
    except UnicodeDecodeError:
        raise InvalidRequest("The candidate config is not UTF-8 text.", param="config") from None


def check_candidate(text: str, source: str = "candidate") -> Any:
    """The validated candidate, or a 400 on ``config`` whose message lists every key path."""
    try:
        return parse_candidate(text, source)
    except ConfigError as exc:
        raise InvalidRequest(f"The candidate config is not valid:\n{exc}", param="config", code="invalid_config") from None


async def run_simulation(
    request: Request, text: str, since: str | None, until: str | None, project: str | None, source: str = "candidate"
) -> dict[str, Any]:
    """Validate, check the filters against the caller, replay: what the API and the dashboard share."""
    global _running
    days = report_range(request, since, until)
    candidate = check_candidate(text, source)
    gw = request.app.state.gateway
    caller = await caller_of(request)
    if project is not None:
        if not await project_exists(gw.db, project):
            raise InvalidRequest(f"project: '{project[:200]}' is not a project", param="project", code="project_not_found")
        if not caller.sees(project):
            raise PermissionDenied(f"This key may not see project '{project}'.", code="permission_denied")
    if _running:
        raise RateLimited(
            "A simulation is already running on this gateway; try again when it has finished.", headers={"retry-after": "5"}
        )
    _running += 1
    try:
        return await simulate_ledger(gw.db, gw.config, candidate, days, project=project, scope=caller.scope, source=source)
    finally:
        _running -= 1


@router.post("/simulate")
async def simulate_route(
    request: Request,
    since: str | None = None,
    until: str | None = None,
    project: str | None = None,
    format: str = "json",
    table: str = "projects",
) -> Response:
    """Replay the ledger through a candidate config: current and simulated cost, delta,
    self-hosted share, volume shift per deployment and the request classes it would refuse."""
    fmt = check_format(format)
    if table not in TABLES:
        raise InvalidRequest(f"table: expected one of {', '.join(TABLES)}, got '{table[:40]}'", param="table")
    text, filters = await candidate_body(request)
    since, until, project = filters.get("since", since), filters.get("until", until), filters.get("project", project)
    report = await run_simulation(request, text, since, until, project)
    suffix = f"-{project}" if project else ""
    return answer(
        report,
        fmt,
        lambda r: simulation_csv(r, table),
        f"switchyard-simulation{suffix}-{table}-{report['since']}-{report['until']}",
    )

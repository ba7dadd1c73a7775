"""Admin API: projects, keys, usage and budget alerts. Who may call what is in gateway/roles.py
(admin keys and the master key: everything; finance keys: the GETs, narrowed to their projects).

    POST /admin/projects                 201 project
    GET  /admin/projects                 list
    POST /admin/keys                     201 key, with the secret in "key" (shown only here and on rotate)
    GET  /admin/keys?project=            list (never secrets)
    GET  /admin/keys/{id}
    POST /admin/keys/{id}/revoke
    POST /admin/keys/{id}/rotate         the new secret in "key"
    GET  /admin/usage?project=&key=&since=&until=&group_by=day,model&format=json|csv|table
    GET  /admin/alerts?project=          budget alerts, newest first, with their delivery state

Bodies are parsed here (not by FastAPI) so every bad input is a :mod:`core.errors` error in
OpenAI's shape. Services come from ``request.app.state.gateway`` (``config``, ``db``, ``keys``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from core.errors import InvalidRequest, PermissionDenied
from core.literals import Level, Period, Role
from gateway.config import check_thresholds
from gateway.db.models import ApiKey, BudgetAlert, Project, ProjectCreate
from gateway.db.projects import (
    ProjectExists,
    ProjectNotFound,
    create_project,
    get_project,
    list_projects,
)
from gateway.db.types import decimal_str
from gateway.keys import KeyNotFound, KeyRevoked, UnknownProject
from gateway.ledger.usage import GROUP_BY_FIELDS, render_report, usage_report
from gateway.reports.projects import project_exists
from gateway.roles import caller_of

INT_LIMIT = 2**31 - 1  # what the database's integer columns hold
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # printable text: no NUL or other control characters
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BudgetIn(_Body):
    """``{"usd": 100, "period": "monthly"}``"""

    usd: Decimal = Field(ge=0, max_digits=18, decimal_places=10)
    period: Period = "monthly"
    alert_thresholds: list[int] | None = None  # percent; None: the config's alerts.thresholds

    @field_validator("alert_thresholds")
    @classmethod
    def _thresholds(cls, value: list[int] | None) -> list[int] | None:
        return check_thresholds(value)


class LimitsIn(_Body):
    """``{"rpm": 600, "tpm": 400000}``; either may be omitted (no limit)."""

    rpm: int | None = Field(default=None, ge=1, le=INT_LIMIT)
    tpm: int | None = Field(default=None, ge=1, le=INT_LIMIT)


class ProjectIn(_Body):
    """Body of ``POST /admin/projects``."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    budget: BudgetIn | None = None
    limits: LimitsIn = LimitsIn()
    sensitivity_floor: Level = "public"


class KeyIn(_Body):
    """Body of ``POST /admin/keys``."""

    project: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    name: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    budget: BudgetIn | None = None
    limits: LimitsIn = LimitsIn()
    models: list[Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]] = Field(
        default_factory=list, max_length=256
    )
    tags: list[Annotated[str, Field(min_length=1, max_length=100, pattern=TEXT_PATTERN)]] = Field(
        default_factory=list, max_length=64
    )
    expires_at: datetime | None = None
    role: Role = "app"
    projects: list[str] = Field(default_factory=list)  # finance keys only: the projects it may see (empty: all)

    @field_validator("projects")
    @classmethod
    def _projects_for_finance(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and info.data.get("role") != "finance":
            raise ValueError("narrows what a finance key sees; it applies to role 'finance' only")
        return value


router = APIRouter(prefix="/admin", tags=["admin"])
_M = TypeVar("_M", bound=BaseModel)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def _parse(request: Request, model: type[_M]) -> _M:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{path}: {message}", param=path or None) from None


def _budget(usd: Decimal | None, period: str, thresholds: list[int] | None = None) -> dict[str, Any] | None:
    return None if usd is None else {"usd": decimal_str(usd), "period": period, "alert_thresholds": thresholds}


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def project_view(project: Project) -> dict[str, Any]:
    return {
        "object": "project",
        "id": project.id,
        "name": project.name,
        "budget": _budget(project.budget_usd, project.budget_period, project.alert_thresholds),
        "limits": {"rpm": project.rpm, "tpm": project.tpm},
        "sensitivity_floor": project.sensitivity_floor,
        "source": project.source,
        "created_at": _time(project.created_at),
        "updated_at": _time(project.updated_at),
    }


def key_view(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    view: dict[str, Any] = {"object": "api_key", "id": key.id}
    if secret is not None:
        view["key"] = secret
    return view | {
        "prefix": key.prefix,
        "project": key.project,
        "name": key.name,
        "role": key.role,
        "projects": list(key.projects or ()),
        "models": list(key.models),
        "tags": list(key.tags),
        "budget": _budget(key.budget_usd, key.budget_period, key.alert_thresholds),
        "limits": {"rpm": key.rpm, "tpm": key.tpm},
        "expires_at": _time(key.expires_at),
        "created_at": _time(key.created_at),
        "rotated_at": _time(key.rotated_at),
        "revoked_at": _time(key.revoked_at),
        "active": key.revoked_at is None and (key.expires_at is None or key.expires_at > now),
    }


def _no_project(name: str, param: str = "project") -> InvalidRequest:
    return InvalidRequest(
        f"Project '{name}' does not exist. Create it with POST /admin/projects or in the config's projects: section.",
        param=param,
        status=404,
        code="project_not_found",
    )


def _require_visible(caller: Any, project: str) -> None:
    if not caller.sees(project):
        raise PermissionDenied(f"This key may not see project '{project}'.", code="permission_denied")


def _no_key(key_id: str) -> InvalidRequest:
    return InvalidRequest(f"No API key with id '{key_id}'.", status=404, code="key_not_found")


# ---------------------------------------------------------------- projects


@router.post("/projects")
async def create_project_route(request: Request) -> Response:
    body = await _parse(request, ProjectIn)
    spec = ProjectCreate(
        name=body.name,
        budget_usd=body.budget.usd if body.budget else None,
        budget_period=body.budget.period if body.budget else "monthly",
        rpm=body.limits.rpm,
        tpm=body.limits.tpm,
        sensitivity_floor=body.sensitivity_floor,
        alert_thresholds=body.budget.alert_thresholds if body.budget else None,
    )
    try:
        project = await create_project(request.app.state.gateway.db, spec)
    except ProjectExists:
        raise InvalidRequest(f"Project '{body.name}' already exists.", param="name", status=409, code="project_exists") from None
    return _json(project_view(project), 201)


@router.get("/projects")
async def list_projects_route(request: Request) -> Response:
    caller = await caller_of(request)
    projects = [p for p in await list_projects(request.app.state.gateway.db) if caller.sees(p.name)]
    return _json({"object": "list", "data": [project_view(p) for p in projects]})


# ---------------------------------------------------------------- keys


@router.post("/keys")
async def create_key_route(request: Request) -> Response:
    body = await _parse(request, KeyIn)
    expires_at = body.expires_at
    if expires_at is not None:
        expires_at = expires_at.replace(tzinfo=UTC) if expires_at.tzinfo is None else expires_at.astimezone(UTC)
        if expires_at <= datetime.now(UTC):
            raise InvalidRequest("expires_at: must be in the future", param="expires_at")
    try:
        key, secret = await request.app.state.gateway.keys.create(
            body.project,
            body.name,
            models=body.models,
            tags=body.tags,
            budget_usd=body.budget.usd if body.budget else None,
            budget_period=body.budget.period if body.budget else "monthly",
            rpm=body.limits.rpm,
            tpm=body.limits.tpm,
            expires_at=expires_at,
            role=body.role,
            projects=body.projects,
            alert_thresholds=body.budget.alert_thresholds if body.budget else None,
        )
    except UnknownProject as exc:
        name = str(exc.args[0]) if exc.args else body.project
        raise _no_project(name, "project" if name == body.project else "projects") from None
    return _json(key_view(key, secret), 201)


@router.get("/keys")
async def list_keys_route(request: Request, project: str | None = None) -> Response:
    gw = request.app.state.gateway
    caller = await caller_of(request)
    if project is not None:
        await _require_project(gw.db, project)
        _require_visible(caller, project)
    keys = [k for k in await gw.keys.list(project) if caller.sees(k.project)]
    return _json({"object": "list", "data": [key_view(k) for k in keys]})


@router.get("/keys/{key_id}")
async def get_key_route(request: Request, key_id: str) -> Response:
    caller = await caller_of(request)
    try:
        key = await request.app.state.gateway.keys.get(key_id)
    except KeyNotFound:
        raise _no_key(key_id) from None
    if not caller.sees(key.project):
        raise _no_key(key_id)
    return _json(key_view(key))


@router.post("/keys/{key_id}/revoke")
async def revoke_key_route(request: Request, key_id: str) -> Response:
    try:
        return _json(key_view(await request.app.state.gateway.keys.revoke(key_id)))
    except KeyNotFound:
        raise _no_key(key_id) from None


@router.post("/keys/{key_id}/rotate")
async def rotate_key_route(request: Request, key_id: str) -> Response:
    try:
        key, secret = await request.app.state.gateway.keys.rotate(key_id)
    except KeyNotFound:
        raise _no_key(key_id) from None
    except KeyRevoked:
        raise InvalidRequest(f"API key '{key_id}' is revoked and cannot be rotated.", code="key_revoked") from None
    return _json(key_view(key, secret))


# ---------------------------------------------------------------- usage


@router.get("/usage")
async def usage_route(
    request: Request,
    project: str | None = None,
    key: str | None = None,
    since: str | None = None,
    until: str | None = None,
    group_by: str | None = None,
    format: str = "json",
) -> Response:
    db = request.app.state.gateway.db
    groups = [g.strip() for g in (group_by or "").split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUP_BY_FIELDS]
    if unknown:
        raise InvalidRequest(
            f"group_by: unknown field(s) {', '.join(unknown)}; expected any of {', '.join(GROUP_BY_FIELDS)}", param="group_by"
        )
    if format not in ("json", "csv", "table"):
        raise InvalidRequest("format: expected json, csv or table", param="format")
    caller = await caller_of(request)
    if project is not None:
        if not await project_exists(db, project):  # a project removed from the config keeps its ledger rows
            raise _no_project(project)
        _require_visible(caller, project)
    start, end = _moment(since, "since"), _moment(until, "until")
    if start is not None and end is not None and _as_time(start, end=False) >= _as_time(end, end=True):
        raise InvalidRequest(f"since ({since}) is not before until ({until})", param="since", code="invalid_range")
    report = await usage_report(
        db, project=project, key=key, since=start, until=end, group_by=groups, projects=caller.scope or None
    )
    if format == "json":
        return _json(report)
    media = "text/csv" if format == "csv" else "text/plain"
    return Response(render_report(report, format), media_type=f"{media}; charset=utf-8")


def _as_time(value: datetime | date, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return datetime.combine(value + timedelta(days=1) if end else value, datetime.min.time(), tzinfo=UTC)


def _moment(value: str | None, param: str) -> datetime | date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{param}: expected a date (2026-11-01) or an ISO 8601 time, got '{value}'", param=param) from None


async def _require_project(db: Any, name: str) -> None:
    try:
        await get_project(db, name)
    except ProjectNotFound:
        raise _no_project(name) from None


# ---------------------------------------------------------------- budget alerts


@router.get("/alerts")
async def list_alerts_route(request: Request, project: str | None = None, limit: int = 100) -> Response:
    """Budget alerts (newest first): which subject crossed which threshold, and whether the webhook got it."""
    from sqlmodel import col, select

    gw = request.app.state.gateway
    caller = await caller_of(request)
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit: expected 1 to 1000", param="limit")
    stmt = select(BudgetAlert).order_by(col(BudgetAlert.created_at).desc()).limit(limit)
    if project is not None:
        _require_visible(caller, project)
        stmt = stmt.where(BudgetAlert.project == project)
    elif caller.scope:
        stmt = stmt.where(col(BudgetAlert.project).in_(caller.scope))
    async with gw.db.session() as session:
        alerts = (await session.exec(stmt)).all()
    return _json({"object": "list", "data": [alert_view(a) for a in alerts]})


def alert_view(alert: BudgetAlert) -> dict[str, Any]:
    return {
        "object": "budget_alert",
        "id": alert.id,
        "subject": {"kind": alert.subject_kind, "id": alert.subject_id, "name": alert.subject_name},
        "project": alert.project,
        "period": alert.period,
        "window": alert.window_id,
        "threshold_pct": alert.threshold,
        "budget_usd": decimal_str(alert.budget_usd),
        "spend_usd": decimal_str(alert.spend_usd),
        "created_at": _time(alert.created_at),
        "delivered_at": _time(alert.delivered_at),
        "attempts": alert.attempts,
        "last_error": alert.last_error,
    }

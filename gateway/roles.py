"""Who may call what: every route with the roles it admits, enforced in one place.

Three roles (``core.literals.Role``), carried by every API key; the master key is ``admin``:

    app       the model endpoints and /v1/route/explain (and its own /v1/key)
    finance   read-only: usage, reports, projects, keys (never secrets), the dashboard
    admin     everything

:data:`ROUTE_ROLES` lists every (method, path) the app serves. :class:`RoleGuard`, a pure-ASGI
middleware, looks the request up in it before any route runs: it authenticates the caller
once (the bearer token, or the dashboard's session cookie for ``session`` routes), refuses a
role the route does not admit with a 403 ``permission_denied`` in OpenAI's error shape, and
leaves the :class:`~gateway.auth.Caller` on the request state for the route. A route that is
served but missing from the table admits nobody but admin, and the role-matrix test fails.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import GatewayError, PermissionDenied, error_body
from core.literals import ROLES, Role

log = logging.getLogger("switchyard.roles")

Via = Literal["public", "bearer", "session", "metrics", "docs"]


@dataclass(frozen=True, slots=True)
class Access:
    """What a route needs: how the caller is authenticated, and which roles it admits."""

    via: Via
    roles: frozenset[Role] = frozenset()

    def admits(self, role: str) -> bool:
        return self.via == "public" or role in self.roles


PUBLIC = Access("public")
MODEL = Access("bearer", frozenset({"app", "admin"}))
ANY_KEY = Access("bearer", frozenset({"app", "finance", "admin"}))
READ = Access("bearer", frozenset({"finance", "admin"}))
ADMIN = Access("bearer", frozenset({"admin"}))
DASHBOARD = Access("session", frozenset({"finance", "admin"}))
# Closed by default: a finance or admin key (spend per project is visible there), unless
# server.metrics_require_auth is off or the scraper is in server.trusted_networks.
METRICS = Access("metrics", frozenset({"finance", "admin"}))
# The API's own reference: any key, unless server.docs_require_auth is off or the caller is trusted.
DOCS = Access("docs", frozenset({"app", "finance", "admin"}))

ROUTE_ROLES: dict[tuple[str, str], Access] = {
    # the OpenAI surface and routing
    ("POST", "/v1/chat/completions"): MODEL,
    ("POST", "/v1/completions"): MODEL,
    ("POST", "/v1/embeddings"): MODEL,
    ("POST", "/v1/messages"): MODEL,
    ("POST", "/v1/messages/count_tokens"): MODEL,
    ("POST", "/v1/responses"): MODEL,
    ("GET", "/v1/models"): MODEL,
    ("GET", "/v1/models/{model_id:path}"): MODEL,
    ("POST", "/v1/route/explain"): MODEL,
    ("GET", "/v1/key"): ANY_KEY,
    # probes, metrics, API docs
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): METRICS,
    ("GET", "/openapi.json"): DOCS,
    ("GET", "/docs"): DOCS,
    ("GET", "/docs/oauth2-redirect"): DOCS,
    ("GET", "/redoc"): DOCS,
    # admin API
    ("POST", "/admin/projects"): ADMIN,
    ("GET", "/admin/projects"): READ,
    ("POST", "/admin/keys"): ADMIN,
    ("GET", "/admin/keys"): READ,
    ("GET", "/admin/keys/{key_id}"): READ,
    ("POST", "/admin/keys/{key_id}/revoke"): ADMIN,
    ("POST", "/admin/keys/{key_id}/rotate"): ADMIN,
    ("GET", "/admin/usage"): READ,
    ("GET", "/admin/alerts"): READ,
    # finance reports
    ("GET", "/admin/reports/projects"): READ,
    ("GET", "/admin/reports/daily"): READ,
    ("GET", "/admin/reports/projects/{name}/daily"): READ,
    ("GET", "/admin/reports/projects/{name}/breakdown"): READ,
    # policy simulation: reads the ledger, writes nothing (gateway/api/simulate.py)
    ("POST", "/admin/simulate"): READ,
    # the dashboard
    ("GET", "/dashboard/login"): PUBLIC,
    ("POST", "/dashboard/login"): PUBLIC,
    ("GET", "/dashboard/static/{name}"): PUBLIC,
    ("POST", "/dashboard/logout"): DASHBOARD,
    ("GET", "/dashboard"): DASHBOARD,
    ("GET", "/dashboard/projects.csv"): DASHBOARD,
    ("GET", "/dashboard/daily.csv"): DASHBOARD,
    ("GET", "/dashboard/projects/{name}"): DASHBOARD,
    ("GET", "/dashboard/projects/{name}/daily.csv"): DASHBOARD,
    ("GET", "/dashboard/projects/{name}/{table}.csv"): DASHBOARD,
    ("GET", "/dashboard/what-if"): DASHBOARD,
    ("POST", "/dashboard/what-if"): DASHBOARD,
}
UNDECLARED = ADMIN  # fail closed: a route nobody declared is for admins only

assert all(role in ROLES for access in ROUTE_ROLES.values() for role in access.roles)


def require(caller: Any, method: str, path: str) -> None:
    """Refuse (403) a caller whose role the route does not admit: for the hot routes, which run
    before any middleware; the same table as :class:`RoleGuard` reads."""
    access = ROUTE_ROLES.get((method, path), UNDECLARED)
    if caller.role not in access.roles:
        raise permission_denied(caller.role, method, path, access.roles)


def permission_denied(role: str, method: str, path: str, admitted: frozenset[Role]) -> PermissionDenied:
    allowed = " or ".join(r for r in ROLES if r in admitted) or "different"
    article = "an" if allowed[0] in "aeiou" else "a"
    return PermissionDenied(
        f"This key's role is '{role}'; {method} {path} needs {article} {allowed} key.", code="permission_denied"
    )


try:  # Starlette's own view of the path a route matches (root_path removed)
    from starlette._utils import get_route_path
except ImportError:  # pragma: no cover - older Starlette

    def get_route_path(scope: Scope) -> str:
        return str(scope["path"])


def flatten(routes: Sequence[Any]) -> list[Any]:
    """Every route an app serves, with included routers' prefixes applied (FastAPI nests them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI before included routers were kept nested
        return list(routes)
    return list(iter_route_contexts(routes))


class RouteTable:
    """(method, path) -> :class:`Access` for the routes an app serves, matched like Starlette matches them."""

    def __init__(self, routes: Sequence[Any]) -> None:
        self.exact: dict[tuple[str, str], Access] = {}
        self.patterns: list[tuple[re.Pattern[str], str, Access]] = []
        self.undeclared: list[tuple[str, str]] = []
        for route in flatten(routes):
            path, regex, methods = (
                getattr(route, "path", None),
                getattr(route, "path_regex", None),
                getattr(route, "methods", None),
            )
            if path is None or regex is None:
                continue
            for method in methods or ("GET",):
                if method == "HEAD":
                    continue
                access = ROUTE_ROLES.get((method, path))
                if access is None:
                    self.undeclared.append((method, path))
                    access = UNDECLARED
                shadowed = any(m == method and rx.match(path) for rx, m, _ in self.patterns)
                if "{" in path or shadowed:
                    self.patterns.append((regex, method, access))
                else:
                    self.exact.setdefault((method, path), access)
        for method, path in self.undeclared:
            log.error("route %s %s declares no roles in gateway/roles.py: only admin may call it", method, path)

    def lookup(self, method: str, path: str) -> Access | None:
        """The access of the route Starlette will run (an exact path is never behind an earlier pattern)."""
        method = "GET" if method == "HEAD" else method
        access = self.exact.get((method, path))
        if access is not None:
            return access
        for regex, route_method, access in self.patterns:
            if route_method == method and regex.match(path):
                return access
        return None  # not a route: the router answers 404 or 405


class RoleGuard:
    """Authenticate once and enforce :data:`ROUTE_ROLES` before any route runs."""

    def __init__(self, app: ASGIApp, routes: Sequence[Any]) -> None:
        self.app = app
        self._routes = routes  # the app's route list, read at the first request (every route registered by then)
        self._table: RouteTable | None = None

    @property
    def table(self) -> RouteTable:
        if self._table is None:
            self._table = RouteTable(self._routes)
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        access = self.table.lookup(scope["method"], get_route_path(scope))
        if access is None or access.via == "public":
            await self.app(scope, receive, send)
            return
        gateway = scope["app"].state.gateway
        if access.via in ("metrics", "docs") and _open(access.via, gateway.config.server, scope):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            if access.via == "session":
                from gateway.dashboard.auth import (
                    session_caller,  # the dashboard imports this module
                )

                caller = await session_caller(gateway, request)
                if caller is None:
                    await _to_login(scope, receive, send)
                    return
            else:
                caller = await gateway.authenticate(request.headers, request.client.host if request.client else None)
            if caller.role not in access.roles:
                raise permission_denied(caller.role, scope["method"], scope["path"], access.roles)
        except GatewayError as exc:
            metrics = getattr(gateway, "metrics", None)
            if metrics is not None:
                metrics.observe_refusal(exc.status, exc.code)
            await _send_error(exc, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


def _open(via: str, server: Any, scope: Scope) -> bool:
    """/metrics and the API docs need no key when the config says so, or for a trusted network."""
    required = server.metrics_require_auth if via == "metrics" else server.docs_require_auth
    return not required or trusted(scope, server.trusted_networks)


def trusted(scope: Scope, networks: Sequence[str]) -> bool:
    """The caller's address is in one of ``networks`` (CIDRs)."""
    client = scope.get("client")
    if not networks or not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


async def _send_error(exc: GatewayError, send: Send) -> None:
    body = error_body(exc)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _to_login(scope: Scope, receive: Receive, send: Send) -> None:
    """No dashboard session: back to the login form, remembering where the user was going."""
    target = scope["path"] + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
    location = (
        "/dashboard/login" if target in ("/dashboard", "/dashboard/") else f"/dashboard/login?next={quote(target, safe='')}"
    )
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def caller_of(request: Request) -> Any:
    """The :class:`~gateway.auth.Caller` the guard authenticated for this request."""
    caller = request.scope.get("state", {}).get("caller")
    if caller is None:  # an app built without the guard (some unit tests): authenticate here
        caller = await request.app.state.gateway.authenticate(request.headers)
    return caller

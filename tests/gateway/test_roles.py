"""The role matrix: every route the app serves, called as every role, against gateway/roles.py.

A route missing from ``ROUTE_ROLES`` fails here, by name. Then each route is called with no key,
an app key, a finance key, an admin key and the master key (and, for the dashboard, with each
one's session cookie): a role the route does not admit gets 401 (no key) or 403
``permission_denied`` in OpenAI's error shape, an admitted one never does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.roles import PUBLIC, ROUTE_ROLES, RouteTable, flatten
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

ROLES = ("none", "app", "finance", "admin", "master")
BODIES = {
    "/v1/chat/completions": {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
    "/v1/completions": {"model": "auto", "prompt": "hi", "max_tokens": 5},
    "/v1/embeddings": {"model": "auto", "input": "hi"},
    "/v1/route/explain": {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages": {"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages/count_tokens": {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": "auto", "input": "hi", "max_output_tokens": 5},
    "/admin/projects": {"name": "new-project"},
    "/admin/keys": {"project": "web", "name": "made-by-matrix"},
}


def _config(upstream: FakeUpstream, tmp_path: Path) -> Any:
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/gw.db",
            "deployments": [fake_deployment("local", upstream.base_url)],
            "routes": [{"name": "auto", "candidates": ["local"]}],
            "projects": [{"name": "web", "budget": {"usd": 100}}],
            "ledger": {"spool_dir": str(tmp_path / "spool")},
        }
    )


def _served(app: FastAPI) -> list[tuple[str, str]]:
    return sorted({(m, r.path) for r in flatten(app.router.routes) for m in (r.methods or ()) if m != "HEAD"})


def _concrete(path: str, key_id: str) -> str:
    values = {"model_id": "auto", "key_id": key_id, "name": "web", "table": "model"}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], path)


async def _session(client: httpx.AsyncClient, key: str) -> str | None:
    """Log in through the form as a browser would; the session cookie, or None when refused."""
    client.cookies.clear()
    form = await client.get("/dashboard/login", headers={"authorization": ""})
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    answer = await client.post("/dashboard/login", data={"key": key, "csrf": csrf}, headers={"authorization": ""})
    client.cookies.clear()
    return answer.cookies.get("switchyard_session")


async def test_every_route_declares_its_roles_and_the_guard_enforces_them(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        app: FastAPI = client.app  # type: ignore[attr-defined]
        served = _served(app)
        undeclared = [route for route in served if route not in ROUTE_ROLES]
        assert undeclared == [], f"routes with no roles in gateway/roles.py ROUTE_ROLES: {undeclared}"
        assert len(served) >= 35

        keys: dict[str, str] = {"master": MASTER_KEY}
        for role in ("app", "finance", "admin"):
            created = await client.post("/admin/keys", json={"project": "web", "name": f"{role}-key", "role": role})
            keys[role] = created.json()["key"]
        victim = await client.post("/admin/keys", json={"project": "web", "name": "rotated-and-revoked"})
        victim_id = victim.json()["id"]  # {key_id} routes act on this one, not on the keys in use
        cookies = {role: await _session(client, keys[role]) for role in ("app", "finance", "admin", "master")}
        assert cookies["app"] is None and all(cookies[r] for r in ("finance", "admin", "master"))
        client.cookies.clear()

        checked = 0
        for method, path in served:
            access = ROUTE_ROLES[(method, path)]
            url = _concrete(path, victim_id)
            for role in ROLES:
                headers = {"authorization": f"Bearer {keys[role]}"} if role != "none" else {"authorization": ""}
                request_cookies = {}
                if access.via == "session":
                    headers = {}
                    if role != "none" and cookies.get(role):
                        request_cookies = {"switchyard_session": cookies[role]}
                answer = await client.request(method, url, headers=headers, json=BODIES.get(path), cookies=request_cookies)
                # /metrics and the docs are closed by default (server.metrics_require_auth, docs_require_auth)
                admitted = access == PUBLIC or (role != "none" and access.admits("admin" if role == "master" else role))
                where = f"{method} {path} as {role}: {answer.status_code} {answer.text[:200]}"
                if access.via == "session":
                    if admitted and request_cookies:
                        assert answer.status_code not in (303, 401, 403), where
                    else:
                        assert answer.status_code == 303 and answer.headers["location"].startswith("/dashboard/login"), where
                elif admitted:
                    assert answer.status_code not in (401, 403), where
                elif role == "none":
                    assert answer.status_code == 401, where
                else:
                    assert answer.status_code == 403, where
                    if path.startswith("/v1/messages"):  # Anthropic's own error shape on its routes
                        assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "permission_error", where
                    else:
                        assert answer.json()["error"]["code"] == "permission_denied", where
                        assert answer.json()["error"]["type"] == "permission_error", where
                checked += 1
        assert checked == len(served) * len(ROLES)


async def test_a_route_nobody_declared_is_for_admins_only() -> None:
    app = FastAPI()

    @app.get("/new/thing")
    async def thing() -> dict[str, str]:
        return {}

    table = RouteTable(app.router.routes)
    assert ("GET", "/new/thing") in table.undeclared
    access = table.lookup("GET", "/new/thing")
    assert access is not None and access.admits("admin") and not access.admits("finance") and not access.admits("app")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/admin/keys/abc", "READ"),
        ("POST", "/admin/keys/abc/revoke", "ADMIN"),
        ("HEAD", "/v1/models", "MODEL"),
        ("GET", "/dashboard/projects/web/model.csv", "DASHBOARD"),
        ("GET", "/nowhere", None),
        ("DELETE", "/admin/keys", None),
    ],
)
def test_lookup_matches_paths_like_the_router(method: str, path: str, expected: str | None) -> None:
    from gateway import roles
    from gateway.app import create_app

    app = create_app(make_config({"deployments": [fake_deployment("d", "http://127.0.0.1:9/v1")]}))
    found = RouteTable(app.router.routes).lookup(method, path)
    assert found == (getattr(roles, expected) if expected else None)

"""Dashboard sessions and pages over HTTP (no browser): the cookie's attributes and contents,
CSRF, app keys refused, logout and revocation ending a session, scopes, error pages, headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from gateway.db.models import DashboardSession
from gateway.ledger.rollups import write_ledger
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config
from tests.reports.helpers import ledger_row

COOKIE = "switchyard_session"


def _config(tmp_path: Path, **server: Any) -> Any:
    return make_config(
        {
            "server": {"master_key": MASTER_KEY, **server},
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [fake_deployment("local", "http://127.0.0.1:9/v1")],
            "projects": [{"name": "web", "budget": {"usd": 10}}, {"name": "shop"}],
        }
    )


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(_config(tmp_path)) as client:
        client.headers.pop("authorization")
        now = datetime.now(UTC)
        await write_ledger(
            client.app.state.gateway.db,
            [  # type: ignore[attr-defined]
                ledger_row(1, now, "web", "1.25"),
                ledger_row(2, now, "shop", "0.5"),
            ],
        )
        yield client


async def key(gw: httpx.AsyncClient, role: str, **body: Any) -> tuple[str, str]:
    made = await gw.post(
        "/admin/keys",
        json={"project": "web", "name": f"{role}-person", "role": role, **body},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
    )
    return made.json()["key"], made.json()["id"]


async def login(gw: httpx.AsyncClient, secret: str, **extra: str) -> httpx.Response:
    gw.cookies.clear()
    form = await gw.get("/dashboard/login")
    assert form.status_code == 200 and 'name="key"' in form.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    return await gw.post("/dashboard/login", data={"key": secret, "csrf": csrf, **extra})


async def test_a_finance_login_sets_a_signed_strict_http_only_cookie_without_the_key(gw: httpx.AsyncClient) -> None:
    secret, _ = await key(gw, "finance")
    answer = await login(gw, secret, next="/dashboard/projects/web?since=2026-11-01")
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/projects/web?since=2026-11-01"
    header = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(COOKIE))
    attributes = {a.strip().split("=")[0].lower() for a in header.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in header.lower() and "path=/dashboard" in header.lower() and "max-age=28800" in header.lower()
    value = answer.cookies[COOKIE]
    assert secret not in value and secret[6:20] not in value and value.startswith("v1.")
    page = await gw.get("/dashboard")
    assert page.status_code == 200 and 'data-project="web"' in page.text and "finance-person" in page.text
    for name, start in {
        "content-security-policy": "default-src 'none'",
        "x-content-type-options": "nosniff",
        "cache-control": "no-store",
    }.items():
        assert page.headers[name].startswith(start)
    assert "<script" not in page.text and "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")

    tampered = value.rsplit(".", 2)
    forged = f"{tampered[0]}.{int(tampered[1]) + 3600}.{tampered[2]}"  # a later expiry under the old signature
    gw.cookies.clear()
    assert (await gw.get("/dashboard", cookies={COOKIE: forged})).status_code == 303


async def test_over_https_the_cookie_is_secure(gw: httpx.AsyncClient) -> None:
    secret, _ = await key(gw, "admin")
    gw.cookies.clear()
    form = await gw.get("/dashboard/login", headers={"x-forwarded-proto": "https"})
    assert "secure" in form.headers["set-cookie"].lower()  # the login form's nonce too
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    nonce = {"switchyard_login": form.cookies["switchyard_login"]}  # a browser sends Secure cookies over https only
    answer = await gw.post(
        "/dashboard/login", data={"key": secret, "csrf": csrf}, cookies=nonce, headers={"x-forwarded-proto": "https"}
    )
    assert answer.status_code == 303
    assert "secure" in next(h for h in answer.headers.get_list("set-cookie") if h.startswith(COOKIE)).lower()


async def test_app_keys_and_bad_keys_are_refused_with_a_message_and_no_cookie(gw: httpx.AsyncClient) -> None:
    app_secret, _ = await key(gw, "app")
    refused = await login(gw, app_secret)
    assert refused.status_code == 403 and "app key" in refused.text and COOKIE not in refused.cookies
    wrong = await login(gw, "sk-sy-" + "x" * 43)
    assert wrong.status_code == 401 and "not valid" in wrong.text and COOKIE not in wrong.cookies
    empty = await login(gw, "")
    assert empty.status_code == 400 and COOKIE not in empty.cookies


async def test_forms_are_csrf_safe(gw: httpx.AsyncClient) -> None:
    secret, _ = await key(gw, "finance")
    gw.cookies.clear()
    assert (await gw.post("/dashboard/login", data={"key": secret})).status_code == 400  # no token
    form = await gw.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    cross = await gw.post("/dashboard/login", data={"key": secret, "csrf": csrf}, headers={"origin": "https://evil.example"})
    assert cross.status_code == 400 and COOKIE not in cross.cookies
    gw.cookies.clear()
    stolen = await gw.post("/dashboard/login", data={"key": secret, "csrf": csrf})  # the token without its nonce cookie
    assert stolen.status_code == 400

    assert (await login(gw, secret)).status_code == 303
    assert (await gw.post("/dashboard/logout", data={"csrf": "guess"})).status_code == 400
    assert (await gw.get("/dashboard")).status_code == 200  # still logged in


async def test_logout_and_revocation_end_the_session_on_the_server(gw: httpx.AsyncClient) -> None:
    secret, key_id = await key(gw, "finance")
    await login(gw, secret)
    kept = gw.cookies[COOKIE]
    page = await gw.get("/dashboard")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    out = await gw.post("/dashboard/logout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login?logged_out=1"
    assert 'switchyard_session=""' in out.headers["set-cookie"] or "max-age=0" in out.headers["set-cookie"].lower()
    gw.cookies.clear()
    replay = await gw.get("/dashboard", cookies={COOKIE: kept})  # a copy of the cookie is worth nothing now
    assert replay.status_code == 303 and replay.headers["location"].startswith("/dashboard/login")

    await login(gw, secret)
    assert (await gw.get("/dashboard")).status_code == 200
    await gw.post(f"/admin/keys/{key_id}/revoke", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert (await gw.get("/dashboard")).status_code == 303


async def test_expired_sessions_and_a_changed_master_key_end_sessions(gw: httpx.AsyncClient) -> None:
    secret, _ = await key(gw, "finance")
    await login(gw, secret)
    db = gw.app.state.gateway.db  # type: ignore[attr-defined]
    async with db.session() as session:
        row = (await session.exec(select(DashboardSession))).one()
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
        await session.commit()
    assert (await gw.get("/dashboard")).status_code == 303

    assert (await login(gw, MASTER_KEY)).status_code == 303
    page = await gw.get("/dashboard")
    assert page.status_code == 200 and "master key" in page.text
    state = gw.app.state.gateway  # type: ignore[attr-defined]
    state.runtime.config = state.config.model_copy(
        update={
            "server": state.config.server.model_copy(
                update={"master_key": type(state.config.server.master_key)("sk-a-new-master-key")}
            )
        }
    )
    assert (await gw.get("/dashboard")).status_code == 303


async def test_narrowed_finance_keys_see_their_projects_only(gw: httpx.AsyncClient) -> None:
    secret, _ = await key(gw, "finance", projects=["shop"])
    await login(gw, secret)
    page = await gw.get("/dashboard")
    assert re.findall(r'data-project="([^"]+)"', page.text) == ["shop"]
    other = await gw.get("/dashboard/projects/web")
    assert other.status_code == 403 and "may not see" in other.text
    assert (await gw.get("/dashboard/projects/web/model.csv")).status_code == 403
    assert (await gw.get("/dashboard/projects/shop")).status_code == 200


async def test_bad_filters_and_unknown_projects_get_pages_that_say_so(gw: httpx.AsyncClient) -> None:
    secret, _ = await key(gw, "finance")
    await login(gw, secret, next="https://evil.example/steal")
    assert (await gw.get("/dashboard/login")).headers["location"] == "/dashboard"  # already in: no second form
    bad = await gw.get("/dashboard", params={"since": "2026-02-30"})
    assert bad.status_code == 400 and "is not a calendar date" in bad.text
    backwards = await gw.get("/dashboard", params={"since": "2026-11-05", "until": "2026-11-01"})
    assert backwards.status_code == 400 and "after until" in backwards.text
    assert (await gw.get("/dashboard/projects/nope")).status_code == 404
    assert (await gw.get("/dashboard/projects/web", params={"by": "colour"})).status_code == 400
    assert (await gw.get("/dashboard/projects/web/colour.csv")).status_code == 404


async def test_static_files_come_from_the_gateway_with_validators(gw: httpx.AsyncClient) -> None:
    css = await gw.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    again = await gw.get("/dashboard/static/dashboard.css", headers={"if-none-match": css.headers["etag"]})
    assert again.status_code == 304
    assert "@import" not in css.text and "url(" not in css.text  # nothing else to fetch
    assert (await gw.get("/dashboard/static/../../etc/passwd")).status_code == 404

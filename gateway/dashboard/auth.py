"""Dashboard sessions: a signed, expiring, HttpOnly, SameSite=Strict cookie that never holds the key.

The cookie is ``v1.<session id>.<expiry>.<signature>``: a random 256-bit id, its expiry (Unix
seconds) and an HMAC-SHA256 of both under the session secret (``dashboard.session_secret``, or
one derived from ``server.master_key``). The database keeps only the id's SHA-256
(``dashboard_sessions``) with the key it belongs to. Every dashboard request checks the
signature, the expiry, that the session was not ended (logout), and that the key is still
active (revoking it ends its sessions at once) and still a finance or admin key; a master-key
session ends when the master key changes.

CSRF: the cookie is SameSite=Strict, POSTs from another origin are refused, and every form
carries a token: the logout form an HMAC of the session id, the login form an HMAC of a random
nonce kept in a short-lived cookie of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import select
from starlette.requests import Request

from gateway.auth import Caller
from gateway.db.models import DashboardSession

COOKIE = "switchyard_session"
LOGIN_COOKIE = "switchyard_login"
COOKIE_PATH = "/dashboard"
DASHBOARD_ROLES = ("finance", "admin")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_secret(gateway: Any) -> bytes:
    """The key that signs cookies and CSRF tokens."""
    config = gateway.config
    configured = config.dashboard.session_secret
    if configured is not None and configured.get_secret_value():
        return hashlib.sha256(configured.get_secret_value().encode()).digest()
    master = config.server.master_key.get_secret_value().encode()
    return hmac.new(master, b"switchyard-dashboard-session-v1", hashlib.sha256).digest()


def master_fingerprint(gateway: Any) -> str:
    """Which master key a master session belongs to (a hash of a hash: nothing to reverse)."""
    master = gateway.config.server.master_key.get_secret_value().encode()
    return hashlib.sha256(b"switchyard-master:" + hashlib.sha256(master).digest()).hexdigest()


def sign(secret: bytes, text: str) -> str:
    return _b64(hmac.new(secret, text.encode(), hashlib.sha256).digest())


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Cookie:
    """A signed session cookie's parts."""

    session_id: str
    expires: int

    def value(self, secret: bytes) -> str:
        body = f"v1.{self.session_id}.{self.expires}"
        return f"{body}.{sign(secret, body)}"

    @classmethod
    def parse(cls, raw: str | None, secret: bytes, now: float) -> Cookie | None:
        """The cookie if its signature is ours and it has not expired."""
        if not raw or raw.count(".") != 3:
            return None
        version, session_id, expires, signature = raw.split(".")
        if version != "v1" or not expires.isdigit():
            return None
        if not hmac.compare_digest(signature, sign(secret, f"v1.{session_id}.{expires}")):
            return None
        if int(expires) <= now:
            return None
        return cls(session_id, int(expires))


async def start_session(gateway: Any, caller: Caller) -> tuple[str, int]:
    """Record a new session for ``caller``; returns the cookie value and its max-age in seconds."""
    ttl = gateway.config.dashboard.session_ttl_s
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    cookie = Cookie(session_id, int(now.timestamp()) + ttl)
    row = DashboardSession(
        id_hash=_hash(session_id),
        key_id=caller.key_id,
        master_fp=master_fingerprint(gateway) if caller.is_master else None,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    async with gateway.db.session() as session:
        session.add(row)
        await session.commit()
    return cookie.value(session_secret(gateway)), ttl


def session_cookie(gateway: Any, request: Request) -> Cookie | None:
    return Cookie.parse(request.cookies.get(COOKIE), session_secret(gateway), time.time())


async def session_caller(gateway: Any, request: Request) -> Caller | None:
    """The caller behind the request's session cookie, or None (no, bad, expired or ended session)."""
    cookie = session_cookie(gateway, request)
    if cookie is None:
        return None
    async with gateway.db.session() as session:
        row = await session.get(DashboardSession, _hash(cookie.session_id))
    now = datetime.now(UTC)
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    if row.key_id is None:
        if row.master_fp is None or not hmac.compare_digest(row.master_fp, master_fingerprint(gateway)):
            return None
        project = gateway.config.projects[0].name if gateway.config.projects else "default"
        caller = Caller(project=project, is_master=True, key_name="master key", role="admin")
    else:
        info = await gateway.keys.active_info(row.key_id)
        if info is None or info.role not in DASHBOARD_ROLES:
            return None
        caller = Caller(
            project=info.project,
            key_id=info.id,
            key_name=info.name,
            key_info=info,
            role=info.role,
            scope=info.projects,
            tags=frozenset(info.tags),
        )
    request.scope.setdefault("state", {})["session_id"] = cookie.session_id
    return caller


async def end_session(gateway: Any, session_id: str) -> None:
    """Logout: the session stops working everywhere, even if someone kept a copy of the cookie."""
    async with gateway.db.session() as session:
        row = await session.get(DashboardSession, _hash(session_id))
        if row is not None and row.ended_at is None:
            row.ended_at = datetime.now(UTC)
            session.add(row)
            await session.commit()


async def prune_sessions(gateway: Any) -> int:
    """Delete sessions that expired or ended more than a day ago."""
    cutoff = datetime.now(UTC) - timedelta(days=1)
    async with gateway.db.session() as session:
        rows = (await session.exec(select(DashboardSession).where(DashboardSession.expires_at < cutoff))).all()
        for row in rows:
            await session.delete(row)
        await session.commit()
    return len(rows)


def csrf_token(gateway: Any, purpose: str, value: str) -> str:
    """The form token for ``purpose`` ("logout", "login") bound to a session id or a login nonce."""
    return sign(session_secret(gateway), f"csrf:{purpose}:{value}")


def csrf_ok(gateway: Any, purpose: str, value: str | None, token: str | None) -> bool:
    if not value or not token:
        return False
    return hmac.compare_digest(token, csrf_token(gateway, purpose, value))


def same_origin(request: Request) -> bool:
    """A POST's Origin (or Referer) is this gateway; browsers always send one with a form POST."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True  # not a browser (curl); the CSRF token still has to match
    expected = f"{request.url.scheme}://{request.url.netloc}"
    forwarded = request.headers.get("x-forwarded-proto")
    alternatives = {expected} | ({f"{forwarded}://{request.url.netloc}"} if forwarded else set())
    return any(origin == o or origin.startswith(o + "/") for o in alternatives)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"

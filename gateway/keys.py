"""Virtual API keys: issue, list, revoke, rotate, and authenticate on the request path.

A key is ``sk-sy-`` followed by 43 URL-safe random characters (256 bits). Only its SHA-256 is
stored, plus a display prefix (the first 12 characters). ``authenticate`` keeps an in-memory
cache of hash -> record for ``ttl_s`` seconds (and unknown hashes for ``negative_ttl_s``), so
a revocation made on another replica is seen within ``ttl_s``; expiry is checked on every
call. Concurrent misses for one hash share a single database query. When the database is
unreachable, a recently valid record (at most ``stale_ttl_s`` old) is still honoured so that
traffic keeps flowing (and spooling to the ledger) through a database outage.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import col, select

from core.literals import Period as BudgetPeriod
from core.literals import Role
from gateway.admission.base import Subject
from gateway.db.engine import Database
from gateway.db.models import ApiKey, Project
from gateway.db.types import utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-sy-"
DISPLAY_PREFIX_LEN = 12
_KEY_LEN = len(KEY_PREFIX) + 43
_NEGATIVE_CACHE_MAX = 10_000


class KeyNotFound(LookupError):
    """No key has this id."""


class KeyRevoked(ValueError):
    """The key is revoked, so it cannot be rotated."""


class UnknownProject(LookupError):
    """A key was requested for a project that does not exist."""


def generate_key() -> str:
    """A new secret: ``sk-sy-`` + 43 URL-safe characters."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """SHA-256 hex of the full key, as stored in ``api_keys.key_hash``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """The budget, limits and sensitivity floor of the project a key bills."""

    name: str
    budget_usd: Decimal | None = None
    budget_period: BudgetPeriod = "monthly"
    rpm: int | None = None
    tpm: int | None = None
    sensitivity_floor: str = "public"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the request path needs to know about an authenticated key."""

    id: str
    project: str
    name: str
    models: tuple[str, ...] = ()  # empty: any model or route
    tags: tuple[str, ...] = ()
    budget_usd: Decimal | None = None
    budget_period: BudgetPeriod = "monthly"
    rpm: int | None = None
    tpm: int | None = None
    expires_at: datetime | None = None
    project_info: ProjectInfo | None = None
    role: Role = "app"
    projects: tuple[str, ...] = ()  # finance keys: the projects they may see (empty: every project)
    alert_thresholds: tuple[int, ...] | None = None

    def allows_model(self, model: str) -> bool:
        return not self.models or model in self.models

    def subjects(self) -> list[Subject]:
        """The admission subjects of a request made with this key: the key, then its project."""
        out = [Subject("key", self.id, self.budget_usd, self.budget_period, self.rpm, self.tpm)]
        p = self.project_info
        if p is not None:
            out.append(Subject("project", p.name, p.budget_usd, p.budget_period, p.rpm, p.tpm))
        return out


@dataclass(slots=True)
class _Entry:
    key_hash: str
    info: KeyInfo | None
    revoked: bool
    fetched: float  # monotonic


class KeyStore:
    """Issues keys and authenticates them against a short-lived cache of the ``api_keys`` table."""

    def __init__(
        self,
        db: Database,
        ttl_s: float = 5.0,
        *,
        negative_ttl_s: float = 1.0,
        stale_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._stale_ttl_s = stale_ttl_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}

    # ------------------------------------------------------------ admin operations

    async def create(
        self,
        project: str,
        name: str,
        *,
        models: Sequence[str] = (),
        tags: Sequence[str] = (),
        budget_usd: Decimal | None = None,
        budget_period: BudgetPeriod = "monthly",
        rpm: int | None = None,
        tpm: int | None = None,
        expires_at: datetime | None = None,
        role: Role = "app",
        projects: Sequence[str] = (),
        alert_thresholds: Sequence[int] | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key; returns the row and the plaintext secret (shown once, never stored).

        ``projects`` narrows what a finance key sees; every name in it, like ``project``, must exist.
        """
        secret = generate_key()
        row = ApiKey(
            project=project,
            name=name,
            models=list(models),
            tags=list(tags),
            budget_usd=budget_usd,
            budget_period=budget_period,
            rpm=rpm,
            tpm=tpm,
            expires_at=expires_at,
            key_hash=hash_key(secret),
            prefix=secret[:DISPLAY_PREFIX_LEN],
            role=role,
            projects=list(projects),
            alert_thresholds=list(alert_thresholds) if alert_thresholds is not None else None,
        )
        async with self._db.session() as session:
            wanted = {project, *projects}
            found = set((await session.exec(select(Project.name).where(col(Project.name).in_(wanted)))).all())
            for name_ in [project, *projects]:
                if name_ not in found:
                    raise UnknownProject(name_)
            session.add(row)
            await session.commit()
        return row, secret

    async def get(self, key_id: str) -> ApiKey:
        async with self._db.session() as session:
            row = await session.get(ApiKey, key_id)
        if row is None:
            raise KeyNotFound(key_id)
        return row

    async def list(self, project: str | None = None) -> builtins.list[ApiKey]:
        """Every key (revoked ones included), oldest first, optionally of one project."""
        stmt = select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))
        if project is not None:
            stmt = stmt.where(ApiKey.project == project)
        async with self._db.session() as session:
            return builtins.list((await session.exec(stmt)).all())

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent: a second call keeps the first ``revoked_at``)."""
        async with self._db.session() as session:
            row = await session.get(ApiKey, key_id)
            if row is None:
                raise KeyNotFound(key_id)
            if row.revoked_at is None:
                row.revoked_at = self._wall_clock()
                session.add(row)
                await session.commit()
            self._forget(row.key_hash)
            return row

    async def rotate(self, key_id: str) -> tuple[ApiKey, str]:
        """Give a key a new secret; the old one stops working. Id, limits and budget stay."""
        secret = generate_key()
        async with self._db.session() as session:
            row = await session.get(ApiKey, key_id)
            if row is None:
                raise KeyNotFound(key_id)
            if row.revoked_at is not None:
                raise KeyRevoked(key_id)
            old_hash = row.key_hash
            row.key_hash = hash_key(secret)
            row.prefix = secret[:DISPLAY_PREFIX_LEN]
            row.rotated_at = self._wall_clock()
            session.add(row)
            await session.commit()
        self._forget(old_hash)
        return row, secret

    # ------------------------------------------------------------ request path

    async def authenticate(self, presented: str) -> KeyInfo | None:
        """The key's info, or None when it is malformed, unknown, revoked or expired."""
        if not presented.startswith(KEY_PREFIX) or len(presented) != _KEY_LEN:
            return None
        digest = hash_key(presented)
        entry = self._cache.get(digest)
        now = self._clock()
        if entry is None or now - entry.fetched >= (self._ttl_s if entry.info else self._negative_ttl_s):
            entry = await self._refresh(digest, entry)
        if entry.info is None or entry.revoked or not hmac.compare_digest(entry.key_hash, digest):
            return None
        expires = entry.info.expires_at
        if expires is not None and expires <= self._wall_clock():
            return None
        return entry.info

    async def models_in_use(self) -> set[str]:
        """Every model name some live (unrevoked) key is limited to."""
        stmt = select(ApiKey.models).where(ApiKey.revoked_at.is_(None))  # type: ignore[union-attr]
        async with self._db.session() as session:
            rows = (await session.exec(stmt)).all()
        return {name for models in rows for name in (models or ())}

    def invalidate(self) -> None:
        """Drop the whole cache (e.g. after a config reload changed project limits)."""
        self._cache.clear()

    async def _refresh(self, digest: str, previous: _Entry | None) -> _Entry:
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._load(digest))
            self._inflight[digest] = task
            task.add_done_callback(lambda t: self._loaded(digest, t))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if previous is not None and previous.info is not None and self._clock() - previous.fetched < self._stale_ttl_s:
                log.warning(
                    "key lookup failed (%s); using the cached record from %.0fs ago", exc, self._clock() - previous.fetched
                )
                return previous
            raise

    def _loaded(self, digest: str, task: asyncio.Task[_Entry]) -> None:
        self._inflight.pop(digest, None)
        if task.cancelled():
            return
        if task.exception() is not None:  # also marks the exception as retrieved
            return
        entry = task.result()
        if entry.info is None and len(self._cache) >= _NEGATIVE_CACHE_MAX:
            self._cache = {h: e for h, e in self._cache.items() if e.info is not None}
        self._cache[digest] = entry

    async def active_info(self, key_id: str) -> KeyInfo | None:
        """A key's info by id, straight from the database (no cache): None if unknown, revoked or expired.

        For sessions that outlive a request (the dashboard): revoking the key ends them at once.
        """
        stmt = select(ApiKey, Project).join(Project, col(Project.name) == col(ApiKey.project)).where(ApiKey.id == key_id)
        async with self._db.session() as session:
            found = (await session.exec(stmt)).first()
        if found is None or found[0].revoked_at is not None:
            return None
        info = _key_info(*found)
        if info.expires_at is not None and info.expires_at <= self._wall_clock():
            return None
        return info

    async def _load(self, digest: str) -> _Entry:
        stmt = select(ApiKey, Project).join(Project, col(Project.name) == col(ApiKey.project)).where(ApiKey.key_hash == digest)
        async with self._db.session() as session:
            found = (await session.exec(stmt)).first()
        now = self._clock()
        if found is None:
            return _Entry(digest, None, False, now)
        key, project = found
        return _Entry(key.key_hash, _key_info(key, project), key.revoked_at is not None, now)

    def _forget(self, digest: str) -> None:
        self._cache.pop(digest, None)


def _key_info(key: ApiKey, project: Project) -> KeyInfo:
    """The request path's view of a key row and its project."""
    return KeyInfo(
        id=key.id,
        project=key.project,
        name=key.name,
        models=tuple(key.models),
        tags=tuple(key.tags),
        budget_usd=key.budget_usd,
        budget_period=key.budget_period,
        rpm=key.rpm,
        tpm=key.tpm,
        expires_at=key.expires_at.astimezone(UTC) if key.expires_at else None,
        role=key.role,
        projects=tuple(key.projects or ()),
        alert_thresholds=tuple(key.alert_thresholds) if key.alert_thresholds is not None else None,
        project_info=ProjectInfo(
            name=project.name,
            budget_usd=project.budget_usd,
            budget_period=project.budget_period,
            rpm=project.rpm,
            tpm=project.tpm,
            sensitivity_floor=project.sensitivity_floor,
        ),
    )

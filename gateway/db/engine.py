"""The database handle: URL normalisation, the async engine, sessions and migrations.

``Database(url)`` accepts the URLs people write in a config file and picks the async driver::

    sqlite:///./switchyard.db          -> sqlite+aiosqlite:///./switchyard.db
    postgres://u@h/db, postgresql://…  -> postgresql+asyncpg://…

SQLite runs in WAL mode with a busy timeout so readers never block the ledger writer.
``await db.migrate()`` runs the Alembic migrations in ``gateway/db/migrations`` on the async
connection (Alembic's sync API inside ``run_sync``), serialised across processes by a Postgres
advisory lock or, for SQLite, a lock file beside the database.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x5357_4442  # "SWDB": any constant shared by every replica
_SQLITE_BUSY_MS = 5000


def async_url(url: str | URL) -> URL:
    """Rewrite a config-file database URL to its async-driver form."""
    if isinstance(url, str):
        if url.startswith("postgres://"):  # SQLAlchemy refuses the bare "postgres" scheme
            url = "postgresql://" + url[len("postgres://") :]
        url = make_url(url)
    parsed = url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme '{parsed.drivername}': use sqlite:/// or postgresql://")


class Database:
    """One async engine plus a session factory; the only way the gateway talks to its database."""

    def __init__(self, url: str | URL, *, echo: bool = False, connect_timeout_s: float = 5.0, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.dialect = self.url.get_backend_name()
        # hide_parameters: a failed statement's message must never carry its values (a key's hash)
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.dialect == "sqlite":
            path = self.url.database
            if path in (None, "", ":memory:"):
                kwargs |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
                self.sqlite_path: Path | None = None
            else:
                self.sqlite_path = Path(path)
                self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_MS / 1000}
        else:
            self.sqlite_path = None
            kwargs |= {
                "pool_pre_ping": True,
                "pool_size": pool_size,
                "max_overflow": pool_size,
                "connect_args": {"timeout": connect_timeout_s},
            }
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits. Rolled back and closed on exit."""
        async with self._sessions() as session:
            yield session

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """True when a ``SELECT 1`` succeeds within the timeout (for ``/readyz``)."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            log.debug("database ping failed: %s", exc)
            return False

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision``; safe to call from many replicas at once."""
        lock_fd = await asyncio.to_thread(self._lock_sqlite) if self.sqlite_path else None
        try:
            async with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                await conn.run_sync(_upgrade, revision)
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # closing the descriptor releases the flock

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at, or None before the first migration."""
        async with self.engine.connect() as conn:
            try:
                return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
            except Exception:  # noqa: BLE001 - no table yet
                return None

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    def _lock_sqlite(self) -> int:
        assert self.sqlite_path is not None
        fd = os.open(f"{self.sqlite_path}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


def alembic_config() -> AlembicConfig:
    """An Alembic config pointing at the bundled migrations (no alembic.ini needed)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

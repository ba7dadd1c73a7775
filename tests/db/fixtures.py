"""Fixtures for tests that need real databases and Redis (import them into a conftest).

Postgres: one scratch database per session (created, migrated, dropped at the end), tables
truncated before each test. SQLite: a fresh migrated file per test. Redis: db 15, a unique key
prefix per test, its keys deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text

from gateway.db import Database
from tests.db.scratch import ADMIN_DSN, postgres_available, scratch_postgres

REDIS_URL = os.environ.get("SWITCHYARD_TEST_REDIS", "redis://127.0.0.1:6379/15")
TABLES = (
    "usage_records",
    "usage_daily",
    "usage_project_daily",
    "usage_daily_attribution",
    "budget_alerts",
    "dashboard_sessions",
    "api_keys",
    "projects",
)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_url() -> AsyncIterator[str]:
    """A migrated scratch Postgres database for the whole session."""
    if not await postgres_available():
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_DSN} (run `make services`)")
    async with scratch_postgres() as url:
        db = Database(url)
        await db.migrate()
        await db.aclose()
        yield url


async def fresh_sqlite(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    await db.migrate()
    return db


async def fresh_postgres(url: str) -> Database:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    return db


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[Database]:
    """An empty, migrated database: a SQLite file, then the session's Postgres database."""
    if request.param == "sqlite":
        db = await fresh_sqlite(tmp_path / "ledger.db")
    else:
        db = await fresh_postgres(pg_url)
    yield db
    await db.aclose()


@pytest_asyncio.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = await fresh_sqlite(tmp_path / "gateway.db")
    yield db
    await db.aclose()


@pytest_asyncio.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A unique key prefix in the test Redis database; its keys are deleted after the test."""
    prefix = f"sytest-{uuid.uuid4().hex[:10]}"
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (run `make services`): {exc}")
    yield prefix
    keys = [k async for k in client.scan_iter(match=f"{{{prefix}}}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()

"""Database URLs, migrations on SQLite and Postgres, exact money, UTC times."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlmodel import SQLModel

from gateway.db import Database, UsageRecord, async_url
from tests.db.scratch import scratch_postgres


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///./x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_config_urls_get_the_async_driver(given: str, driver: str) -> None:
    url = async_url(given)
    assert url.drivername == driver
    if "u:p@" in given:
        assert url.password == "p" and url.host == "h" and url.database == "db"


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        async_url("mysql://u@h/db")


async def _assert_schema_matches_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata)
        )
    assert {"projects", "api_keys", "usage_records", "alembic_version"} <= tables
    assert diff == [], f"models and migrations disagree: {diff}"
    assert await db.schema_revision() == "0003_request_shape"


async def test_sqlite_migrates_in_wal_mode_and_matches_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/sub/dir/gw.db")  # missing directories are created
    try:
        assert await db.schema_revision() is None
        await db.migrate()
        await db.migrate()  # idempotent
        await _assert_schema_matches_models(db)
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
        assert await db.ping()
    finally:
        await db.aclose()


async def test_postgres_migrates_once_when_replicas_start_together() -> None:
    async with scratch_postgres() as url:
        replicas = [Database(url) for _ in range(3)]
        try:
            await asyncio.gather(*(r.migrate() for r in replicas))  # serialised by an advisory lock
            await _assert_schema_matches_models(replicas[0])
            assert await replicas[1].ping()
        finally:
            await asyncio.gather(*(r.aclose() for r in replicas))


async def test_ping_is_false_when_the_database_is_unreachable() -> None:
    db = Database("postgresql://postgres@127.0.0.1:1/none", connect_timeout_s=1)
    try:
        assert await db.ping(timeout_s=2) is False
    finally:
        await db.aclose()


async def test_money_is_exact_and_times_are_utc(database: Database) -> None:
    tenth = Decimal("0.1000000001")
    plus_two = timezone(timedelta(hours=2))
    async with database.session() as session:
        for i in range(10):
            session.add(UsageRecord(id=f"r{i}", cost_usd=tenth, ts=datetime(2026, 11, 1, 12, 0, tzinfo=plus_two)))
        await session.commit()
        total = (await session.exec(select(func.sum(UsageRecord.cost_usd)))).one()[0]
        row = await session.get(UsageRecord, "r0")
    assert total == Decimal("1.000000001")  # a float column would give 1.0000000010000002 or similar
    assert row is not None and row.cost_usd == tenth
    assert row.ts == datetime(2026, 11, 1, 10, 0, tzinfo=UTC) and row.ts.tzinfo is not None

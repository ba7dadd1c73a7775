"""Virtual keys: issue, authenticate through the cache, revoke, rotate, expire — across replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event

from gateway.config import Budget, Limits, ProjectConfig
from gateway.db import ApiKey, Database, sync_projects
from gateway.keys import (
    KEY_PREFIX,
    KeyNotFound,
    KeyRevoked,
    KeyStore,
    UnknownProject,
    hash_key,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(database: Database) -> Database:
    project = ProjectConfig(name="web", budget=Budget(usd=Decimal(50), period="monthly"), limits=Limits(rpm=100, tpm=None))
    await sync_projects(database, [project])
    return database


def _count_queries(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


async def test_create_stores_only_a_hash_and_authenticates(db: Database) -> None:
    store = KeyStore(db)
    row, secret = await store.create(
        "web", "ci", models=["auto"], tags=["team-a"], budget_usd=Decimal("2.5"), budget_period="daily", rpm=5, tpm=1000
    )
    assert secret.startswith(KEY_PREFIX) and len(secret) == len(KEY_PREFIX) + 43
    assert row.key_hash == hash_key(secret) and secret not in row.model_dump_json()
    assert row.prefix == secret[:12]
    info = await store.authenticate(secret)
    assert info is not None
    assert (info.id, info.project, info.name, info.models, info.tags) == (row.id, "web", "ci", ("auto",), ("team-a",))
    assert info.allows_model("auto") and not info.allows_model("gpt-4o")
    key_subject, project_subject = info.subjects()
    assert (key_subject.kind, key_subject.budget_usd, key_subject.period, key_subject.rpm) == ("key", Decimal("2.5"), "daily", 5)
    assert (project_subject.id, project_subject.budget_usd, project_subject.rpm) == ("web", Decimal(50), 100)


async def test_unknown_malformed_and_wrong_project_keys(db: Database) -> None:
    store = KeyStore(db)
    assert await store.authenticate("sk-sy-" + "x" * 43) is None
    assert await store.authenticate("not-a-key") is None
    assert await store.authenticate("") is None
    with pytest.raises(UnknownProject):
        await store.create("missing", "k")


async def test_revocation_is_seen_by_another_replica_within_the_ttl(db: Database) -> None:
    clock = FakeClock()
    replica_a, replica_b = KeyStore(db, ttl_s=5, clock=clock), KeyStore(db, ttl_s=5, clock=clock)
    row, secret = await replica_a.create("web", "svc")
    assert await replica_b.authenticate(secret) is not None  # now cached on B
    await replica_a.revoke(row.id)
    assert await replica_a.authenticate(secret) is None  # A dropped its own cache entry at once
    clock.now += 4.9
    assert await replica_b.authenticate(secret) is not None  # B still within its TTL
    clock.now += 0.2
    assert await replica_b.authenticate(secret) is None  # ... and sees it after
    again = await replica_a.revoke(row.id)  # idempotent
    assert again.revoked_at is not None


async def test_revocation_with_the_real_clock_takes_effect_within_seconds(db: Database) -> None:
    replica_a, replica_b = KeyStore(db, ttl_s=0.3), KeyStore(db, ttl_s=0.3)
    row, secret = await replica_a.create("web", "svc")
    assert await replica_b.authenticate(secret) is not None
    await replica_a.revoke(row.id)
    await asyncio.sleep(0.35)
    assert await replica_b.authenticate(secret) is None


async def test_rotation_keeps_id_and_limits_and_kills_the_old_secret(db: Database) -> None:
    clock = FakeClock()
    store, other = KeyStore(db, clock=clock), KeyStore(db, clock=clock)
    row, old = await store.create("web", "svc", rpm=7, budget_usd=Decimal(3))
    assert await other.authenticate(old) is not None
    rotated, new = await store.rotate(row.id)
    assert new != old and rotated.id == row.id and rotated.rpm == 7 and rotated.rotated_at is not None
    assert await store.authenticate(old) is None
    assert (await store.authenticate(new)).id == row.id  # type: ignore[union-attr]
    assert (await other.authenticate(new)).id == row.id  # type: ignore[union-attr]  # never seen: a miss goes to the db
    clock.now += 5
    assert await other.authenticate(old) is None
    await store.revoke(row.id)
    with pytest.raises(KeyRevoked):
        await store.rotate(row.id)
    with pytest.raises(KeyNotFound):
        await store.rotate("no-such-id")


async def test_expired_keys_fail_even_while_cached(db: Database) -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    wall = [now]
    store = KeyStore(db, wall_clock=lambda: wall[0])
    _, secret = await store.create("web", "temp", expires_at=now + timedelta(minutes=1))
    assert await store.authenticate(secret) is not None
    wall[0] = now + timedelta(minutes=1)
    assert await store.authenticate(secret) is None


async def test_unknown_keys_are_cached_briefly_and_misses_share_one_query(db: Database) -> None:
    clock = FakeClock()
    store = KeyStore(db, negative_ttl_s=1, clock=clock)
    _, secret = await store.create("web", "svc")
    queries = _count_queries(db)
    results = await asyncio.gather(*(store.authenticate(secret) for _ in range(50)))
    assert all(r is not None for r in results)
    assert len([q for q in queries if "api_keys" in q]) == 1
    bogus = "sk-sy-" + "y" * 43
    assert await store.authenticate(bogus) is None
    assert await store.authenticate(bogus) is None
    assert len([q for q in queries if "api_keys" in q]) == 2  # the second miss came from the cache
    clock.now += 1
    assert await store.authenticate(bogus) is None
    assert len([q for q in queries if "api_keys" in q]) == 3


async def test_list_filters_by_project(db: Database) -> None:
    await sync_projects(db, [ProjectConfig(name="other")])
    store = KeyStore(db)
    a, _ = await store.create("web", "a")
    b, _ = await store.create("other", "b")
    await store.revoke(b.id)
    assert [k.id for k in await store.list()] == [a.id, b.id]
    assert [k.id for k in await store.list("other")] == [b.id]
    assert isinstance((await store.list())[0], ApiKey)


async def test_a_known_key_keeps_working_through_a_database_outage(tmp_path) -> None:
    from tests.db.fixtures import fresh_sqlite

    db = await fresh_sqlite(tmp_path / "k.db")
    await sync_projects(db, [ProjectConfig(name="web")])
    clock = FakeClock()
    store = KeyStore(db, ttl_s=5, stale_ttl_s=60, clock=clock)
    _, secret = await store.create("web", "svc")
    assert await store.authenticate(secret) is not None
    await db.aclose()
    (tmp_path / "k.db").rename(tmp_path / "gone.db")
    (tmp_path / "k.db").mkdir()  # the path is now a directory: every connect fails
    clock.now += 10
    assert await store.authenticate(secret) is not None  # stale but recent: honoured
    clock.now += 60
    with pytest.raises(Exception):  # noqa: B017 - too old: the outage is the caller's to report
        await store.authenticate(secret)
    with pytest.raises(Exception):  # noqa: B017 - never seen before: cannot be checked
        await store.authenticate("sk-sy-" + "z" * 43)

"""Seeding admission counters from the ledger after a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.errors import BudgetExceeded
from gateway.admission import (
    MemoryAdmission,
    RedisAdmission,
    Subject,
    budget_subjects,
    seed_from_ledger,
)
from gateway.config import Budget, ProjectConfig
from gateway.db import Database, UsageRecord, sync_projects
from gateway.keys import KeyStore
from tests.db.fixtures import REDIS_URL

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
D = Decimal


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_restart_remembers_this_periods_spend(database: Database, redis_prefix: str, backend: str) -> None:
    await sync_projects(database, [ProjectConfig(name="web", budget=Budget(usd=D(10), period="monthly"))])
    row, _ = await KeyStore(database).create("web", "ci", budget_usd=D(1), budget_period="daily")
    _, _ = await KeyStore(database).create("web", "unlimited")
    async with database.session() as session:
        session.add_all(
            [
                UsageRecord(id="a", ts=datetime(2026, 11, 20, 1, tzinfo=UTC), project="web", key_id=row.id, cost_usd=D("0.75")),
                UsageRecord(id="b", ts=datetime(2026, 11, 19, 23, tzinfo=UTC), project="web", key_id=row.id, cost_usd=D("5")),
                UsageRecord(id="c", ts=datetime(2026, 10, 31, 23, tzinfo=UTC), project="web", key_id=row.id, cost_usd=D("100")),
            ]
        )
        await session.commit()
    subjects = await budget_subjects(database)
    assert sorted((s.kind, s.id) for s in subjects) == [("key", row.id), ("project", "web")]

    adm = (
        MemoryAdmission(clock=lambda: NOW) if backend == "memory" else RedisAdmission(REDIS_URL, redis_prefix, clock=lambda: NOW)
    )
    try:
        assert await seed_from_ledger(adm, database, now=NOW) == 2
        key_subject = Subject("key", row.id, D(1), "daily")
        assert (await adm.budget_state(key_subject)).spent_usd == D("0.75")  # today only
        assert (await adm.budget_state(Subject("project", "web", D(10), "monthly"))).spent_usd == D("5.75")  # November
        with pytest.raises(BudgetExceeded):
            await adm.admit([key_subject], tokens=1, reserve_usd=D("0.26"))
        assert await seed_from_ledger(adm, database, now=NOW) == 0  # never overwrites live counters
    finally:
        await adm.aclose()


async def test_negative_ledger_rows_neither_lower_spend_nor_stop_seeding(database: Database) -> None:
    await sync_projects(database, [ProjectConfig(name="web", budget=Budget(usd=D(10), period="monthly"))])
    async with database.session() as session:
        session.add_all(
            [
                UsageRecord(id="ok", ts=datetime(2026, 11, 20, 1, tzinfo=UTC), project="web", cost_usd=D("2")),
                # what an old gateway wrote when an upstream reported negative completion_tokens
                UsageRecord(id="bad", ts=datetime(2026, 11, 20, 2, tzinfo=UTC), project="web", cost_usd=D("-7")),
            ]
        )
        await session.commit()
    adm = MemoryAdmission(clock=lambda: NOW)
    assert await seed_from_ledger(adm, database, now=NOW) == 1
    assert (await adm.budget_state(Subject("project", "web", D(10), "monthly"))).spent_usd == D(2)


async def test_a_project_whose_only_rows_are_negative_starts_at_zero(database: Database) -> None:
    await sync_projects(database, [ProjectConfig(name="web", budget=Budget(usd=D(10), period="monthly"))])
    async with database.session() as session:
        session.add(UsageRecord(id="bad", ts=datetime(2026, 11, 20, 2, tzinfo=UTC), project="web", cost_usd=D("-7")))
        await session.commit()
    adm = MemoryAdmission(clock=lambda: NOW)
    await seed_from_ledger(adm, database, now=NOW)
    assert (await adm.budget_state(Subject("project", "web", D(10), "monthly"))).spent_usd == 0

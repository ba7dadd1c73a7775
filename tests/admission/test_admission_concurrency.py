"""Check-and-reserve is atomic: concurrent admits never overshoot a budget or a rate limit."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal

from core.errors import BudgetExceeded, RateLimited
from gateway.admission import MemoryAdmission, RedisAdmission, Subject
from gateway.admission.base import Admission
from tests.db.fixtures import REDIS_URL

D = Decimal
KEY = Subject("key", "shared", D("1.00"), "total")
PROJECT = Subject("project", "web", D("100"), "monthly", rpm=10_000)


async def _admit_all(replicas: list[Admission], n: int, subjects: list[Subject], reserve: Decimal) -> tuple[list, list]:
    async def one(i: int) -> object:
        try:
            return await replicas[i % len(replicas)].admit(subjects, tokens=10, reserve_usd=reserve)
        except RateLimited as exc:
            return exc

    results = await asyncio.gather(*(one(i) for i in range(n)))
    admitted = [r for r in results if not isinstance(r, RateLimited)]
    refused = [r for r in results if isinstance(r, RateLimited)]
    return admitted, refused


async def test_three_redis_replicas_never_admit_past_the_budget(redis_prefix: str) -> None:
    # Separate clients (and so separate connection pools), as three gateway processes would have.
    replicas: list[Admission] = [RedisAdmission(REDIS_URL, redis_prefix) for _ in range(3)]
    try:
        admitted, refused = await _admit_all(replicas, 200, [KEY, PROJECT], D("0.03"))
        assert len(admitted) == 33  # 33 x 0.03 = 0.99 <= 1.00 < 34 x 0.03
        assert len(refused) == 167 and all(isinstance(r, BudgetExceeded) for r in refused)
        state = await replicas[0].budget_state(KEY)
        assert state.reserved_usd == D("0.99")
        project_state = await replicas[1].budget_state(PROJECT)
        assert project_state.reserved_usd == D("0.99")  # the project was charged exactly as often
    finally:
        for r in replicas:
            await r._redis.aclose()  # type: ignore[attr-defined]


async def test_memory_admission_never_admits_past_the_budget() -> None:
    adm = MemoryAdmission()
    admitted, refused = await _admit_all([adm], 200, [KEY, PROJECT], D("0.03"))
    assert len(admitted) == 33 and len(refused) == 167


async def test_concurrent_admit_and_settle_keeps_spend_within_one_request(redis_prefix: str) -> None:
    replicas = [RedisAdmission(REDIS_URL, redis_prefix) for _ in range(3)]
    rng = random.Random(7)
    worst = D("0.05")
    spent: list[Decimal] = []

    async def request(i: int) -> None:
        adm = replicas[i % 3]
        try:
            ticket = await adm.admit([KEY], tokens=10, reserve_usd=worst)
        except BudgetExceeded:
            return
        await asyncio.sleep(rng.random() / 100)
        actual = D(rng.randint(1, 5000)) / D(100_000)  # <= the worst case
        spent.append(actual)
        await adm.settle(ticket, actual_usd=actual, actual_tokens=5)

    try:
        await asyncio.gather(*(request(i) for i in range(240)))
        state = await replicas[0].budget_state(KEY)
        assert state.reserved_usd == 0
        assert state.spent_usd == sum(spent)  # exact: integer nano-dollars, no float drift
        assert state.spent_usd <= KEY.budget_usd  # type: ignore[operator]
    finally:
        for r in replicas:
            await r.aclose()


async def test_rpm_holds_across_replicas(redis_prefix: str) -> None:
    clock = lambda: datetime(2026, 11, 4, 10, 0, 1, tzinfo=UTC)  # noqa: E731 - one fixed minute
    replicas: list[Admission] = [RedisAdmission(REDIS_URL, redis_prefix, clock=clock) for _ in range(3)]
    limited = Subject("key", "rpm", rpm=25, tpm=10_000)
    try:
        admitted, refused = await _admit_all(replicas, 100, [limited], D(0))
        assert len(admitted) == 25 and all(r.headers["retry-after"] == "59" for r in refused)
    finally:
        for r in replicas:
            await r.aclose()

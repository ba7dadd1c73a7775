"""The gateway's measured routing signals, in one place, and the task that shares them.

:class:`LiveSignals` owns three things and hands them to the router as plain data
(:class:`routing.live.LiveState`, one object whose mappings are these very dictionaries):

* spend against caps (:mod:`gateway.measured.spend`): deployments past a cap leave plans;
* latency and time to first token (:mod:`gateway.measured.latency`): the ``fastest`` objective;
* requests in flight per deployment: ``balance: least_in_flight``. These are this replica's own
  counts, kept by the executor (an attempt starts) and the exchange (its answer ends); with
  several replicas behind a load balancer each one balances what it sends, which is what the
  least-in-flight rule is about (sharing the counts would cost a Redis round trip a request).

The request path reads and writes memory only. One background task, every
``measurements.sync_interval_s``, rolls spend windows over, drops stale latency and, with
``redis_url``, sends what this replica measured and reads what every replica did in one
pipelined round trip each. Redis slow or down: the round is given up within a bounded time and
retried with backoff; spend waits to be sent (never lost), latency batches are dropped (they
would be stale), and every replica goes on with what it knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gateway.measured.latency import LatencyStats
from gateway.measured.spend import SpendCaps, caps_of
from routing.live import LiveState

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.db.engine import Database

log = logging.getLogger("switchyard.measured")


class InFlight(dict[str, int]):
    """Requests each deployment is serving now, on this replica."""

    def enter(self, deployment: str) -> None:
        self[deployment] = self.get(deployment, 0) + 1

    def leave(self, deployment: str) -> None:
        left = self.get(deployment, 0) - 1
        if left > 0:
            self[deployment] = left
        else:
            self.pop(deployment, None)


class LiveSignals:
    """Spend caps, measured latency and in-flight counts (see the module docstring)."""

    def __init__(self, config: GatewayConfig, *, prefix: str = "switchyard", rng: random.Random | None = None) -> None:
        settings = config.measurements
        self.interval_s = settings.sync_interval_s
        self.spend = SpendCaps(caps_of(config.deployments, config.provider_caps), prefix)
        self.latency = LatencyStats(settings.latency_alpha, settings.latency_max_age_s, prefix)
        self.in_flight = InFlight()
        draw = (rng or random.Random()).random
        self.state = LiveState(self.spend.capped, self.latency.measured, self.in_flight, None, draw, settings.latency_min_samples)
        self.downgraded = replace(self.state, downgrade="budget")
        self._redis_url = config.redis_url
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.failed_rounds = 0
        self._round = asyncio.Lock()  # one round at a time: a spend batch is sent once
        self._closing = False

    def reconfigure(self, config: GatewayConfig) -> None:
        """A reloaded config: new caps and settings; counters and measurements carry over."""
        settings = config.measurements
        self.interval_s = settings.sync_interval_s
        self.spend.configure(caps_of(config.deployments, config.provider_caps))
        self.latency.alpha, self.latency.max_age_s = settings.latency_alpha, settings.latency_max_age_s
        self.state = replace(self.state, min_samples=settings.latency_min_samples)
        self.downgraded = replace(self.state, downgrade="budget")

    # ---- the request path (memory only)

    def answered(self, deployment: str, cost: Decimal, latency_ms: float | None, ttft_ms: float | None) -> None:
        """An attempt that answered has ended: count its cost, and its timing when it succeeded."""
        self.spend.record(deployment, cost)
        if latency_ms is not None:
            self.latency.observe(deployment, latency_ms, ttft_ms)

    # ---- start, the background round, stop

    async def start(self, db: Database | None) -> None:
        """Seed spend from the ledger (Redis keeps counters it still has), then share in the background."""
        if self._redis_url:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            timeout = max(0.25, min(2.0, self.interval_s))
            self._redis = Redis.from_url(
                self._redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
            )
        if db is not None and self.spend.caps:
            try:
                spent = await ledger_spend(db, self.spend)
            except Exception as exc:  # noqa: BLE001 - caps then count from what Redis still has
                log.error("spend caps: cannot read the ledger's spend (%s: %s)", type(exc).__name__, exc)
                spent = {}
            seeded = self.spend.seed(spent)
            if self._redis is not None:
                try:
                    await self.spend.seed_redis(self._redis, seeded)
                except Exception as exc:  # noqa: BLE001 - the background rounds retry
                    log.warning("spend caps: cannot seed Redis yet (%s); retrying in the background", type(exc).__name__)
        self._task = asyncio.create_task(self._run(), name="measured-sync")

    async def _run(self) -> None:
        backoff = self.interval_s
        while not self._closing:  # a cancellation a client library swallowed still ends the loop
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis is optional here: log, back off, go on
                self.failed_rounds += 1
                if self.failed_rounds == 1 or self.failed_rounds % 100 == 0:
                    log.warning("measured routing signals: Redis round failed (%s); using this replica's own", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = self.interval_s
            await asyncio.sleep(self.interval_s)

    async def sync_once(self) -> None:
        """One round: roll windows over and drop stale latency; with Redis, share both."""
        async with self._round:
            now = datetime.now(UTC)
            self.latency.expire()
            if self._redis is None:
                self.spend.refresh(now)
            else:
                async with asyncio.timeout(4 * max(0.25, min(2.0, self.interval_s))):
                    await self.spend.sync(self._redis, now)
                    await self.latency.sync(self._redis)
            self.rounds += 1

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            _, running = await asyncio.wait({self._task}, timeout=5)  # bounded, whatever the task is doing
            if running:
                log.error("measured routing signals: the sync task did not stop within 5 s")
            self._task = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.spend.sync(self._redis)  # what was spent here since the last round
            with contextlib.suppress(Exception):
                await self._redis.aclose()


async def ledger_spend(db: Database, spend: SpendCaps, now: datetime | None = None) -> dict[str, Decimal]:
    """Each cap's spend in its current window, from the ledger: counter -> USD."""
    from sqlalchemy import func
    from sqlmodel import select

    from gateway.admission.base import budget_window
    from gateway.db.models import UsageRecord

    now = now or datetime.now(UTC)
    by_period: dict[str, list[Any]] = defaultdict(list)
    for cap in spend.caps:
        by_period[cap.period].append(cap)
    out: dict[str, Decimal] = {}
    for period, caps in by_period.items():
        window = budget_window(period, now)  # type: ignore[arg-type]
        stmt = (
            select(UsageRecord.deployment, func.sum(UsageRecord.cost_usd))
            .where(UsageRecord.cost_usd > 0)
            .group_by(UsageRecord.deployment)
        )
        if window.start is not None:
            stmt = stmt.where(UsageRecord.ts >= window.start)
        async with db.session() as session:
            rows = {name: Decimal(total or 0) for name, total in (await session.exec(stmt)).all()}
        for cap in caps:
            out[cap.counter(now)] = sum((rows.get(name, Decimal(0)) for name in cap.covers), Decimal(0))
    return out

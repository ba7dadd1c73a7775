"""Spend per deployment and per provider against their caps, for routing.

A cap is ``spend_cap: {usd, period}`` on a deployment, or ``provider_caps: {openai: {usd,
period}}`` for every deployment of a provider (``DeploymentConfig.billing_provider``). Past it,
the deployments it covers are in :attr:`SpendCaps.capped` with the reason explain shows, and the
router leaves them out of plans until the period (a UTC calendar window, as for budgets) ends.

Counting: the cost of every answered request is added here when the request is accounted for
(``Exchange.finish``), in memory, at once. With Redis the counters are shared: one string per cap
and window, ``{switchyard}:cap:<d|p>:<name>:<window>`` (nano-USD, expiring a day after the
window), seeded from the ledger at start (``SET NX``: a counter Redis still has is kept), added to
with ``INCRBY`` and read back with one ``MGET`` per sync round (``gateway.measured.live``).

What a replica believes is spent = the last value read from Redis + what it is sending now + what
it recorded since. The other replicas' spend reaches it within one ``measurements.sync_interval_s``.
So a cap can be overshot by the requests already in flight when it is crossed (their cost is known
only when they end) plus what the other replicas start within one sync interval; caps are meant to
shift spend, and budgets (reserved atomically per request) remain the hard limit. A failed send is
kept and sent again: an ambiguous failure may count a batch twice, which makes a cap stricter, never
looser.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.admission.base import budget_window, usd_to_nanos, window_ttl_s
from providers.settings import DeploymentConfig, SpendCap


@dataclass(frozen=True, slots=True)
class Cap:
    """One cap: on a deployment (``kind`` ``d``) or a provider (``p``), and the deployments it covers."""

    kind: str
    name: str
    usd: Decimal
    period: str
    covers: tuple[str, ...]

    def counter(self, now: datetime) -> str:
        return f"{self.kind}:{self.name}:{budget_window(self.period, now).id}"  # type: ignore[arg-type]

    @property
    def reason(self) -> str:
        who = "spend cap" if self.kind == "d" else f"provider '{self.name}' spend cap"
        return f"{who} reached: ${self.usd:,.2f} {self.period}"


def caps_of(deployments: Sequence[DeploymentConfig], provider_caps: dict[str, SpendCap]) -> list[Cap]:
    """Every cap the config declares, each with the deployments it covers."""
    caps = [Cap("d", d.name, d.spend_cap.usd, d.spend_cap.period, (d.name,)) for d in deployments if d.spend_cap]
    for provider, cap in provider_caps.items():
        covers = tuple(d.name for d in deployments if d.billing_provider == provider)
        caps.append(Cap("p", provider, cap.usd, cap.period, covers))
    return caps


class SpendCaps:
    """Spend against caps in memory; :meth:`sync` shares it through Redis (see the module docstring)."""

    def __init__(self, caps: Iterable[Cap] = (), prefix: str = "switchyard") -> None:
        self._p = "{" + prefix + "}:cap:"
        self.capped: dict[str, str] = {}  # deployment -> reason; the router reads this very dict
        self._shared: dict[str, int] = {}  # counter -> nano-USD, as last read (or seeded)
        self._sending: dict[str, int] = {}  # sent in the current round, not read back yet
        self._pending: dict[str, int] = {}  # recorded since
        self.caps: list[Cap] = []
        self._by_deployment: dict[str, list[Cap]] = {}
        self.configure(caps)

    def configure(self, caps: Iterable[Cap], now: datetime | None = None) -> None:
        self.caps = list(caps)
        self._by_deployment = {}
        for cap in self.caps:
            for name in cap.covers:
                self._by_deployment.setdefault(name, []).append(cap)
        self.refresh(now)

    # ---- the request path (memory only)

    def record(self, deployment: str, cost: Decimal, now: datetime | None = None) -> None:
        """Count an answered request's cost against every cap covering ``deployment``."""
        caps = self._by_deployment.get(deployment)
        if not caps or cost <= 0:
            return
        now = now or datetime.now(UTC)
        nanos = usd_to_nanos(cost, round_up=True)
        for cap in caps:
            counter = cap.counter(now)
            self._pending[counter] = self._pending.get(counter, 0) + nanos
        self.refresh(now)

    def spent_nanos(self, cap: Cap, now: datetime | None = None) -> int:
        counter = cap.counter(now or datetime.now(UTC))
        return self._shared.get(counter, 0) + self._sending.get(counter, 0) + self._pending.get(counter, 0)

    def refresh(self, now: datetime | None = None) -> None:
        """Recompute :attr:`capped` (in place: the router holds a reference to it)."""
        now = now or datetime.now(UTC)
        capped: dict[str, str] = {}
        for cap in self.caps:
            if self.spent_nanos(cap, now) >= usd_to_nanos(cap.usd, round_up=False):
                for name in cap.covers:
                    capped.setdefault(name, cap.reason)
        if capped != self.capped:
            self.capped.clear()
            self.capped.update(capped)

    # ---- seeding and sharing

    def seed(self, spend: dict[str, Decimal], now: datetime | None = None) -> dict[str, int]:
        """Set each cap's current window from ``spend`` (counter -> USD, from the ledger) unless
        already known; returns what was seeded (counter -> nano-USD) for Redis to take."""
        now = now or datetime.now(UTC)
        seeded = {}
        for cap in self.caps:
            counter = cap.counter(now)
            if counter not in self._shared:
                seeded[counter] = usd_to_nanos(max(spend.get(counter, Decimal(0)), Decimal(0)), round_up=True)
        self._shared.update(seeded)
        self.refresh(now)
        return seeded

    def counter_ttl_s(self, counter: str, now: datetime) -> int:
        for cap in self.caps:
            if cap.counter(now) == counter:
                return window_ttl_s(budget_window(cap.period, now), now)  # type: ignore[arg-type]
        return 2 * 86_400

    async def seed_redis(self, redis: Any, seeded: dict[str, int], now: datetime | None = None) -> None:
        """``SET NX`` the seeded counters (Redis keeps what it has), then read them all back."""
        now = now or datetime.now(UTC)
        if seeded:
            async with redis.pipeline(transaction=False) as pipe:
                for counter, nanos in seeded.items():
                    ttl = self.counter_ttl_s(counter, now)
                    pipe.set(self._p + counter, nanos, nx=True, ex=ttl if ttl > 0 else None)
                await pipe.execute()
        await self.sync(redis, now)

    async def sync(self, redis: Any, now: datetime | None = None) -> None:
        """Send what was recorded, read every current counter: one pipelined round trip."""
        now = now or datetime.now(UTC)
        batch, self._pending = self._pending, {}
        for counter, nanos in batch.items():
            self._sending[counter] = self._sending.get(counter, 0) + nanos
        counters = sorted({cap.counter(now) for cap in self.caps})
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for counter, nanos in self._sending.items():
                    pipe.incrby(self._p + counter, nanos)
                    ttl = self.counter_ttl_s(counter, now)
                    if ttl > 0:
                        pipe.expire(self._p + counter, ttl)
                if counters:
                    pipe.mget([self._p + c for c in counters])
                replies = await pipe.execute()
        except BaseException:
            # not known to be sent: send it again next round (counted twice at worst: stricter)
            for counter, nanos in self._sending.items():
                self._pending[counter] = self._pending.get(counter, 0) + nanos
            self._sending = {}
            raise
        self._sending = {}
        if counters:
            values = replies[-1]
            self._shared = {c: int(v) for c, v in zip(counters, values, strict=True) if v is not None}
        self.refresh(now)

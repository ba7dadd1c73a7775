"""In-process admission for a single replica (``redis_url`` unset).

Same semantics as the Redis backend (see :mod:`gateway.admission.base`); atomicity comes from
doing every check and every reservation of one ``admit`` under one asyncio lock with no await
in between. Nothing survives a restart, which is what ``seed_spend`` (from the ledger) is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from gateway.admission.base import (
    REASON_BUDGET,
    REASON_RPM,
    REASON_TPM,
    BudgetState,
    OutputClaim,
    Settlement,
    Subject,
    Ticket,
    Window,
    affordable_units,
    as_utc,
    budget_window,
    nanos_to_usd,
    new_ticket_id,
    output_reserve_nanos,
    rate_info,
    rate_minute,
    rejection,
    tightest_remaining,
    unique_subjects,
    unit_price,
    usd_to_nanos,
)


@dataclass(slots=True)
class _BudgetCounter:
    spent: int = 0
    reserved: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # ticket -> (nanos, expiry ts)
    end_ts: float | None = None  # window end, for pruning

    def expire_holds(self, now_ts: float) -> None:
        for ticket_id in [t for t, (_, exp) in self.holds.items() if exp <= now_ts]:
            self.reserved -= self.holds.pop(ticket_id)[0]


class MemoryAdmission:
    """Budgets and rate limits in this process's memory."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        reservation_ttl_s: float = 900.0,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._reservation_ttl_s = reservation_ttl_s
        self._lock = asyncio.Lock()
        self._budgets: dict[tuple[str, str], _BudgetCounter] = {}
        self._rates: dict[tuple[str, int], list[int]] = {}  # (subject, minute) -> [requests, tokens]
        self._open: set[str] = set()
        self._pruned_minute = 0

    async def admit(
        self,
        subjects: Sequence[Subject],
        *,
        tokens: int,
        reserve_usd: Decimal,
        output: OutputClaim | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        now = as_utc(now or self._clock())
        subs = unique_subjects(subjects)
        fixed = usd_to_nanos(reserve_usd, round_up=True)
        minute, reset_s = rate_minute(now)
        now_ts = now.timestamp()
        async with self._lock:
            self._prune(minute, now_ts)
            windows = [budget_window(s.period, now) if s.budget_usd is not None else None for s in subs]
            counters = [self._counter(s, w, now_ts) if w else None for s, w in zip(subs, windows, strict=True)]
            rates = [self._rates.get((s.key, minute), [0, 0]) for s in subs]
            units, reserve, short = _grant(subs, counters, fixed, output)
            if output is not None:
                tokens += units * output.tokens_per_unit
            failure = (REASON_BUDGET, short) if short is not None else self._check(subs, counters, rates, tokens, reserve)
            if failure is not None:
                reason, i = failure
                counter = counters[i]
                info = rate_info(subs, [r[0] for r in rates], [r[1] for r in rates], reset_s)
                raise rejection(
                    reason,
                    subs[i],
                    now=now,
                    info=info,
                    reset_s=reset_s,
                    tokens=tokens,
                    reserve_nanos=reserve,
                    spent_nanos=counter.spent if counter else 0,
                    reserved_nanos=counter.reserved if counter else 0,
                    budget_remaining_nanos=_remaining(subs, counters),
                )
            remaining = _remaining(subs, counters)
            ticket_id = new_ticket_id()
            for subject, counter in zip(subs, counters, strict=True):
                if counter is not None and reserve > 0:
                    counter.reserved += reserve
                    counter.holds[ticket_id] = (reserve, now_ts + self._reservation_ttl_s)
                rate = self._rates.setdefault((subject.key, minute), [0, 0])
                rate[0] += 1
                rate[1] += tokens
            self._open.add(ticket_id)
            rates = [self._rates[(s.key, minute)] for s in subs]
            full = tuple(s for s, r in zip(subs, rates, strict=True) if s.rpm is not None and r[0] >= s.rpm)
            return Ticket(
                id=ticket_id,
                subjects=subs,
                tokens=tokens,
                reserve_nanos=reserve,
                windows=tuple(w.id if w else None for w in windows),
                rate_window=minute,
                limits=rate_info(subs, [r[0] for r in rates], [r[1] for r in rates], reset_s),
                output_units=units if output is not None else None,
                budget_remaining_nanos=remaining,
                rpm_full=full,
                rate_reset_s=reset_s,
            )

    async def settle(self, ticket: Ticket, *, actual_usd: Decimal, actual_tokens: int) -> bool:
        actual = usd_to_nanos(actual_usd, round_up=True)
        async with self._lock:
            if ticket.id not in self._open:
                return False
            self._open.discard(ticket.id)
            for subject, window_id in zip(ticket.subjects, ticket.windows, strict=True):
                if window_id is not None:
                    counter = self._budgets.setdefault((subject.key, window_id), _BudgetCounter())
                    hold = counter.holds.pop(ticket.id, None)
                    if hold is not None:
                        counter.reserved -= hold[0]
                    counter.spent += actual
                rate = self._rates.get((subject.key, ticket.rate_window))
                if rate is not None:
                    rate[1] += actual_tokens - ticket.tokens
            return True

    async def release(self, ticket: Ticket) -> bool:
        return await self.settle(ticket, actual_usd=Decimal(0), actual_tokens=0)

    async def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        return [await self.settle(s.ticket, actual_usd=s.actual_usd, actual_tokens=s.actual_tokens) for s in settlements]

    async def seed_spend(self, subject: Subject, period_start: datetime, usd: Decimal) -> bool:
        window = budget_window(subject.period, period_start)
        async with self._lock:
            if (subject.key, window.id) in self._budgets:
                return False
            counter = _BudgetCounter(spent=usd_to_nanos(usd, round_up=True))
            counter.end_ts = window.end.timestamp() if window.end else None
            self._budgets[(subject.key, window.id)] = counter
            return True

    async def budget_state(self, subject: Subject, now: datetime | None = None) -> BudgetState:
        now = as_utc(now or self._clock())
        window = budget_window(subject.period, now)
        async with self._lock:
            counter = self._budgets.get((subject.key, window.id))
            if counter is not None:
                counter.expire_holds(now.timestamp())
            spent, reserved = (counter.spent, counter.reserved) if counter else (0, 0)
        return BudgetState(window, nanos_to_usd(spent), nanos_to_usd(reserved), subject.budget_usd)

    async def aclose(self) -> None:
        return None

    # ------------------------------------------------------------ internals

    @staticmethod
    def _check(
        subs: Sequence[Subject],
        counters: Sequence[_BudgetCounter | None],
        rates: Sequence[list[int]],
        tokens: int,
        reserve: int,
    ) -> tuple[int, int] | None:
        if reserve > 0:
            for i, (subject, counter) in enumerate(zip(subs, counters, strict=True)):
                if counter is not None and subject.budget_usd is not None:
                    budget = usd_to_nanos(subject.budget_usd, round_up=False)
                    if counter.spent + counter.reserved + reserve > budget:
                        return REASON_BUDGET, i
        for i, subject in enumerate(subs):
            if subject.rpm is not None and rates[i][0] + 1 > subject.rpm:
                return REASON_RPM, i
        for i, subject in enumerate(subs):
            if subject.tpm is not None and rates[i][1] + tokens > subject.tpm:
                return REASON_TPM, i
        return None

    def _counter(self, subject: Subject, window: Window, now_ts: float) -> _BudgetCounter:
        counter = self._budgets.get((subject.key, window.id))
        if counter is None:
            counter = self._budgets[(subject.key, window.id)] = _BudgetCounter()
            counter.end_ts = window.end.timestamp() if window.end else None
        counter.expire_holds(now_ts)
        return counter

    def _prune(self, minute: int, now_ts: float) -> None:
        """Forget rate windows older than the previous minute and budget windows a day past their end."""
        if minute == self._pruned_minute:
            return
        self._pruned_minute = minute
        for key in [k for k in self._rates if k[1] < minute - 1]:
            del self._rates[key]
        for budget_key in [k for k, c in self._budgets.items() if c.end_ts is not None and c.end_ts + 86_400 < now_ts]:
            del self._budgets[budget_key]


def _budget_nanos(subject: Subject) -> int:
    return usd_to_nanos(subject.budget_usd or Decimal(0), round_up=False)


def _grant(
    subs: Sequence[Subject], counters: Sequence[_BudgetCounter | None], fixed: int, output: OutputClaim | None
) -> tuple[int, int, int | None]:
    """``(units granted, reservation in nanos, index of the budget that cannot afford min_units)``.

    The same arithmetic as the Redis backend's script: each budget affords
    ``floor((budget - spent - reserved - fixed) / unit price)`` units; the grant is the least of
    them and ``max_units``.
    """
    price = unit_price(output)
    if output is None:
        return 0, fixed, None
    units, tightest = output.max_units, None
    if price > 0:
        for i, (subject, counter) in enumerate(zip(subs, counters, strict=True)):
            if counter is None:
                continue
            room = _budget_nanos(subject) - counter.spent - counter.reserved - fixed
            afford = affordable_units(room, price)
            if afford < units:
                units, tightest = afford, i
    if units < output.min_units:
        return 0, fixed + output_reserve_nanos(output.min_units, price), tightest if tightest is not None else 0
    return units, fixed + output_reserve_nanos(units, price), None


def _remaining(subs: Sequence[Subject], counters: Sequence[_BudgetCounter | None]) -> int | None:
    """Budget left to the tightest subject, before this request's reservation."""
    return tightest_remaining(subs, [c.spent if c else 0 for c in counters], [c.reserved if c else 0 for c in counters])

"""What every admission backend shares: subjects, tickets, periods, money units and errors.

Semantics (identical in :class:`~gateway.admission.memory.MemoryAdmission` and
:class:`~gateway.admission.redis_backend.RedisAdmission`):

* ``admit`` checks every subject, then reserves on every subject, as one atomic step. Checks
  run in this order and the first failure wins: budgets (all subjects), RPM, TPM.
* Budget: admit only if ``spent + reserved + reservation <= budget`` for the subject's current
  calendar window (UTC day, ISO week from Monday, month; ``total`` never resets). A zero
  reservation is never blocked by a budget. Money is integer nano-dollars inside the backends.
* A reservation is a fixed part (``reserve_usd``: the prompt) plus, optionally, an output part
  (:class:`OutputClaim`): ``units`` of output at ``unit_usd`` each, as many as every budget still
  affords up to ``max_units`` and never fewer than ``min_units`` (else the budget refuses). The
  units granted come back on the ticket; the gateway sends them upstream as ``max_tokens``, so the
  reservation and the cap on what the backend may produce are the same number.
* Rate limits are **fixed 60-second windows** aligned to the epoch minute: a request counts 1
  towards RPM and its token estimate towards TPM in the minute it was admitted. ``Retry-After``
  is the time left in that minute (a burst can reach 2x the limit across one boundary; that is
  the price of exact "remaining" headers).
* ``settle`` replaces the reservation with the actual cost (added to ``spent`` even if it
  overshoots) and corrects the TPM count by ``actual - estimate``; ``release`` is a settle
  with zero cost and zero tokens (the request still counts towards RPM). Each runs at most
  once per ticket; later calls return False.
* A reservation whose holder never settles (a crashed replica) expires after
  ``reservation_ttl_s`` and stops counting against the budget.
* Every ticket (and every refusal) carries the budget left to the tightest budgeted subject:
  ``budget - spent - reserved by other requests``, at admit time. Subtract the request's own
  cost when it is known (:meth:`Ticket.headers`); that is ``x-switchyard-budget-remaining-usd``.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal, Protocol

from core.errors import BudgetExceeded, RateLimited
from core.literals import Period

Kind = Literal["key", "project"]

NANOS = Decimal(1_000_000_000)
RATE_WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Subject:
    """Something that has a budget and/or rate limits: an API key or a project."""

    kind: Kind
    id: str
    budget_usd: Decimal | None = None
    period: Period = "monthly"
    rpm: int | None = None
    tpm: int | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class OutputClaim:
    """The scalable part of a reservation: output tokens, granted as far as the budgets allow.

    ``unit_usd`` is the price of one unit (one token of ``max_tokens``, times the number of
    choices, at the priciest candidate); ``tokens_per_unit`` counts a unit towards TPM.
    """

    unit_usd: Decimal
    max_units: int
    min_units: int = 1
    tokens_per_unit: int = 1


@dataclass(frozen=True, slots=True)
class Window:
    """One budget period: its id (part of the counter's name), start and end (None for ``total``)."""

    id: str
    start: datetime | None
    end: datetime | None


def budget_window(period: Period, now: datetime) -> Window:
    """The calendar window (UTC) that ``now`` falls in."""
    now = as_utc(now)
    return _window(period, now.year, now.month, now.day)


@functools.lru_cache(maxsize=64)
def _window(period: Period, year: int, month: int, day_of_month: int) -> Window:
    # windows are whole UTC days or longer: one computation per period per day
    day = datetime(year, month, day_of_month, tzinfo=UTC)
    if period == "daily":
        return Window(f"d{day:%Y%m%d}", day, day + timedelta(days=1))
    if period == "weekly":
        monday = day - timedelta(days=day.weekday())
        return Window(f"w{monday:%Y%m%d}", monday, monday + timedelta(days=7))
    if period == "monthly":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return Window(f"m{start:%Y%m}", start, end)
    if period == "total":
        return Window("total", None, None)
    raise ValueError(f"unknown budget period '{period}'")


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def usd_to_nanos(usd: Decimal | int | str, *, round_up: bool) -> int:
    """USD -> integer nano-dollars; reservations and spend round up, budgets round down."""
    amount = Decimal(usd) * NANOS
    if amount < 0:
        raise ValueError(f"a money amount cannot be negative: {usd}")
    return int(amount.to_integral_value(ROUND_CEILING if round_up else ROUND_FLOOR))


def nanos_to_usd(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The most constraining RPM and TPM limits among a request's subjects (None when unlimited)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` response headers."""
        out: dict[str, str] = {}
        if self.limit_requests is not None:
            out["x-ratelimit-limit-requests"] = str(self.limit_requests)
            out["x-ratelimit-remaining-requests"] = str(max(0, self.remaining_requests or 0))
            out["x-ratelimit-reset-requests"] = format_duration(self.reset_requests_s or 0.0)
        if self.limit_tokens is not None:
            out["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            out["x-ratelimit-remaining-tokens"] = str(max(0, self.remaining_tokens or 0))
            out["x-ratelimit-reset-tokens"] = format_duration(self.reset_tokens_s or 0.0)
        return out


@dataclass(slots=True)
class Ticket:
    """An admitted request's reservation; hand it back to ``settle`` or ``release`` exactly once."""

    id: str
    subjects: tuple[Subject, ...]
    tokens: int
    reserve_nanos: int
    windows: tuple[str | None, ...]  # budget window per subject at admit time (None: no budget)
    rate_window: int  # epoch minute the request was counted in
    limits: RateLimitInfo = field(default_factory=RateLimitInfo)
    output_units: int | None = None  # granted by an OutputClaim (None: the claim had none)
    rpm_full: tuple[Subject, ...] = ()  # subjects this request filled to their RPM for the rest of the minute
    rate_reset_s: float = 0.0  # seconds left in the rate window
    budget_remaining_nanos: int | None = None  # tightest subject, before this request (None: no budget)

    @property
    def reserve_usd(self) -> Decimal:
        return nanos_to_usd(self.reserve_nanos)

    def headers(self, cost: Decimal | None = None) -> dict[str, str]:
        """``x-ratelimit-*`` and ``x-switchyard-budget-remaining-usd`` (after ``cost`` when given)."""
        out = self.limits.headers()
        if self.budget_remaining_nanos is not None:
            out[BUDGET_REMAINING_HEADER] = remaining_usd_text(nanos_to_usd(self.budget_remaining_nanos) - (cost or 0))
        return out


BUDGET_REMAINING_HEADER = "x-switchyard-budget-remaining-usd"


def remaining_usd_text(amount: Decimal) -> str:
    """A remaining budget as plain decimal text, never below zero: ``12.5``, ``0``."""
    if amount <= 0:
        return "0"
    text = format(amount.normalize(), "f")
    return text


def tightest_remaining(subjects: Sequence[Subject], spent: Sequence[int], reserved_by_others: Sequence[int]) -> int | None:
    """Nano-USD left to the budgeted subject with the least left (None when no subject has a budget)."""
    left = [
        usd_to_nanos(s.budget_usd, round_up=False) - sp - rs
        for s, sp, rs in zip(subjects, spent, reserved_by_others, strict=True)
        if s.budget_usd is not None
    ]
    return min(left) if left else None


@dataclass(frozen=True, slots=True)
class Settlement:
    """One ticket's actual cost and tokens, for :meth:`Admission.settle_many`."""

    ticket: Ticket
    actual_usd: Decimal
    actual_tokens: int


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A subject's current budget window, for dashboards and tests."""

    window: Window
    spent_usd: Decimal
    reserved_usd: Decimal
    budget_usd: Decimal | None


class Admission(Protocol):
    """Rate limits and budget reservations, checked and taken atomically for all subjects."""

    async def admit(
        self,
        subjects: Sequence[Subject],
        *,
        tokens: int,
        reserve_usd: Decimal,
        output: OutputClaim | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        """Reserve ``reserve_usd`` plus as much of ``output`` as the budgets afford, counting
        ``tokens`` (plus the granted output) towards TPM; or raise :class:`RateLimited` /
        :class:`BudgetExceeded` having changed nothing."""
        ...

    async def settle(self, ticket: Ticket, *, actual_usd: Decimal, actual_tokens: int) -> bool:
        """Replace the reservation with the actual cost and tokens; False if already settled."""
        ...

    async def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        """Settle several tickets in one round trip (the gateway batches settles off the request path)."""
        ...

    async def release(self, ticket: Ticket) -> bool:
        """Give the reservation and tokens back (the request reached no backend)."""
        ...

    async def seed_spend(self, subject: Subject, period_start: datetime, usd: Decimal) -> bool:
        """Set the window's spend (from the ledger) unless the backend already has it."""
        ...

    async def budget_state(self, subject: Subject, now: datetime | None = None) -> BudgetState: ...

    async def aclose(self) -> None: ...


# ---------------------------------------------------------------- shared helpers for the backends


def unique_subjects(subjects: Sequence[Subject]) -> tuple[Subject, ...]:
    seen: dict[str, Subject] = {}
    for subject in subjects:
        seen.setdefault(subject.key, subject)
    return tuple(seen.values())


def new_ticket_id() -> str:
    return uuid.uuid4().hex


def rate_minute(now: datetime) -> tuple[int, float]:
    """(epoch minute, seconds left in it)."""
    ts = as_utc(now).timestamp()
    minute = int(ts // RATE_WINDOW_S)
    return minute, (minute + 1) * RATE_WINDOW_S - ts


def window_ttl_s(window: Window, now: datetime, grace_s: int = 86_400) -> int:
    """How long a budget counter must live: to the window's end plus a grace for late settles; -1 never expires."""
    if window.end is None:
        return -1
    return max(1, math.ceil((window.end - as_utc(now)).total_seconds()) + grace_s)


def rate_info(subjects: Sequence[Subject], requests: Sequence[int], tokens: Sequence[int], reset_s: float) -> RateLimitInfo:
    """The tightest limits given each subject's counts in the current minute."""
    best_r: tuple[int, int] | None = None  # (remaining, limit)
    best_t: tuple[int, int] | None = None
    for subject, used_r, used_t in zip(subjects, requests, tokens, strict=True):
        if subject.rpm is not None:
            cand = (subject.rpm - used_r, subject.rpm)
            best_r = cand if best_r is None or cand < best_r else best_r
        if subject.tpm is not None:
            cand = (subject.tpm - used_t, subject.tpm)
            best_t = cand if best_t is None or cand < best_t else best_t
    return RateLimitInfo(
        limit_requests=best_r[1] if best_r else None,
        remaining_requests=best_r[0] if best_r else None,
        reset_requests_s=reset_s if best_r else None,
        limit_tokens=best_t[1] if best_t else None,
        remaining_tokens=best_t[0] if best_t else None,
        reset_tokens_s=reset_s if best_t else None,
    )


def unit_price(output: OutputClaim | None) -> int:
    """An output unit's price as integer nano-dollars per million units (rounded up), so that
    prices far below a nano-dollar a token stay exact integers in both backends."""
    if output is None:
        return 0
    return int((output.unit_usd * NANOS * 1_000_000).to_integral_value(ROUND_CEILING))


def output_reserve_nanos(units: int, per_million_units_nanos: int) -> int:
    """What ``units`` cost in nano-dollars, rounded up."""
    return -(-units * per_million_units_nanos // 1_000_000)


def affordable_units(room_nanos: int, per_million_units_nanos: int) -> int:
    """How many units ``room_nanos`` pays for (rounded down); ``room`` may be negative."""
    if room_nanos <= 0:
        return 0
    return room_nanos * 1_000_000 // per_million_units_nanos


REASON_BUDGET, REASON_RPM, REASON_TPM = 1, 2, 3


def rejection(
    reason: int,
    subject: Subject,
    *,
    now: datetime,
    info: RateLimitInfo,
    reset_s: float,
    spent_nanos: int = 0,
    reserved_nanos: int = 0,
    reserve_nanos: int = 0,
    tokens: int = 0,
    budget_remaining_nanos: int | None = None,
) -> RateLimited:
    """The error for a refused admit, with ``Retry-After``, the ``x-ratelimit-*`` and budget-remaining headers."""
    who = f"{subject.kind} '{subject.id}'"
    headers = info.headers()
    if budget_remaining_nanos is not None:
        headers[BUDGET_REMAINING_HEADER] = remaining_usd_text(nanos_to_usd(budget_remaining_nanos))
    if reason == REASON_BUDGET:
        window = budget_window(subject.period, now)
        used = nanos_to_usd(spent_nanos + reserved_nanos)
        message = (
            f"Budget exceeded for {who}: ${_money(used)} of the {subject.period} budget of "
            f"${_money(subject.budget_usd or Decimal(0))} is spent or reserved, and this request may cost up to "
            f"${_money(nanos_to_usd(reserve_nanos))}."
        )
        left_s = None
        if window.end is not None:
            left_s = (window.end - as_utc(now)).total_seconds()
            headers["retry-after"] = str(max(1, math.ceil(left_s)))
            message += f" The budget resets at {window.end:%Y-%m-%dT%H:%M:%SZ}."
        # Retrying before the period ends cannot help: tell SDKs not to.
        headers["x-should-retry"] = "false"
        budget_error = BudgetExceeded(message, headers=headers)
        # What is left once reservations settle; when no request can cost that little, nothing
        # but the period's end frees this budget (the gateway decides, knowing its prices).
        budget_error.subject_key = subject.key
        budget_error.stays_for_s = left_s if left_s is not None else math.inf
        budget_error.unspent_usd = nanos_to_usd(usd_to_nanos(subject.budget_usd or Decimal(0), round_up=False) - spent_nanos)
        return budget_error
    headers["retry-after"] = str(max(1, math.ceil(reset_s)))
    if reason == REASON_RPM:
        message = f"Rate limit reached for {who}: {subject.rpm} requests per minute. Retry in {headers['retry-after']}s."
        rpm_error = RateLimited(message, headers=headers)
        rpm_error.subject_key, rpm_error.stays_for_s = subject.key, reset_s
        return rpm_error
    elif subject.tpm is not None and tokens > subject.tpm:
        message = (
            f"Request too large for {who}: it may use {tokens} tokens but the limit is {subject.tpm} tokens per "
            "minute. Lower max_tokens or shorten the prompt."
        )
    else:
        message = f"Rate limit reached for {who}: {subject.tpm} tokens per minute. Retry in {headers['retry-after']}s."
    return RateLimited(message, headers=headers)


def rpm_refusal(subject: Subject, reset_s: float) -> RateLimited:
    """The refusal of a request that finds ``subject``'s RPM window full for ``reset_s`` more seconds."""
    retry = str(max(1, math.ceil(reset_s)))
    error = RateLimited(
        f"Rate limit reached for {subject.kind} '{subject.id}': {subject.rpm} requests per minute. Retry in {retry}s.",
        headers={"retry-after": retry},
    )
    error.subject_key, error.stays_for_s = subject.key, reset_s
    return error


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``250ms``, ``12s``, ``1m30s``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60)
    secs_text = f"{round(secs, 3):g}s"
    return f"{int(minutes)}m{secs_text}" if minutes >= 1 else secs_text


def _money(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('0.000001')).normalize():f}"

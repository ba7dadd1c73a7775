"""Budgets, reservations, settlement and rate limits — the same behaviour from both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.errors import BudgetExceeded, RateLimited
from gateway.admission import Subject
from gateway.admission.base import Admission, OutputClaim
from tests.admission.helpers import Clock, build

T0 = datetime(2026, 11, 4, 10, 0, 15, tzinfo=UTC)  # a Wednesday
D = Decimal


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[Callable[..., Admission]]:
    made: list[Admission] = []

    def make(clock: Clock | None = None, **kwargs: object) -> Admission:
        adm = build(request.param, redis_prefix, clock or Clock(T0), **kwargs)
        made.append(adm)
        return adm

    yield make
    for adm in made:
        await adm.aclose()


def key(budget: str | None = None, period: str = "monthly", **kw: object) -> Subject:
    return Subject("key", "k1", D(budget) if budget is not None else None, period, **kw)  # type: ignore[arg-type]


async def test_budget_admits_up_to_the_exact_limit(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("0.09", "daily")
    tickets = [await adm.admit([subject], tokens=1, reserve_usd=D("0.03")) for _ in range(3)]  # 0.09 <= 0.09
    with pytest.raises(BudgetExceeded) as caught:
        await adm.admit([subject], tokens=1, reserve_usd=D("0.000001"))
    err = caught.value
    assert (err.status, err.code, err.type) == (429, "budget_exceeded", "insufficient_quota")
    assert "key 'k1'" in err.message and "daily" in err.message
    assert int(err.headers["retry-after"]) == int((datetime(2026, 11, 5, tzinfo=UTC) - T0).total_seconds())
    state = await adm.budget_state(subject)
    assert (state.spent_usd, state.reserved_usd) == (0, D("0.09"))
    assert len({t.id for t in tickets}) == 3


async def test_settle_replaces_the_reservation_exactly_once(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("1")
    ticket = await adm.admit([subject], tokens=100, reserve_usd=D("0.5"))
    assert ticket.reserve_usd == D("0.5")
    assert await adm.settle(ticket, actual_usd=D("0.0123"), actual_tokens=40)
    assert not await adm.settle(ticket, actual_usd=D("0.0123"), actual_tokens=40)
    assert not await adm.release(ticket)
    state = await adm.budget_state(subject)
    assert (state.spent_usd, state.reserved_usd) == (D("0.0123"), 0)
    other = await adm.admit([subject], tokens=1, reserve_usd=D("0.9877"))  # exactly the rest
    assert await adm.release(other)
    assert (await adm.budget_state(subject)).reserved_usd == 0


async def test_actual_cost_above_the_reservation_is_still_recorded(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("1")
    ticket = await adm.admit([subject], tokens=1, reserve_usd=D("0.1"))
    await adm.settle(ticket, actual_usd=D("1.5"), actual_tokens=1)
    assert (await adm.budget_state(subject)).spent_usd == D("1.5")
    with pytest.raises(BudgetExceeded):
        await adm.admit([subject], tokens=1, reserve_usd=D("0.01"))


async def test_zero_cost_requests_pass_a_spent_budget(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("0")
    for _ in range(3):
        ticket = await adm.admit([subject], tokens=10, reserve_usd=D(0))
        await adm.settle(ticket, actual_usd=D(0), actual_tokens=10)
    with pytest.raises(BudgetExceeded):
        await adm.admit([subject], tokens=10, reserve_usd=D("0.0000001"))


async def test_all_subjects_are_checked_before_any_is_charged(backend: Callable[..., Admission]) -> None:
    adm = backend()
    k = Subject("key", "k1", D(10), "monthly", rpm=100)
    project = Subject("project", "web", D("0.05"), "monthly")
    await adm.admit([k, project], tokens=1, reserve_usd=D("0.05"))
    with pytest.raises(BudgetExceeded, match="project 'web'"):
        await adm.admit([k, project], tokens=1, reserve_usd=D("0.01"))
    assert (await adm.budget_state(k)).reserved_usd == D("0.05")  # the refused admit left the key untouched
    ticket = await adm.admit([k], tokens=1, reserve_usd=D("0.01"))
    assert ticket.limits.remaining_requests == 98  # 2 counted, not 3


@pytest.mark.parametrize(
    ("period", "last_moment", "next_window", "same_window"),
    [
        ("daily", datetime(2026, 11, 4, 23, 59, 59), datetime(2026, 11, 5, 0, 0), datetime(2026, 11, 4, 0, 0)),
        ("weekly", datetime(2026, 11, 8, 23, 59, 59), datetime(2026, 11, 9, 0, 0), datetime(2026, 11, 2, 0, 0)),  # Sun -> Mon
        ("monthly", datetime(2026, 11, 30, 23, 59, 59), datetime(2026, 12, 1, 0, 0), datetime(2026, 11, 1, 0, 0)),
        ("monthly", datetime(2026, 12, 31, 23, 59, 59), datetime(2027, 1, 1, 0, 0), datetime(2026, 12, 1, 0, 0)),
    ],
)
async def test_budgets_reset_at_calendar_boundaries_in_utc(
    backend: Callable[..., Admission], period: str, last_moment: datetime, next_window: datetime, same_window: datetime
) -> None:
    clock = Clock(last_moment.replace(tzinfo=UTC))
    adm = backend(clock)
    subject = key("1", period)
    await adm.settle(await adm.admit([subject], tokens=1, reserve_usd=D(1)), actual_usd=D(1), actual_tokens=1)
    clock.now = same_window.replace(tzinfo=UTC)  # earlier in the same window: still spent
    with pytest.raises(BudgetExceeded):
        await adm.admit([subject], tokens=1, reserve_usd=D("0.01"))
    clock.now = next_window.replace(tzinfo=UTC)
    ticket = await adm.admit([subject], tokens=1, reserve_usd=D(1))
    assert (await adm.budget_state(subject)).reserved_usd == D(1)
    await adm.release(ticket)


async def test_total_budgets_never_reset(backend: Callable[..., Admission]) -> None:
    clock = Clock(T0)
    adm = backend(clock)
    subject = key("2", "total")
    await adm.settle(await adm.admit([subject], tokens=1, reserve_usd=D(2)), actual_usd=D(2), actual_tokens=1)
    clock.now = T0 + timedelta(days=800)
    with pytest.raises(BudgetExceeded) as caught:
        await adm.admit([subject], tokens=1, reserve_usd=D("0.01"))
    assert "retry-after" not in caught.value.headers  # waiting does not help


async def test_settle_after_midnight_charges_the_admitting_day(backend: Callable[..., Admission]) -> None:
    clock = Clock(datetime(2026, 11, 4, 23, 59, 59, tzinfo=UTC))
    adm = backend(clock)
    subject = key("1", "daily")
    ticket = await adm.admit([subject], tokens=1, reserve_usd=D("0.5"))
    clock.now = datetime(2026, 11, 5, 0, 0, 5, tzinfo=UTC)
    await adm.settle(ticket, actual_usd=D("0.4"), actual_tokens=1)
    assert (await adm.budget_state(subject)).spent_usd == 0
    assert (await adm.budget_state(subject, now=datetime(2026, 11, 4, 12, tzinfo=UTC))).spent_usd == D("0.4")


async def test_rpm_limit_answers_429_with_retry_after_and_headers(backend: Callable[..., Admission]) -> None:
    clock = Clock(T0)  # 15 s into a minute
    adm = backend(clock)
    subject = key(rpm=3, tpm=1000)
    tickets = [await adm.admit([subject], tokens=100, reserve_usd=D(0)) for _ in range(3)]
    headers = tickets[-1].headers()
    assert headers["x-ratelimit-limit-requests"] == "3" and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-tokens"] == "1000" and headers["x-ratelimit-remaining-tokens"] == "700"
    assert headers["x-ratelimit-reset-requests"] == "45s" and headers["x-ratelimit-reset-tokens"] == "45s"
    with pytest.raises(RateLimited) as caught:
        await adm.admit([subject], tokens=1, reserve_usd=D(0))
    err = caught.value
    assert not isinstance(err, BudgetExceeded)
    assert (err.status, err.code) == (429, "rate_limit_exceeded")
    assert err.headers["retry-after"] == "45" and err.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now = T0 + timedelta(seconds=45)  # the next fixed window
    assert (await adm.admit([subject], tokens=1, reserve_usd=D(0))).limits.remaining_requests == 2


async def test_tpm_counts_estimates_then_settles_to_actual_tokens(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key(tpm=100)
    first = await adm.admit([subject], tokens=60, reserve_usd=D(0))
    with pytest.raises(RateLimited, match="tokens per minute") as caught:
        await adm.admit([subject], tokens=60, reserve_usd=D(0))
    assert caught.value.headers["retry-after"] == "45"
    await adm.settle(first, actual_tokens=20, actual_usd=D(0))  # 60 estimated, 20 used
    second = await adm.admit([subject], tokens=60, reserve_usd=D(0))
    assert second.limits.remaining_tokens == 20
    with pytest.raises(RateLimited, match="Request too large"):
        await adm.admit([subject], tokens=101, reserve_usd=D(0))


async def test_budget_is_checked_before_rate_limits(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("0.01", rpm=1)
    await adm.admit([subject], tokens=1, reserve_usd=D("0.01"))
    with pytest.raises(BudgetExceeded):
        await adm.admit([subject], tokens=1, reserve_usd=D("0.01"))


async def test_unsettled_reservations_expire(backend: Callable[..., Admission]) -> None:
    clock = Clock(T0)
    adm = backend(clock, reservation_ttl_s=60)
    subject = key("1")
    await adm.admit([subject], tokens=1, reserve_usd=D(1))  # its replica "crashes" and never settles
    with pytest.raises(BudgetExceeded):
        await adm.admit([subject], tokens=1, reserve_usd=D("0.5"))
    clock.now = T0 + timedelta(seconds=61)
    assert (await adm.budget_state(subject)).reserved_usd == 0
    await adm.admit([subject], tokens=1, reserve_usd=D("0.5"))


async def test_seed_spend_only_fills_an_absent_counter(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("10", "monthly")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    assert await adm.seed_spend(subject, start, D("9.5"))
    assert not await adm.seed_spend(subject, start, D("1"))
    assert (await adm.budget_state(subject)).spent_usd == D("9.5")
    with pytest.raises(BudgetExceeded):
        await adm.admit([subject], tokens=1, reserve_usd=D("0.51"))
    await adm.admit([subject], tokens=1, reserve_usd=D("0.5"))


# ---------------------------------------------------------------- output claims (max_tokens the gateway sets)


async def test_output_claim_grants_what_the_budget_affords(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("0.010")  # $0.01
    # prompt $0.004 fixed, then $0.000002 a token (2 $/Mtok): $0.006 left buys 3,000 tokens, not 4,096
    ticket = await adm.admit(
        [subject], tokens=50, reserve_usd=D("0.004"), output=OutputClaim(unit_usd=D("0.000002"), max_units=4096)
    )
    assert ticket.output_units == 3000
    assert ticket.reserve_usd == D("0.010")
    assert ticket.tokens == 50 + 3000
    assert ticket.headers()["x-switchyard-budget-remaining-usd"] == "0.01"  # before this request
    assert ticket.headers(D("0.010"))["x-switchyard-budget-remaining-usd"] == "0"  # once it cost all it reserved
    state = await adm.budget_state(subject)
    assert state.reserved_usd == D("0.010")
    # nothing is left: the next claim cannot get even one token
    with pytest.raises(BudgetExceeded):
        await adm.admit([subject], tokens=1, reserve_usd=D(0), output=OutputClaim(unit_usd=D("0.000002"), max_units=10))


async def test_output_claim_is_capped_by_max_units_when_the_budget_is_ample(backend: Callable[..., Admission]) -> None:
    adm = backend()
    ticket = await adm.admit(
        [key("100")], tokens=10, reserve_usd=D("0.001"), output=OutputClaim(unit_usd=D("0.00001"), max_units=256)
    )
    assert ticket.output_units == 256
    assert ticket.reserve_usd == D("0.001") + 256 * D("0.00001")
    assert ticket.headers(ticket.reserve_usd)["x-switchyard-budget-remaining-usd"] == str(D(100) - ticket.reserve_usd)


async def test_output_claim_below_its_minimum_is_refused_and_changes_nothing(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("0.01")
    with pytest.raises(BudgetExceeded) as caught:
        # the caller fixed max_tokens=1000 (min = max): $0.02 does not fit in $0.01
        await adm.admit(
            [subject], tokens=5, reserve_usd=D(0), output=OutputClaim(unit_usd=D("0.00002"), max_units=1000, min_units=1000)
        )
    assert "0.02" in caught.value.message
    assert (await adm.budget_state(subject)).reserved_usd == 0


async def test_output_claim_prices_below_a_nano_dollar_a_token_stay_exact(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key("0.000003")  # 3,000 nano-dollars
    # $0.0002 per million tokens = 0.2 nano-dollars a token: 3,000 nanos buy 15,000 tokens
    ticket = await adm.admit(
        [subject], tokens=0, reserve_usd=D(0), output=OutputClaim(unit_usd=D("0.0000000002"), max_units=50_000)
    )
    assert ticket.output_units == 15_000
    assert ticket.reserve_usd == D("0.000003")


async def test_granted_output_counts_towards_tpm(backend: Callable[..., Admission]) -> None:
    adm = backend()
    subject = key(tpm=1000)
    first = await adm.admit(
        [subject], tokens=100, reserve_usd=D(0), output=OutputClaim(unit_usd=D(0), max_units=400, tokens_per_unit=2)
    )
    assert first.tokens == 900
    with pytest.raises(RateLimited):
        await adm.admit(
            [subject], tokens=50, reserve_usd=D(0), output=OutputClaim(unit_usd=D(0), max_units=40, tokens_per_unit=2)
        )


async def test_tickets_carry_the_budget_left_to_the_tightest_subject(backend: Callable[..., Admission]) -> None:
    adm = backend()
    tight, loose = key("1", "daily"), Subject("project", "p", D("10"), "monthly")
    first = await adm.admit([tight, loose], tokens=10, reserve_usd=D("0.4"))
    assert first.budget_remaining_nanos == 1_000_000_000  # before this request's own reservation
    assert first.headers(D("0.25"))["x-switchyard-budget-remaining-usd"] == "0.75"
    second = await adm.admit([tight, loose], tokens=10, reserve_usd=D("0.3"))
    assert second.headers()["x-switchyard-budget-remaining-usd"] == "0.6"  # the first request's hold still counts
    await adm.settle(first, actual_usd=D("0.25"), actual_tokens=10)
    third = await adm.admit([tight, loose], tokens=10, reserve_usd=D("0.1"))
    assert third.headers()["x-switchyard-budget-remaining-usd"] == "0.45"  # 1 - 0.25 spent - 0.3 held
    with pytest.raises(BudgetExceeded) as refused:
        await adm.admit([tight, loose], tokens=10, reserve_usd=D("0.5"))
    assert refused.value.headers["x-switchyard-budget-remaining-usd"] == "0.35"
    unbudgeted = await adm.admit([key(None, rpm=5)], tokens=1, reserve_usd=D(0))
    assert unbudgeted.budget_remaining_nanos is None and "x-switchyard-budget-remaining-usd" not in unbudgeted.headers()

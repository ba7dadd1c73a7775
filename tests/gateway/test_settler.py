"""Deferred, batched settlement: every ticket settled once, in few round trips, through failures."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from gateway.admission import MemoryAdmission, Subject
from gateway.settler import Settler


class CountingAdmission(MemoryAdmission):
    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.calls = 0
        self.fail_first = fail_first

    async def settle_many(self, settlements):  # type: ignore[override]
        self.calls += 1
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("redis went away")
        return await super().settle_many(settlements)


SUBJECT = Subject("key", "k", Decimal("10"), "total", None, None)


async def _admit(admission: MemoryAdmission, n: int):
    return [await admission.admit([SUBJECT], tokens=1, reserve_usd=Decimal("0.5")) for _ in range(n)]


async def test_settles_every_ticket_in_batches_and_drains_on_close() -> None:
    admission = CountingAdmission()
    tickets = await _admit(admission, 12)
    settler = Settler(admission)
    settler.start()
    for ticket in tickets:
        settler.submit(ticket, Decimal("0.25"), 1)
    await settler.aclose()
    state = await admission.budget_state(SUBJECT)
    assert state.spent_usd == Decimal("3.00") and state.reserved_usd == 0
    assert settler.settled == 12 and admission.calls < 12


async def test_a_failed_batch_is_retried_not_lost() -> None:
    admission = CountingAdmission(fail_first=2)
    tickets = await _admit(admission, 3)
    settler = Settler(admission, retry_s=0.01)
    settler.start()
    for ticket in tickets:
        settler.submit(ticket, Decimal("0.1"), 1)
    for _ in range(100):
        if settler.settled == 3:
            break
        await asyncio.sleep(0.01)
    await settler.aclose()
    assert settler.failures == 2 and settler.settled == 3
    assert (await admission.budget_state(SUBJECT)).spent_usd == Decimal("0.3")


async def test_unsettled_reservation_still_counts_until_settled() -> None:
    admission = MemoryAdmission()
    (ticket,) = await _admit(admission, 1)
    assert (await admission.budget_state(SUBJECT)).reserved_usd == Decimal("0.5")
    settler = Settler(admission)
    settler.start()
    settler.submit(ticket, Decimal("0.1"), 1)
    await settler.aclose()
    state = await admission.budget_state(SUBJECT)
    assert (state.spent_usd, state.reserved_usd) == (Decimal("0.1"), 0)


class PoisonedAdmission(MemoryAdmission):
    """Fails any settlement that contains one particular ticket, as a Lua error would."""

    def __init__(self) -> None:
        super().__init__()
        self.poisoned: str | None = None

    async def settle_many(self, settlements):  # type: ignore[override]
        if any(s.ticket.id == self.poisoned for s in settlements):
            raise ValueError("ERR value is not an integer or out of range")
        return await super().settle_many(settlements)


async def test_a_poisoned_ticket_is_dropped_after_bounded_retries_and_the_rest_settle() -> None:
    admission = PoisonedAdmission()
    tickets = await _admit(admission, 5)
    admission.poisoned = tickets[2].id
    settler = Settler(admission, retry_s=0.001, max_attempts=3)
    settler.start()
    for ticket in tickets:
        settler.submit(ticket, Decimal("0.25"), 1)
    for _ in range(200):
        if settler.settled + settler.dropped == 5:
            break
        await asyncio.sleep(0.005)
    await settler.aclose()
    assert (settler.settled, settler.dropped) == (4, 1)
    state = await admission.budget_state(SUBJECT)
    assert state.spent_usd == Decimal("1.00")  # four settled at 0.25
    assert state.reserved_usd == Decimal("0.5")  # the poisoned one's hold, until it expires
    # later tickets are not blocked behind it
    late = await _admit(admission, 1)
    settler2 = Settler(admission)
    settler2.start()
    settler2.submit(late[0], Decimal("0.1"), 1)
    await settler2.aclose()
    assert settler2.settled == 1


async def test_negative_amounts_are_never_settled() -> None:
    admission = MemoryAdmission()
    (ticket,) = await _admit(admission, 1)
    settler = Settler(admission)
    settler.start()
    settler.submit(ticket, Decimal("-3"), -7)
    await settler.aclose()
    state = await admission.budget_state(SUBJECT)
    assert state.spent_usd == 0 and state.reserved_usd == 0

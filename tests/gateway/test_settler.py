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

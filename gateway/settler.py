"""Settles admission tickets off the request path, many per Redis round trip.

A response does not wait for its settlement: the ticket goes on a queue that a supervised task
drains in pipelined batches. Until a ticket is settled its worst-case reservation keeps
counting against the budget, so deferring makes admission stricter, never looser. On shutdown
the queue is drained; a ticket that cannot be settled (Redis gone) expires with its
reservation's TTL, and the ledger row still records the spend.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from gateway.admission import Admission, Settlement, Ticket

log = logging.getLogger("switchyard.settler")


class Settler:
    """A queue of settlements and the one task that sends them."""

    def __init__(self, admission: Admission, *, max_batch: int = 256, retry_s: float = 0.2) -> None:
        self.admission = admission
        self.max_batch = max_batch
        self.retry_s = retry_s
        self._queue: list[Settlement] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.settled = 0
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="admission-settler")

    def submit(self, ticket: Ticket, actual_usd: Decimal, actual_tokens: int) -> None:
        self._queue.append(Settlement(ticket, actual_usd, actual_tokens))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        while True:
            try:
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = self._queue[: self.max_batch]
                await self.admission.settle_many(batch)
                del self._queue[: len(batch)]
                self.settled += len(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the task alive; the batch is retried
                self.failures += 1
                log.exception("settling %d admission tickets failed; retrying", min(len(self._queue), self.max_batch))
                if self._closing:
                    return
                await asyncio.sleep(self.retry_s)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Drain what is queued (bounded by ``timeout_s``), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            log.error("%d admission tickets left unsettled at shutdown; their holds expire on their own", len(self._queue))
            self._task.cancel()

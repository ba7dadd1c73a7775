"""Settles admission tickets off the request path, many per Redis round trip.

A response does not wait for its settlement: the ticket goes on a queue that a supervised task
drains in pipelined batches. Until a ticket is settled its worst-case reservation keeps
counting against the budget, so deferring makes admission stricter, never looser.

Failures are told apart. The store being unreachable (connection errors, timeouts) is waited
out: the batch is retried until it goes through, in order, however long that takes. Any other
failure may be one poisoned ticket: the batch is then settled one ticket at a time, and a ticket
that still fails after ``max_attempts`` is dropped, logged and counted
(``switchyard_settlements_dropped_total``) instead of blocking every ticket behind it; its hold
expires with the reservation's TTL, and the ledger row still records the spend. On shutdown the
queue is drained for a bounded time.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.admission import Admission, Settlement, Ticket

log = logging.getLogger("switchyard.settler")
TRANSIENT = (ConnectionError, TimeoutError, OSError, RedisConnectionError, RedisTimeoutError)


class Settler:
    """A queue of settlements and the one task that sends them."""

    def __init__(self, admission: Admission, *, max_batch: int = 256, retry_s: float = 0.2, max_attempts: int = 3) -> None:
        self.admission = admission
        self.max_batch = max_batch
        self.retry_s = retry_s
        self.max_attempts = max_attempts
        self._queue: list[Settlement] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.settled = 0
        self.failures = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="admission-settler")

    def submit(self, ticket: Ticket, actual_usd: Decimal, actual_tokens: int) -> None:
        if actual_usd < 0 or actual_tokens < 0:  # never reaches a counter: spend only ever grows
            log.error(
                "ticket %s: refusing to settle a negative amount (%s USD, %d tokens); settling 0",
                ticket.id,
                actual_usd,
                actual_tokens,
            )
            actual_usd, actual_tokens = max(actual_usd, Decimal(0)), max(actual_tokens, 0)
        self._queue.append(Settlement(ticket, actual_usd, actual_tokens))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._queue[: self.max_batch]
            try:
                await self.admission.settle_many(batch)
            except asyncio.CancelledError:
                raise
            except TRANSIENT as exc:
                self.failures += 1
                log.warning("settling %d admission tickets failed (%s); retrying", len(batch), exc)
                if self._closing:
                    return
                await asyncio.sleep(self.retry_s)
                continue
            except Exception:
                self.failures += 1
                log.exception("settling a batch of %d admission tickets failed; settling them one at a time", len(batch))
                await self._one_by_one(batch)
            else:
                self.settled += len(batch)
            del self._queue[: len(batch)]

    async def _one_by_one(self, batch: list[Settlement]) -> None:
        for settlement in batch:
            for attempt in range(1, self.max_attempts + 1):
                try:
                    await self.admission.settle_many([settlement])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a transient fault gets retries too, bounded
                    if attempt == self.max_attempts:
                        self.dropped += 1
                        log.error(
                            "dropping admission ticket %s after %d failed settlements (%s: %s); its hold expires on its own",
                            settlement.ticket.id,
                            attempt,
                            type(exc).__name__,
                            exc,
                        )
                    else:
                        await asyncio.sleep(self.retry_s)
                else:
                    self.settled += 1
                    break

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Drain what is queued (bounded by ``timeout_s``), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.error("%d admission tickets left unsettled at shutdown; their holds expire on their own", len(self._queue))
            self._task.cancel()

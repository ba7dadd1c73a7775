"""The batched ledger writer: request handlers submit rows, one supervised task writes them.

``submit(row)`` writes the row to this process's write-ahead journal (one ``os.write`` of one
JSON line, no fsync; see :mod:`gateway.ledger.journal`) and appends it to an in-memory queue;
from then on it survives the process being killed. The writer task inserts the queue in
batches (every ``batch_size`` rows or ``flush_interval_ms``, or at once when someone awaits
durability) with insert-or-ignore on the row id, fsyncs the journal at most once per interval
while rows wait, and truncates or rotates it away once its rows are committed. When an insert
fails because the database is unreachable, the batch is spooled: it is already in the journal,
so it is fsync'd there and its segment kept (marked dirty) rather than truncated, and from then
on every new batch is spooled behind it, so order is kept. The task retries with backoff; once
the database answers, it replays the dirty segments in order, deleting each only after its rows
are committed, then goes back to direct inserts. Segments left by a process that died
(``kill -9``) are claimed and replayed the same way, at start and every ``orphan_scan_s``.
Rows the database refuses as invalid are kept in ``rejected.jsonl`` and logged, never retried
forever and never dropped silently.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway.db.engine import Database
from gateway.db.models import USAGE_COLUMNS, UsageRecordCreate
from gateway.ledger.journal import Journal
from gateway.ledger.sink import Sink
from gateway.ledger.spool import Claim, Spool, encode_row

log = logging.getLogger(__name__)

_COLUMNS = frozenset(USAGE_COLUMNS)


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Counters for ``/metrics``."""

    rows_submitted: int
    rows_written: int  # inserted straight from the queue
    rows_spooled: int  # handed to the journal (fsync'd, kept for replay) instead of the database
    rows_replayed: int  # re-inserted from journal segments, own or a dead process's (insert-or-ignore)
    rows_rejected: int
    queue_depth: int
    spool_segments: int  # own segments holding spooled rows
    database_available: bool
    task_restarts: int
    journal_segments: int = 0  # own segment files, the active one included
    journal_errors: int = 0  # rows that could not be journaled at submit (kept in memory until written)


def normalize(record: Any) -> dict[str, Any]:
    """A ledger row as a validated dict of column values (an ``id`` and ``ts`` are filled in)."""
    if type(record) is dict and record.keys() == _COLUMNS and _trusted_types(record):
        return record  # the request path builds complete, typed rows: skip pydantic (~10 µs a row)
    if isinstance(record, BaseModel):
        data = record.model_dump()
    elif dataclasses.is_dataclass(record) and not isinstance(record, type):
        data = dataclasses.asdict(record)
    elif isinstance(record, Mapping):
        data = dict(record)
    else:
        raise TypeError(f"a ledger row must be a mapping, dataclass or model, not {type(record).__name__}")
    unknown = set(data) - _COLUMNS
    if unknown:
        raise ValueError(f"unknown ledger fields: {', '.join(sorted(unknown))}")
    return UsageRecordCreate.model_validate({k: v for k, v in data.items() if v is not None}).model_dump()


_MAX_BATCH = 5000
_INT_COLUMNS = ("prompt_tokens", "cached_tokens", "completion_tokens", "status", "fallbacks")


def _trusted_types(row: dict[str, Any]) -> bool:
    return (
        isinstance(row["id"], str)
        and isinstance(row["ts"], datetime)
        and row["ts"].tzinfo is not None
        and isinstance(row["cost_usd"], Decimal)
        and all(type(row[c]) is int for c in _INT_COLUMNS)
    )


class LedgerWriter:
    """Writes usage rows off the request path; never loses one (spools while the database is down)."""

    def __init__(
        self,
        db: Database,
        batch_size: int = 200,
        flush_interval_ms: int = 200,
        spool_dir: str | Path = "./spool",
        *,
        insert_timeout_s: float = 15.0,
        retry_min_s: float = 0.25,
        retry_max_s: float = 10.0,
        orphan_scan_s: float = 30.0,
        max_segment_bytes: int = 4 * 1024 * 1024,
        truncate_max_bytes: int = 256 * 1024,
    ) -> None:
        self._batch_size = batch_size
        self._interval_s = flush_interval_ms / 1000
        self._spool = Spool(spool_dir)
        self._sink = Sink(db, self._spool, insert_timeout_s=insert_timeout_s, retry_min_s=retry_min_s, retry_max_s=retry_max_s)
        self._journal = Journal(self._spool, max_segment_bytes)
        self._truncate_max_bytes = truncate_max_bytes  # a caught-up segment bigger than this is rotated, not truncated
        self._unjournaled: set[int] = set()  # numbers of queued rows whose journal write failed
        self._next_sync = 0.0
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._orphan_scan_s = orphan_scan_s
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._oldest = 0.0  # monotonic time the oldest queued row arrived
        self._wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (row sequence number, future)
        self._submitted = 0
        self._done = 0  # rows now in the database or spooled; rows are numbered 1, 2, ... in submit order
        self._written = self._spooled = self._replayed = self._rejected = 0
        self._next_orphan_scan = 0.0
        self._task: asyncio.Task[None] | None = None
        self._restarts = 0
        self._closing = False
        self._closed = False

    # ------------------------------------------------------------ public API

    async def start(self) -> None:
        """Take the spool lock and start the writer task (which first replays any dead writer's spool)."""
        if self._task is not None:
            return
        await asyncio.to_thread(self._spool.open)
        for number, row in enumerate(self._queue, self._done + 1):  # rows submitted before start()
            if self._journal.append(encode_row(row), number):
                self._unjournaled.discard(number)
        self._spawn()

    def submit(self, record: Any) -> str:
        """Journal and queue one row; returns its id. Never touches the database; one ``write`` syscall.

        Once it returns, the row reaches the database even if this process is killed right
        after (the next writer on the spool directory replays the journal).
        """
        if self._closing:
            raise RuntimeError("the ledger writer is closed; close it only after the server has drained")
        row = normalize(record)
        line = encode_row(row)
        self._submitted += 1
        if not self._journal.append(line, self._submitted):  # it only fails with an OSError, which it logs
            self._unjournaled.add(self._submitted)  # kept in memory; journaled late if it must be spooled
        if not self._queue:
            self._oldest = time.monotonic()
        self._queue.append(row)
        if len(self._queue) == 1 or len(self._queue) >= self._batch_size:
            self._wake.set()
        return str(row["id"])

    async def write(self, record: Any) -> str:
        """Queue one row and wait until it is committed or fsync'd to the spool."""
        row_id = self.submit(record)
        await self._wait_done(self._submitted)
        return row_id

    async def flush(self) -> None:
        """Wait until every row submitted so far is committed or fsync'd to the spool."""
        await self._wait_done(self._submitted)

    async def aclose(self, timeout_s: float | None = 30.0) -> None:
        """Write out the queue (to the database, or the spool if it is down), then release the spool.

        Journal segments whose rows are all committed are deleted; the others stay for the next
        writer on the directory to replay.
        """
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except TimeoutError:
                log.error("ledger: flush did not finish in %ss; spooling %d queued rows", timeout_s, len(self._queue))
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            except Exception:
                log.exception("ledger: the writer task failed while closing; spooling %d queued rows", len(self._queue))
        if self._queue:  # the task was cancelled, failed or never started
            if not self._spool.is_open:
                await asyncio.to_thread(self._spool.open)
            n = len(self._queue)
            await self._spool_head(n)
            self._pop(n)
        self._resolve_waiters()
        await self._journal.close(self._done)
        self._spool.close()
        self._closed = True

    def on_commit(self, listener: Any) -> None:
        """Call ``listener(rows)`` with the rows each committed batch inserted (never twice for one row)."""
        self._sink.on_commit = listener

    @property
    def stats(self) -> LedgerStats:
        segments = self._journal.segments
        return LedgerStats(
            rows_submitted=self._submitted,
            rows_written=self._written,
            rows_spooled=self._spooled,
            rows_replayed=self._replayed,
            rows_rejected=self._rejected + self._sink.refused,
            queue_depth=len(self._queue),
            spool_segments=sum(seg.dirty for seg in segments),
            database_available=self._sink.available,
            task_restarts=self._restarts,
            journal_segments=len(segments),
            journal_errors=self._journal.errors,
        )

    # ------------------------------------------------------------ the supervised task

    def _spawn(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")
        self._task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        log.error("ledger writer task died; restarting it", exc_info=exc)
        self._restarts += 1
        # Back off so a failure that repeats every time cannot become a tight restart loop.
        delay = min(self._retry_max_s, self._retry_min_s * 2 ** min(self._restarts, 10))
        asyncio.get_running_loop().call_later(delay, self._respawn)

    def _respawn(self) -> None:
        if not self._closing:
            self._spawn()

    async def _run(self) -> None:
        while True:
            try:
                await self._wait_for_work()
                await self._step()
            except Exception:
                log.exception("ledger writer step failed; retrying")
                await asyncio.sleep(self._retry_min_s)
            if self._closing and not self._queue:
                return

    async def _wait_for_work(self) -> None:
        now = time.monotonic()
        if self._closing or self._waiters or len(self._queue) >= self._batch_size:
            return
        deadlines = [self._orphan_scan_due()]
        if self._queue:
            deadlines.append(self._oldest + self._interval_s)
        if self._journal.has_dirty():
            deadlines.append(self._sink.retry_at)
        timeout = min(deadlines) - now
        if timeout <= 0:
            return
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _step(self) -> None:
        now = time.monotonic()
        if now >= self._orphan_scan_due() and not self._closing:
            self._next_orphan_scan = now + self._orphan_scan_s
            for claim in await asyncio.to_thread(self._spool.claim_orphans):
                await self._replay_claim(claim)
        if self._journal.has_dirty() and time.monotonic() >= self._sink.retry_at and not self._closing:
            await self._replay_own()
        await self._sync_journal()
        while self._queue and (
            self._closing
            or self._waiters
            or len(self._queue) >= self._batch_size
            or time.monotonic() >= self._oldest + self._interval_s
        ):
            # A backlog (an event loop saturated by requests) is drained in larger batches: a batch
            # costs a few loop turns whatever its size, so this is what lets the writer catch up.
            n = min(max(self._batch_size, len(self._queue) // 4), _MAX_BATCH, len(self._queue))
            batch = list(itertools.islice(self._queue, n))  # popped only once durable
            if self._journal.has_dirty() or self._sink.waiting:
                await self._spool_head(n)
            elif await self._sink.insert(batch):
                self._written += n
            else:
                await self._spool_head(n)
            self._pop(n)
        await self._tidy_journal()

    def _pop(self, n: int) -> None:
        """The first ``n`` queued rows are committed or spooled."""
        for _ in range(n):
            self._queue.popleft()
        if self._unjournaled:
            self._unjournaled.difference_update(range(self._done + 1, self._done + n + 1))
        if self._queue:
            self._oldest = time.monotonic()
        self._done += n
        self._resolve_waiters()

    def _orphan_scan_due(self) -> float:
        """When to look for dead writers' spools next (not before the next retry while the database is down)."""
        return self._next_orphan_scan if self._sink.available else max(self._next_orphan_scan, self._sink.retry_at)

    # ------------------------------------------------------------ the journal

    async def _spool_head(self, n: int) -> None:
        """Spool the first ``n`` queued rows: they are in the journal already, make them durable there."""
        first = self._done + 1
        late = []
        if self._unjournaled:  # rows whose write failed at submit: journal them now (or raise and keep them)
            late = [
                (number, encode_row(row))
                for number, row in enumerate(itertools.islice(self._queue, n), first)
                if number in self._unjournaled
            ]
        await self._journal.spool(first, first + n - 1, late)
        self._spooled += n

    async def _sync_journal(self) -> None:
        """fsync rows waiting in the journal, at most once per flush interval (machine-crash durability)."""
        if not self._journal.needs_sync or self._done == self._submitted or time.monotonic() < self._next_sync:
            return
        self._next_sync = time.monotonic() + self._interval_s
        try:
            await self._journal.sync()
        except OSError as exc:
            log.error("ledger journal: fsync failed: %s", exc)

    async def _tidy_journal(self) -> None:
        """Empty or rotate the active segment when its rows are committed or it is too big; drop committed ones."""
        journal, seg = self._journal, self._journal.active
        caught_up = self._done == self._submitted
        try:
            if seg is None:
                if journal.open_failed:
                    await journal.rotate(self._done)
            elif seg.size >= journal.max_segment_bytes or (
                caught_up and seg.rows and not seg.dirty and seg.size > self._truncate_max_bytes
            ):
                await journal.rotate(self._done)
            elif caught_up and seg.rows and not seg.dirty:
                journal.truncate()
            await journal.tidy(self._done)
        except OSError as exc:
            log.error("ledger journal: %s", exc)

    async def _replay_own(self) -> None:
        """Replay dirty segments oldest first; stop at the first one the database does not take."""
        journal = self._journal
        while (seg := journal.first_dirty()) is not None:
            if seg is journal.active:
                await journal.rotate(self._done)  # new rows go to a fresh segment
            ahead = seg.last - self._done  # its rows still queued: in its file already, so spool them
            if ahead > 0:
                await self._spool_head(ahead)
                self._pop(ahead)
            if not await self._replay_segment(seg.path, seg.committed_head):
                return
            await journal.remove(seg)

    async def _replay_claim(self, claim: Claim) -> None:
        log.warning("ledger: replaying %d spool segments left by %s", len(claim.segments), claim.owner)
        try:
            for path in claim.segments:
                if not await self._replay_segment(path):
                    return
                await asyncio.to_thread(self._spool.remove, path)
        finally:
            await asyncio.to_thread(self._spool.release, claim)

    async def _replay_segment(self, path: Path, skip: int = 0) -> bool:
        """Insert-or-ignore a segment's rows after its first ``skip`` lines; False if the database is down."""
        rows, broken = [], []
        for raw in await asyncio.to_thread(Spool.read, path, skip):
            try:
                rows.append(normalize(raw))
            except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
                broken.append(raw)
        if broken:
            log.error("ledger: %d unreadable rows in %s kept in rejected.jsonl", len(broken), path.name)
            await asyncio.to_thread(self._spool.reject, broken)
            self._rejected += len(broken)
        for start in range(0, len(rows), self._batch_size):
            if not await self._sink.insert(rows[start : start + self._batch_size]):
                return False
        self._replayed += len(rows)
        log.info("ledger: replayed %d rows from %s", len(rows), path.name)
        return True

    # ------------------------------------------------------------ durability waiters

    async def _wait_done(self, target: int) -> None:
        if self._done >= target:
            return
        if self._task is None and not self._closed:
            raise RuntimeError("the ledger writer was not started")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._wake.set()
        await future

    def _resolve_waiters(self) -> None:
        pending = []
        for target, future in self._waiters:
            if future.done():
                continue
            if self._done >= target:
                future.set_result(None)
            else:
                pending.append((target, future))
        self._waiters = pending

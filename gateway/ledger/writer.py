"""The batched ledger writer: request handlers submit rows, one supervised task writes them.

``submit(row)`` only appends to an in-memory queue. The writer task inserts the queue in
batches (every ``batch_size`` rows or ``flush_interval_ms``, or at once when someone awaits
durability) with insert-or-ignore on the row id. When an insert fails because the database is
unreachable, the batch goes to the spool (see :mod:`gateway.ledger.spool`) and from then on
every new batch is appended behind it, so order is kept. The task retries with backoff; once
the database answers, it replays the spool segment by segment, deleting each only after its
rows are committed, then goes back to direct inserts. Segments left by a process that died
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
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from gateway.db.engine import Database
from gateway.db.models import USAGE_COLUMNS, UsageRecord, UsageRecordCreate
from gateway.ledger.spool import Claim, Spool

log = logging.getLogger(__name__)

_COLUMNS = frozenset(USAGE_COLUMNS)


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Counters for ``/metrics``."""

    rows_submitted: int
    rows_written: int  # inserted straight from the queue
    rows_spooled: int
    rows_replayed: int  # inserted from the spool (own or a dead process's)
    rows_rejected: int
    queue_depth: int
    spool_segments: int
    database_available: bool
    task_restarts: int


def normalize(record: Any) -> dict[str, Any]:
    """A ledger row as a validated dict of column values (an ``id`` and ``ts`` are filled in)."""
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
    ) -> None:
        self._db = db
        self._batch_size = batch_size
        self._interval_s = flush_interval_ms / 1000
        self._spool = Spool(spool_dir)
        self._insert_timeout_s = insert_timeout_s
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._orphan_scan_s = orphan_scan_s
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._oldest = 0.0  # monotonic time the oldest queued row arrived
        self._wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (row sequence number, future)
        self._submitted = 0
        self._done = 0  # rows now in the database or in the spool
        self._written = self._spooled = self._replayed = self._rejected = 0
        self._db_ok = True
        self._retry_at = 0.0
        self._retry_s = retry_min_s
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
        self._spawn()

    def submit(self, record: Any) -> str:
        """Queue one row; returns its id. Never blocks, never touches the database."""
        if self._closing:
            raise RuntimeError("the ledger writer is closed; close it only after the server has drained")
        row = normalize(record)
        if not self._queue:
            self._oldest = time.monotonic()
        self._queue.append(row)
        self._submitted += 1
        if len(self._queue) == 1 or len(self._queue) >= self._batch_size:
            self._wake.set()
        return row["id"]

    async def write(self, record: Any) -> str:
        """Queue one row and wait until it is committed or fsync'd to the spool."""
        row_id = self.submit(record)
        await self._wait_done(self._submitted)
        return row_id

    async def flush(self) -> None:
        """Wait until every row submitted so far is committed or fsync'd to the spool."""
        await self._wait_done(self._submitted)

    async def aclose(self, timeout_s: float | None = 30.0) -> None:
        """Write out the queue (to the database, or the spool if it is down), then release the spool."""
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
            rows = list(self._queue)
            self._queue.clear()
            if not self._spool.is_open:
                await asyncio.to_thread(self._spool.open)
            await asyncio.to_thread(self._spool.append, rows)
            self._spooled += len(rows)
            self._done += len(rows)
        self._resolve_waiters()
        self._spool.close()
        self._closed = True

    @property
    def stats(self) -> LedgerStats:
        segments = len(self._spool.own_segments())
        return LedgerStats(
            rows_submitted=self._submitted, rows_written=self._written, rows_spooled=self._spooled,
            rows_replayed=self._replayed, rows_rejected=self._rejected, queue_depth=len(self._queue),
            spool_segments=segments, database_available=self._db_ok, task_restarts=self._restarts,
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
        self._spawn()

    async def _run(self) -> None:
        while True:
            await self._wait_for_work()
            try:
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
        if self._spool.has_own_segments():
            deadlines.append(self._retry_at)
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
        if self._spool.has_own_segments() and time.monotonic() >= self._retry_at and not self._closing:
            await self._replay_own()
        while self._queue and (
            self._closing or self._waiters or len(self._queue) >= self._batch_size
            or time.monotonic() >= self._oldest + self._interval_s
        ):
            n = min(self._batch_size, len(self._queue))
            batch = list(itertools.islice(self._queue, n))  # popped only once durable
            if self._spool.has_own_segments() or (not self._db_ok and time.monotonic() < self._retry_at):
                await self._to_spool(batch)
            elif await self._insert(batch):
                self._written += n
            else:
                await self._to_spool(batch)
            for _ in range(n):
                self._queue.popleft()
            if self._queue:
                self._oldest = time.monotonic()
            self._done += n
            self._resolve_waiters()

    def _orphan_scan_due(self) -> float:
        """When to look for dead writers' spools next (not before the next retry while the database is down)."""
        return self._next_orphan_scan if self._db_ok else max(self._next_orphan_scan, self._retry_at)

    # ------------------------------------------------------------ database and spool

    async def _insert(self, rows: list[dict[str, Any]]) -> bool:
        """Insert-or-ignore rows; False if the database is unreachable (nothing can be assumed written)."""
        insert = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
        stmt = insert(UsageRecord.__table__).on_conflict_do_nothing(index_elements=["id"])  # type: ignore[attr-defined]
        try:
            await self._execute(stmt, rows)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not await self._is_bad_data(exc):
                self._mark_down(exc)
                return False
            log.error("ledger: the database refused a batch (%s); inserting its rows one by one", exc)
            if not await self._insert_one_by_one(rows, stmt):
                return False
        self._mark_up()
        return True

    async def _execute(self, stmt: Any, rows: list[dict[str, Any]]) -> None:
        async with asyncio.timeout(self._insert_timeout_s):
            async with self._db.engine.begin() as conn:
                await conn.execute(stmt, rows)

    async def _is_bad_data(self, exc: BaseException) -> bool:
        """True when a statement failed on a reachable database for a reason other than the connection.

        Connection errors, timeouts and schema errors (e.g. migrations not run yet) count as an
        outage: the rows are spooled and retried. Anything else (a value out of range, a
        constraint) may be one bad row, which must not block the rows behind it.
        """
        if isinstance(exc, TimeoutError | OSError | sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.ProgrammingError):
            return False
        if not isinstance(exc, sa_exc.DBAPIError) or exc.connection_invalidated:
            return False
        return await self._db.ping()

    async def _insert_one_by_one(self, rows: list[dict[str, Any]], stmt: Any) -> bool:
        refused = []
        for row in rows:
            try:
                await self._execute(stmt, [row])
            except Exception as exc:  # noqa: BLE001 - classified below
                if not await self._is_bad_data(exc):
                    self._mark_down(exc)  # the caller spools the batch; rows already in are ignored on replay
                    return False
                log.error("ledger: row %s refused by the database: %s", row.get("id"), exc)
                refused.append(row)
        if refused:
            await asyncio.to_thread(self._spool.reject, refused)
            self._rejected += len(refused)
            log.error("ledger: %d rows refused by the database kept in %s", len(refused), self._spool.dir / "rejected.jsonl")
        return True

    async def _to_spool(self, rows: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self._spool.append, rows)
        self._spooled += len(rows)

    async def _replay_own(self) -> None:
        segments = await asyncio.to_thread(self._spool.seal)
        for path in segments:
            if not await self._replay_segment(path):
                return

    async def _replay_claim(self, claim: Claim) -> None:
        log.warning("ledger: replaying %d spool segments left by %s", len(claim.segments), claim.owner)
        try:
            for path in claim.segments:
                if not await self._replay_segment(path):
                    return
        finally:
            await asyncio.to_thread(self._spool.release, claim)

    async def _replay_segment(self, path: Path) -> bool:
        rows, broken = [], []
        for raw in await asyncio.to_thread(Spool.read, path):
            try:
                rows.append(normalize(raw))
            except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
                broken.append(raw)
        if broken:
            log.error("ledger: %d unreadable rows in %s kept in rejected.jsonl", len(broken), path.name)
            await asyncio.to_thread(self._spool.reject, broken)
            self._rejected += len(broken)
        for start in range(0, len(rows), self._batch_size):
            if not await self._insert(rows[start : start + self._batch_size]):
                return False
        await asyncio.to_thread(self._spool.remove, path)
        self._replayed += len(rows)
        log.info("ledger: replayed %d rows from %s", len(rows), path.name)
        return True

    def _mark_down(self, exc: BaseException) -> None:
        if self._db_ok:
            log.error("ledger: database unreachable (%s: %s); spooling to %s", type(exc).__name__, exc, self._spool.dir)
        else:
            self._retry_s = min(self._retry_s * 2, self._retry_max_s)
        self._db_ok = False
        self._retry_at = time.monotonic() + self._retry_s

    def _mark_up(self) -> None:
        if not self._db_ok:
            log.warning("ledger: database reachable again")
        self._db_ok = True
        self._retry_at = 0.0
        self._retry_s = self._retry_min_s

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

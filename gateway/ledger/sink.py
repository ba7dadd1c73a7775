"""The ledger's database side: insert-or-ignore batches, and telling an outage from a bad row.

Each batch is one transaction that inserts the rows and adds the ones actually inserted to the
daily rollups (:mod:`gateway.ledger.rollups`), so a replayed row is never counted twice.

An insert that fails because the database is unreachable (connection errors, timeouts, schema
errors such as migrations not run yet) marks it down with exponential backoff: the writer
spools and retries at ``retry_at``. Any other failure on a reachable database may be one bad
row: the batch is retried row by row and the rows it refuses are kept in ``rejected.jsonl``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import exc as sa_exc

from gateway.db.engine import Database
from gateway.ledger.rollups import RollupWriter
from gateway.ledger.spool import Spool

log = logging.getLogger(__name__)


class Sink:
    """Writes rows to ``usage_records`` and tracks whether the database is reachable."""

    def __init__(self, db: Database, spool: Spool, *, insert_timeout_s: float, retry_min_s: float, retry_max_s: float) -> None:
        self._db = db
        self._spool = spool
        self._insert_timeout_s = insert_timeout_s
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._retry_s = retry_min_s
        self.available = True
        self.retry_at = 0.0  # monotonic time of the next attempt while the database is down
        self.refused = 0  # rows the database refused, kept in rejected.jsonl
        self._writer = RollupWriter(db.dialect)
        self.on_commit: Any = None  # called with the rows each committed batch inserted (budget alerts)

    @property
    def waiting(self) -> bool:
        """Down, and not yet time to try again."""
        return not self.available and time.monotonic() < self.retry_at

    async def insert(self, rows: list[dict[str, Any]]) -> bool:
        """Insert-or-ignore rows; False if the database is unreachable (nothing can be assumed written)."""
        try:
            await self._execute(rows)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not await self._is_bad_data(exc):
                self._mark_down(exc)
                return False
            log.error("ledger: the database refused a batch (%s); inserting its rows one by one", exc)
            if not await self._insert_one_by_one(rows):
                return False
        self._mark_up()
        return True

    async def _execute(self, rows: list[dict[str, Any]]) -> None:
        async with asyncio.timeout(self._insert_timeout_s):
            async with self._db.engine.begin() as conn:
                fresh = await self._writer.write_rows(conn, rows)
        if fresh and self.on_commit is not None:
            try:
                self.on_commit(fresh)
            except Exception:
                log.exception("ledger: the commit listener failed")

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

    async def _insert_one_by_one(self, rows: list[dict[str, Any]]) -> bool:
        refused = []
        for row in rows:
            try:
                await self._execute([row])
            except Exception as exc:  # noqa: BLE001 - classified below
                if not await self._is_bad_data(exc):
                    self._mark_down(exc)  # the caller spools the batch; rows already in are ignored on replay
                    return False
                log.error("ledger: row %s refused by the database: %s", row.get("id"), exc)
                refused.append(row)
        if refused:
            await asyncio.to_thread(self._spool.reject, refused)
            self.refused += len(refused)
            log.error("ledger: %d rows refused by the database kept in %s", len(refused), self._spool.dir / "rejected.jsonl")
        return True

    def _mark_down(self, exc: BaseException) -> None:
        if self.available:
            log.error("ledger: database unreachable (%s: %s); spooling to %s", type(exc).__name__, exc, self._spool.dir)
        else:
            self._retry_s = min(self._retry_s * 2, self._retry_max_s)
        self.available = False
        self.retry_at = time.monotonic() + self._retry_s

    def _mark_up(self) -> None:
        if not self.available:
            log.warning("ledger: database reachable again")
        self.available = True
        self.retry_at = 0.0
        self._retry_s = self._retry_min_s

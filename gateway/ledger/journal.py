"""The write-ahead journal: a ledger row is in a file before ``submit()`` returns.

``append()`` is the only part on the request path: one ``os.write`` of one JSON line to the
active segment, opened ``O_APPEND``. No fsync: the page cache outlives the process, so a row
survives ``kill -9`` the moment the write returns. Everything else runs in the writer task,
with the blocking calls in worker threads:

- ``sync()`` fsyncs the active segment (the writer does it at most once per flush interval
  while rows wait), so a machine crash loses at most about that much of what is not committed;
- ``spool()`` is what the spool used to be: rows the database cannot take are already here, so
  they are fsync'd and their segments marked dirty (renamed ``.jsonl``) instead of being copied.
  A dirty segment is kept until it is replayed;
- ``truncate()`` empties the active segment once every row in it is committed (the writer has
  caught up); ``rotate()`` starts a new one (past ``max_segment_bytes``, or to seal a dirty one
  for replay); ``tidy()`` deletes sealed segments whose rows are all committed.

Rows are numbered in submit order (1, 2, ...). A segment holds a contiguous range of them, one
per line, so the committed head of a dirty segment is skipped on replay. A segment that missed
a row (a failed write, a row journaled late) is marked inexact and replayed whole, which is
safe: replays insert-or-ignore by id. What this process leaves behind (a crash, or closing with
the database down) is claimed and replayed by the next writer on the directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.ledger.spool import SPOOL_SUFFIX, Spool, fsync_dir

log = logging.getLogger(__name__)

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_write = os.write  # the request path's one syscall (a module global so tests can make it fail)


@dataclass(eq=False, slots=True)
class Segment:
    """One journal file of this process and the rows in it."""

    seq: int
    path: Path
    fd: int = -1  # open while it is the active segment
    rows: int = 0
    first: int = 0  # number of its first row
    last: int = 0  # number of its last row
    size: int = 0
    dirty_from: int | None = None  # number of its first row handed to the spool instead of the database
    exact: bool = True  # line i holds row first + i
    torn: bool = False  # a write was cut short: the next one starts on a fresh line

    @property
    def dirty(self) -> bool:
        return self.dirty_from is not None

    def committed_by(self, done: int) -> bool:
        """Whether every row in it is in the database, given that rows 1..done are committed or spooled."""
        return self.dirty_from is None and (self.rows == 0 or self.last <= done)

    @property
    def committed_head(self) -> int:
        """How many lines at its head were committed before its first spooled row (skipped on replay)."""
        return self.dirty_from - self.first if self.exact and self.dirty_from is not None else 0


class Journal:
    """This writer's segments in the spool directory."""

    def __init__(self, spool: Spool, max_segment_bytes: int = 4 * 1024 * 1024) -> None:
        self._spool = spool
        self.max_segment_bytes = max_segment_bytes
        self.active: Segment | None = None
        self.sealed: list[Segment] = []  # no longer written to, fsync'd and closed, oldest first
        self.errors = 0  # rows that could not be journaled at submit (kept in memory instead)
        self.open_failed = False  # the first segment could not be created; the writer task retries
        self._seq = 0
        self._unsynced = False  # the active segment has bytes not fsync'd yet
        self._dir_unsynced = False  # a segment was created or renamed since the directory was fsync'd
        self._failing = False
        self._io = threading.Lock()  # worker-thread I/O on segment fds vs closing them

    # ------------------------------------------------------------ the request path

    def append(self, line: bytes, number: int) -> bool:
        """Write row ``number`` (one JSON line); False if it is not in the journal (the caller keeps it)."""
        seg = self.active
        if seg is None:
            seg = self._first_segment()
            if seg is None:
                return False
        data = b"\n" + line if seg.torn else line
        written = 0
        try:
            written = _write(seg.fd, data)
            while written < len(data):  # short writes to a file only happen when the disk is full
                written += _write(seg.fd, data[written:])
        except OSError as exc:
            self._write_failed(seg, written, exc)
            return False
        if seg.rows == 0:
            seg.first = number
        elif number != seg.last + 1:
            seg.exact = False
        if number > seg.last:
            seg.last = number
        seg.rows += 1
        seg.size += written
        seg.torn = False
        self._unsynced = True
        if self._failing:
            self._failing = False
            log.warning("ledger journal: writing to %s works again", seg.path.name)
        return True

    def _first_segment(self) -> Segment | None:
        """Open the first segment (once per process: later ones are opened by ``rotate()`` off the loop)."""
        if self.open_failed or not self._spool.is_open:
            return None
        self._seq += 1
        seg = Segment(self._seq, self._spool.segment_path(self._seq))
        try:
            seg.fd = os.open(seg.path, _FLAGS, 0o600)
        except OSError as exc:
            self.open_failed = True
            self.errors += 1
            log.error("ledger journal: cannot create %s (%s); rows stay in memory until committed", seg.path, exc)
            return None
        self.active = seg
        self._dir_unsynced = True
        return seg

    def _write_failed(self, seg: Segment, written: int, exc: OSError) -> None:
        self.errors += 1
        seg.exact = False
        seg.size += written
        seg.torn = seg.torn or written > 0
        if not self._failing:
            self._failing = True
            log.error("ledger journal: write to %s failed (%s); rows stay in memory until committed", seg.path.name, exc)

    # ------------------------------------------------------------ the writer task

    @property
    def segments(self) -> list[Segment]:
        return [*self.sealed, self.active] if self.active is not None else list(self.sealed)

    def first_dirty(self) -> Segment | None:
        return next((seg for seg in self.segments if seg.dirty), None)

    def has_dirty(self) -> bool:
        return self.first_dirty() is not None

    @property
    def needs_sync(self) -> bool:
        return self.active is not None and (self._unsynced or self._dir_unsynced)

    async def sync(self) -> None:
        """fsync the active segment (and the directory after a new segment), in a worker thread."""
        seg = self.active
        if seg is None:
            return
        data, directory = self._unsynced, self._dir_unsynced
        self._unsynced = self._dir_unsynced = False  # rows appended meanwhile set it again
        try:
            await asyncio.to_thread(self._fsync, seg if data else None, [], directory)
        except BaseException:
            self._unsynced |= data
            self._dir_unsynced |= directory
            raise

    async def spool(self, first: int, last: int, late: list[tuple[int, bytes]]) -> None:
        """Make rows ``first..last`` durable here instead of in the database.

        They are fsync'd and every segment holding one is marked dirty and renamed ``.jsonl``
        (it is kept until replayed). ``late`` are those rows that never reached a segment (a
        failed write at submit); they are written now, to the active segment.
        """
        if late:
            if self.active is None:
                await self.rotate(first - 1)
            seg = self.active
            assert seg is not None
            data = (b"\n" if seg.torn else b"") + b"".join(line for _, line in late)
            try:
                await asyncio.to_thread(self._write_late, seg, data)
            except BaseException:
                seg.exact, seg.torn = False, True  # part of it may be in the file: start afresh on a new line
                raise
            numbers = [n for n, _ in late]
            seg.first = min(numbers) if seg.rows == 0 else min(seg.first, *numbers)
            seg.last = max(seg.last, *numbers)
            seg.rows += len(late)
            seg.size += len(data)
            seg.exact, seg.torn, self._unsynced = False, False, True
        renames = []
        for seg in self.segments:
            if not seg.dirty and seg.rows and seg.first <= last and seg.last >= first:
                seg.dirty_from = max(first, seg.first)
                renames.append(seg)
        data_, directory = self._unsynced, self._dir_unsynced
        self._unsynced = self._dir_unsynced = False
        try:
            await asyncio.to_thread(self._fsync, self.active if data_ else None, renames, directory or bool(renames))
        except BaseException:
            self._unsynced |= data_
            self._dir_unsynced = True
            raise

    def truncate(self) -> None:
        """Empty the active segment, every row of which is committed.

        Runs on the event loop, like ``append()``, so no row can slip in between the check and
        the truncation. Meant for small segments (it frees their page cache); see ``rotate()``.
        """
        seg = self.active
        assert seg is not None and not seg.dirty
        os.ftruncate(seg.fd, 0)
        seg.rows = seg.first = seg.last = seg.size = 0
        seg.exact, seg.torn = True, False
        self._unsynced = False

    async def rotate(self, done: int) -> Segment | None:
        """Start a new active segment; the old one is sealed (fsync'd unless all committed, closed)."""
        self._seq += 1
        seg = Segment(self._seq, self._spool.segment_path(self._seq))
        seg.fd = await asyncio.to_thread(os.open, seg.path, _FLAGS, 0o600)
        old, self.active = self.active, seg
        unsynced, self._unsynced = self._unsynced, False
        self._dir_unsynced = True
        self.open_failed = False
        if old is not None:
            self.sealed.append(old)
            await asyncio.to_thread(self._seal, old, unsynced and not old.committed_by(done))
        return old

    async def remove(self, seg: Segment) -> None:
        """Delete a sealed segment whose rows are all in the database."""
        await asyncio.to_thread(self._spool.remove, seg.path)
        self.sealed.remove(seg)

    async def tidy(self, done: int) -> None:
        for seg in [s for s in self.sealed if s.committed_by(done)]:
            await self.remove(seg)

    async def close(self, done: int) -> None:
        """Seal the active segment; delete what is committed, leave the rest for the next writer."""
        seg, self.active = self.active, None
        if seg is not None:
            self.sealed.append(seg)
            await asyncio.to_thread(self._seal, seg, not seg.committed_by(done))
        await self.tidy(done)

    # ------------------------------------------------------------ worker threads

    def _fsync(self, seg: Segment | None, renames: list[Segment], directory: bool) -> None:
        with self._io:
            for dirty in renames:
                path = dirty.path.with_suffix(f".{SPOOL_SUFFIX}")
                os.rename(dirty.path, path)
                dirty.path = path
            if seg is not None and seg.fd >= 0:
                os.fsync(seg.fd)
            if directory:
                fsync_dir(self._spool.dir)

    def _write_late(self, seg: Segment, data: bytes) -> None:
        with self._io:
            view = memoryview(data)
            while view:
                view = view[os.write(seg.fd, view) :]

    def _seal(self, seg: Segment, fsync: bool) -> None:
        with self._io:
            fd, seg.fd = seg.fd, -1
            if fd < 0:
                return
            try:
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

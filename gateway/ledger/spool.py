"""The ledger's spool directory: who owns which journal segments, and claiming a dead writer's.

Layout of ``spool_dir``::

    <owner>.lock                   held (flock) by the live writer called <owner>
    <owner>.<seq:08d>.journal      its write-ahead journal segments (see :mod:`gateway.ledger.journal`)
    <owner>.<seq:08d>.jsonl        segments holding rows it handed to the spool (not committed)
    rejected.jsonl                 rows the database refused as invalid (kept, never dropped)

Both kinds of segment are JSON lines, one row per line, replayed in ``seq`` order with
insert-or-ignore on the row id. Each writer owns the segments carrying its name. A lock file
that can be flocked belongs to a process that is gone (flock dies with its holder, even on
``kill -9``), so any writer may claim and replay that owner's segments. A torn last line (a
machine crash mid-write, before its fsync) is skipped; it was never acknowledged as durable.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = "journal"  # a write-ahead segment: most of its rows are usually committed already
SPOOL_SUFFIX = "jsonl"  # a segment with rows that were handed to the spool instead of committed
_SEGMENT = re.compile(r"^(?P<owner>[A-Za-z0-9_-]+)\.(?P<seq>\d{8})\.(?:jsonl|journal)$")
_LOCK = re.compile(r"^(?P<owner>[A-Za-z0-9_-]+)\.lock$")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """Flock ``path`` without waiting; None if another process holds it.

    Checks that the locked inode is still the one at ``path``: a lock file another writer
    unlinked between our open and our flock must not count as held.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _default(value: Any) -> Any:
    return str(value)  # Decimal -> "0.0012"; datetimes are native to orjson


def encode_row(row: dict[str, Any]) -> bytes:
    """One row as one JSON line (newline included)."""
    return orjson.dumps(row, default=_default, option=orjson.OPT_APPEND_NEWLINE)


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_row(row) for row in rows)


@dataclass
class Claim:
    """A dead writer's segments, locked by us until released."""

    owner: str
    segments: list[Path]
    lock_fd: int = field(repr=False)


class Spool:
    """The shared directory: this writer's lock and name, dead writers' segments, rejected rows."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]
        self.owner = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
        self._lock_fd: int | None = None

    def open(self) -> None:
        """Create the directory and take this writer's lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = _try_lock(self.dir / f"{self.owner}.lock")
        if fd is None:
            raise RuntimeError(f"spool owner {self.owner} is already locked")
        self._lock_fd = fd

    @property
    def is_open(self) -> bool:
        return self._lock_fd is not None

    def segment_path(self, seq: int, suffix: str = JOURNAL_SUFFIX) -> Path:
        return self.dir / f"{self.owner}.{seq:08d}.{suffix}"

    def close(self) -> None:
        """Release the lock (segments left behind become claimable)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------ dead writers' segments

    def claim_orphans(self) -> list[Claim]:
        """Lock every other owner whose lock is free and that left segments behind."""
        owners: set[str] = set()
        for path in self.dir.iterdir():
            match = _SEGMENT.match(path.name) or _LOCK.match(path.name)
            if match and match["owner"] != self.owner:
                owners.add(match["owner"])
        claims = []
        for owner in sorted(owners):
            lock_path = self.dir / f"{owner}.lock"
            fd = _try_lock(lock_path)
            if fd is None:
                continue  # its writer is alive
            segments = self._segments_of(owner)
            if segments:
                claims.append(Claim(owner, segments, fd))
            else:  # nothing left: tidy the stale lock file
                lock_path.unlink(missing_ok=True)
                os.close(fd)
        return claims

    def release(self, claim: Claim) -> None:
        """Unlock a claim; delete the owner's lock file if all its segments are gone."""
        if not self._segments_of(claim.owner):
            (self.dir / f"{claim.owner}.lock").unlink(missing_ok=True)
        os.close(claim.lock_fd)

    # ------------------------------------------------------------ reading and removing

    @staticmethod
    def read(path: Path, skip: int = 0) -> list[dict[str, Any]]:
        """Every complete row of a segment after its first ``skip`` lines; a torn or corrupt line is logged and skipped."""
        rows: list[dict[str, Any]] = []
        lines = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines[skip:], skip + 1):
            if not line.strip():
                continue
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                torn = number == len(lines)  # no newline after it: the write was cut short
                log.warning("%s:%d: skipping %s spool line", path, number, "torn" if torn else "corrupt")
        return rows

    def remove(self, path: Path) -> None:
        """Delete a replayed segment (no directory fsync: if it came back after a power cut, its rows are ignored)."""
        path.unlink(missing_ok=True)

    def reject(self, rows: list[dict[str, Any]]) -> None:
        """Keep rows the database refused, for a human to look at."""
        with open(self.dir / "rejected.jsonl", "ab") as fh:
            fh.write(encode_rows(rows))
            fh.flush()
            os.fsync(fh.fileno())

    def _segments_of(self, owner: str) -> list[Path]:
        found = []
        for path in self.dir.glob(f"{owner}.*"):
            match = _SEGMENT.match(path.name)
            if match and match["owner"] == owner:
                found.append((int(match["seq"]), path))
        return [p for _, p in sorted(found)]

"""The ledger's local spool: append-only JSON-lines segments, fsync'd per batch.

Layout of ``spool_dir``::

    <owner>.lock                 held (flock) by the live writer called <owner>
    <owner>.<seq:08d>.jsonl      its segments, replayed in ``seq`` order
    rejected.jsonl               rows the database refused as invalid (kept, never dropped)

Each writer owns the segments carrying its name. A lock file that can be flocked belongs to a
process that is gone (flock dies with its holder, even on ``kill -9``), so any writer may claim
and replay that owner's segments. A torn last line (a crash mid-write, before its fsync) is
skipped; it was never acknowledged as spooled.
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
from typing import IO, Any

import orjson

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^(?P<owner>[A-Za-z0-9_-]+)\.(?P<seq>\d{8})\.jsonl$")
_LOCK = re.compile(r"^(?P<owner>[A-Za-z0-9_-]+)\.lock$")


def _fsync_dir(directory: Path) -> None:
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
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row, default=_default) + b"\n" for row in rows)


@dataclass
class Claim:
    """A dead writer's segments, locked by us until released."""

    owner: str
    segments: list[Path]
    lock_fd: int = field(repr=False)


class Spool:
    """One writer's spool segments in a shared directory, plus claiming of dead writers' segments."""

    def __init__(self, directory: str | os.PathLike[str], *, max_segment_bytes: int = 16 * 1024 * 1024) -> None:
        self.dir = Path(directory)
        host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]
        self.owner = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
        self._max_segment_bytes = max_segment_bytes
        self._lock_fd: int | None = None
        self._seq = 0
        self._active: IO[bytes] | None = None
        self._active_bytes = 0
        self._own: list[Path] = []  # segments written by this process and not yet replayed

    # ------------------------------------------------------------ own segments

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

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append rows to the active segment and fsync before returning."""
        if self._active is None or self._active_bytes >= self._max_segment_bytes:
            self._start_segment()
        assert self._active is not None
        data = encode_rows(rows)
        self._active.write(data)
        self._active.flush()
        os.fsync(self._active.fileno())
        self._active_bytes += len(data)

    def seal(self) -> list[Path]:
        """Close the active segment (new rows go to a fresh one) and list own segments, oldest first."""
        self._close_active()
        return self.own_segments()

    def own_segments(self) -> list[Path]:
        return list(self._own)

    def has_own_segments(self) -> bool:
        return bool(self._own)

    def close(self) -> None:
        """Close the active segment and release the lock (left segments become claimable)."""
        self._close_active()
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
    def read(path: Path) -> list[dict[str, Any]]:
        """Every complete row of a segment; a torn or corrupt line is logged and skipped."""
        rows: list[dict[str, Any]] = []
        lines = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                torn = number == len(lines)  # no newline after it: the write was cut short
                log.warning("%s:%d: skipping %s spool line", path, number, "torn" if torn else "corrupt")
        return rows

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        if path in self._own:
            self._own.remove(path)
        _fsync_dir(self.dir)

    def reject(self, rows: list[dict[str, Any]]) -> None:
        """Keep rows the database refused, for a human to look at."""
        with open(self.dir / "rejected.jsonl", "ab") as fh:
            fh.write(encode_rows(rows))
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------ internals

    def _segments_of(self, owner: str) -> list[Path]:
        found = []
        for path in self.dir.glob(f"{owner}.*.jsonl"):
            match = _SEGMENT.match(path.name)
            if match and match["owner"] == owner:
                found.append((int(match["seq"]), path))
        return [p for _, p in sorted(found)]

    def _start_segment(self) -> None:
        self._close_active()
        self._seq += 1
        path = self.dir / f"{self.owner}.{self._seq:08d}.jsonl"
        self._active = open(path, "ab")  # noqa: SIM115 - kept open across batches
        self._active_bytes = 0
        self._own.append(path)
        _fsync_dir(self.dir)

    def _close_active(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None

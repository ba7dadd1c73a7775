"""The write-ahead journal: a submitted row survives kill -9, whatever the database was doing."""

from __future__ import annotations

import asyncio
import errno
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import select

import gateway.ledger.journal as journal_module
from gateway.db import Database, UsageRecord
from gateway.ledger import LedgerWriter, normalize
from gateway.ledger.journal import Journal
from gateway.ledger.spool import Spool, encode_row
from tests.db.fixtures import fresh_postgres
from tests.helpers import ROOT
from tests.ledger.proxy import TcpProxy
from tests.ledger.test_ledger_writer import (  # noqa: F401
    insert_log,
    ledger_ids,
    row,
    wait_for,
    writer_factory,
)

DOWN = "postgresql://postgres@127.0.0.1:1/down"

# A gateway-like process driven by a plan ("submit:120,written:100,say:ready,flush,...") that
# SIGKILLs itself right after its last step, usually a submit() whose rows were never awaited.
CHILD = """
import asyncio, os, signal, sys
from decimal import Decimal
from gateway.db import Database
from gateway.ledger import LedgerWriter

async def main() -> None:
    url, spool_dir, plan = sys.argv[1:4]
    writer = LedgerWriter(Database(url, connect_timeout_s=1), 50, 10_000, spool_dir, retry_min_s=0.05, retry_max_s=0.2)
    await writer.start()
    i = 0
    for step in plan.split(","):
        kind, _, arg = step.partition(":")
        if kind == "submit":
            for _ in range(int(arg)):
                writer.submit({"id": f"k-{i:05d}", "project": "web", "cost_usd": Decimal("0.001"), "prompt_tokens": i})
                i += 1
        elif kind == "written":  # until the batch task has committed this many rows
            while writer.stats.rows_written < int(arg):
                await asyncio.sleep(0.005)
        elif kind == "flush":
            await writer.flush()
        elif kind == "say":  # tell the test, wait for its go-ahead
            print(arg, writer.stats.rows_written, writer.stats.rows_spooled, flush=True)
            await asyncio.to_thread(sys.stdin.readline)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def start_child(url: str, spool_dir: Path, plan: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(spool_dir), plan],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )


async def wait_killed(proc: subprocess.Popen[str]) -> None:
    try:
        await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()  # type: ignore[union-attr]


async def totals(db: Database) -> tuple[int, Decimal, int]:
    async with db.session() as session:
        count, cost, tokens = (
            await session.exec(select(func.count(), func.sum(UsageRecord.cost_usd), func.sum(UsageRecord.prompt_tokens)))
        ).one()
    return count, cost or Decimal(0), tokens or 0


def segment_lines(spool_dir: Path) -> int:
    return sum(len(Spool.read(p)) for p in spool_dir.glob("*.journal")) + sum(
        len(Spool.read(p)) for p in spool_dir.glob("*.jsonl")
    )


async def replay_and_check(db: Database, spool_dir: Path, writer_factory: Callable[..., LedgerWriter], n: int) -> LedgerWriter:
    """A new writer on the directory replays the dead one's journal: exactly rows k-00000..n-1, once each."""
    writer = writer_factory(db)
    await writer.start()
    await wait_for(lambda: not list(spool_dir.glob("*.journal")) and not list(spool_dir.glob("*.jsonl")))
    assert await ledger_ids(db) == [f"k-{i:05d}" for i in range(n)]
    assert await totals(db) == (n, Decimal("0.001") * n, n * (n - 1) // 2)
    assert sorted(p.name for p in spool_dir.iterdir()) == [f"{writer._spool.owner}.lock"]
    return writer


def db_url(db: Database) -> str:
    return db.url.set(drivername=db.dialect).render_as_string(hide_password=False)


async def test_rows_submitted_right_before_a_kill_9_are_replayed(database: Database, tmp_path: Path, writer_factory) -> None:
    spool_dir = tmp_path / "spool"
    # Two batches of 50 committed, 20 waiting for the 10 s interval, then 80 submitted and never awaited.
    proc = start_child(db_url(database), spool_dir, "submit:120,written:100,submit:80")
    await wait_killed(proc)
    assert (await totals(database))[0] == 100  # what the dead process had committed
    assert segment_lines(spool_dir) == 200  # its journal: the 100 committed rows too (no catch-up yet)

    writer = await replay_and_check(database, spool_dir, writer_factory, 200)
    assert writer.stats.rows_replayed == 200  # 100 of them were ignored: insert-or-ignore by id


async def test_kill_9_with_the_database_unreachable(database: Database, tmp_path: Path, writer_factory) -> None:
    spool_dir = tmp_path / "spool"
    # 60 rows spooled (fsync'd, acknowledged by flush), then 45 more only written to the journal.
    proc = start_child(DOWN, spool_dir, "submit:60,flush,submit:45")
    await wait_killed(proc)
    assert [len(Spool.read(p)) for p in spool_dir.glob("*.jsonl")] == [105]  # the dirty segment took the tail too
    await replay_and_check(database, spool_dir, writer_factory, 105)


async def test_kill_9_after_the_database_went_away(pg_url: str, tmp_path: Path, writer_factory) -> None:
    db = await fresh_postgres(pg_url)
    target = make_url(pg_url)
    proxy = TcpProxy("127.0.0.1", target.port or 5432)
    await proxy.start()
    spool_dir = tmp_path / "spool"
    via_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    proc = start_child(via_proxy, spool_dir, "submit:120,written:100,say:committed,submit:30,flush,submit:25")
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30)  # type: ignore[union-attr]
        assert line.split() == ["committed", "100", "0"], line or proc.stderr.read()  # type: ignore[union-attr]
        await proxy.stop()  # the database goes away under the running process
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        await wait_killed(proc)
        # One segment: 100 committed rows, 50 spooled, 25 only journaled.
        assert [len(Spool.read(p)) for p in spool_dir.glob("*.jsonl")] == [175]
        assert (await totals(db))[0] == 100
        await replay_and_check(db, spool_dir, writer_factory, 175)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proxy._server is not None:
            await proxy.stop()
        await db.aclose()


async def test_a_journal_already_committed_is_replayed_without_duplicates(
    database: Database, tmp_path: Path, writer_factory
) -> None:
    spool_dir = tmp_path / "spool"
    first = writer_factory(database, batch_size=1000, interval_ms=60_000)
    await first.start()
    rows = [row(i) | {"id": f"k-{i:05d}", "prompt_tokens": i, "cost_usd": Decimal("0.001")} for i in range(40)]
    for r in rows:
        first.submit(r)
    # The journal as a process killed right after its commit (before truncating) would leave it.
    (active,) = spool_dir.glob("*.journal")
    journaled = active.read_bytes()
    await first.flush()
    assert active.stat().st_size == 0  # caught up: truncated
    assert await totals(database) == (40, Decimal("0.040"), 780)
    await first.aclose()
    (spool_dir / "deadhost-4242-abcdef.00000007.journal").write_bytes(journaled)
    second = await replay_and_check(database, spool_dir, writer_factory, 40)
    assert second.stats.rows_replayed == 40  # all 40 sent again, all 40 ignored


async def test_submit_writes_the_row_to_the_journal_before_returning(sqlite_db: Database, tmp_path: Path, writer_factory) -> None:
    writer = writer_factory(sqlite_db, batch_size=1000, interval_ms=60_000)
    await writer.start()
    assert list((tmp_path / "spool").iterdir()) == [tmp_path / "spool" / f"{writer._spool.owner}.lock"]  # nothing before a row
    ids = [writer.submit(row(i)) for i in range(3)]
    (journal,) = (tmp_path / "spool").glob("*.journal")
    assert [normalize(r) for r in Spool.read(journal)] == [normalize(row(i)) for i in range(3)]
    await writer.flush()
    assert journal.stat().st_size == 0 and await ledger_ids(sqlite_db) == ids
    writer.submit(row(3))
    assert [r["id"] for r in Spool.read(journal)] == ["r-00003"]
    await writer.aclose()
    assert not list((tmp_path / "spool").glob("*.journal"))  # everything committed: nothing left


def fail_inserts(writer: LedgerWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(rows: list[dict[str, object]]) -> None:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")

    monkeypatch.setattr(writer._sink, "_execute", refused)


async def test_segments_rotate_and_dirty_ones_replay_in_order(
    sqlite_db: Database, tmp_path: Path, writer_factory, monkeypatch
) -> None:
    writer = writer_factory(sqlite_db, batch_size=5, interval_ms=20, max_segment_bytes=1500)
    await writer.start()
    fail_inserts(writer, monkeypatch)
    for chunk in range(3):
        for i in range(chunk * 5, chunk * 5 + 5):
            writer.submit(row(i))
        await writer.flush()  # spooled; a segment past 1500 bytes (about 4 rows) is rotated
    assert writer.stats.rows_spooled == 15 and writer.stats.spool_segments >= 2
    spooled = [r["id"] for p in sorted((tmp_path / "spool").glob("*.jsonl")) for r in Spool.read(p)]
    assert spooled == [f"r-{i:05d}" for i in range(15)]

    inserts = insert_log(sqlite_db)
    monkeypatch.undo()  # the database is back
    await wait_for(lambda: writer.stats.spool_segments == 0)
    assert [i for batch in inserts for i in batch] == [f"r-{i:05d}" for i in range(15)]
    assert writer.stats.rows_replayed == 15 and writer.stats.journal_segments == 1
    assert not list((tmp_path / "spool").glob("*.jsonl"))


async def test_a_failed_journal_write_keeps_the_row_and_journals_it_late(
    sqlite_db: Database, tmp_path: Path, writer_factory, monkeypatch
) -> None:
    down = Database(DOWN, connect_timeout_s=1)
    writer = writer_factory(down, batch_size=1000, interval_ms=60_000)
    await writer.start()
    real_write = journal_module._write
    writer.submit(row(0))
    writer.submit(row(1))
    calls = {"n": 0}

    def torn_then_full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, data[: len(data) // 2])  # half a line, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "_write", torn_then_full)
    writer.submit(row(2))  # torn
    writer.submit(row(3))  # not written at all
    monkeypatch.undo()
    writer.submit(row(4))
    assert writer.stats.journal_errors == 2 and writer.stats.queue_depth == 5
    await writer.flush()  # the database is down: rows 2 and 3 are journaled now, then all five fsync'd
    assert writer.stats.rows_spooled == 5
    await writer.aclose()
    await down.aclose()

    healthy = writer_factory(sqlite_db)
    await healthy.start()
    await wait_for(lambda: healthy.stats.rows_replayed == 5)
    assert await ledger_ids(sqlite_db) == [f"r-{i:05d}" for i in range(5)]


async def test_submit_cost_microbenchmark(
    sqlite_db: Database, tmp_path: Path, writer_factory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prints what submit() costs; asserts nothing about time."""
    n = 5000
    writer = writer_factory(sqlite_db, batch_size=10 * n, interval_ms=60_000)
    await writer.start()
    records = [row(i, "b") | {"id": f"b-{i:06d}"} for i in range(n)]
    t0 = time.perf_counter()
    for record in records:
        writer.submit(record)
    submit_us = (time.perf_counter() - t0) / n * 1e6
    await writer.flush()
    assert writer.stats.rows_written == n

    t0 = time.perf_counter()
    normalized = [normalize(record) for record in records]
    normalize_us = (time.perf_counter() - t0) / n * 1e6
    spool = Spool(tmp_path / "bench")
    spool.open()
    journal = Journal(spool)
    t0 = time.perf_counter()
    for number, r in enumerate(normalized, 1):
        journal.append(encode_row(r), number)
    journal_us = (time.perf_counter() - t0) / n * 1e6
    await journal.close(done=n)
    spool.close()
    with capsys.disabled():
        print(
            f"\nledger submit(): {submit_us:.1f} µs/row, of which validation {normalize_us:.1f} µs "
            f"and the journal (encode + one write) {journal_us:.1f} µs"
        )

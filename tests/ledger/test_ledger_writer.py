"""The batched ledger writer: batching, shutdown, outages (spool and replay), crash recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import event, func
from sqlalchemy.engine import make_url
from sqlmodel import select

from gateway.db import Database, UsageRecord
from gateway.ledger import LedgerWriter, usage_report
from gateway.ledger.rollups import write_ledger
from gateway.ledger.spool import Spool
from tests.db.fixtures import fresh_postgres
from tests.helpers import ROOT
from tests.ledger.proxy import TcpProxy

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def row(i: int, prefix: str = "r") -> dict[str, object]:
    return {
        "id": f"{prefix}-{i:05d}",
        "ts": T0 + timedelta(seconds=i),
        "project": "web",
        "key_id": "k1",
        "requested_model": "auto",
        "deployment": "d0",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": Decimal("0.0000125"),
        "status": 200,
    }


async def ledger_ids(db: Database) -> list[str]:
    async with db.session() as session:
        return sorted((await session.exec(select(UsageRecord.id))).all())


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def insert_log(db: Database) -> list[list[str]]:
    """The ids of every INSERT into usage_records, one list per statement, in execution order."""
    batches: list[list[str]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO USAGE_RECORDS"):
            # One flat tuple when the rows go as one multi-VALUES statement (INSERT ... RETURNING).
            flat = isinstance(parameters, dict) or (
                isinstance(parameters, tuple | list) and parameters and not isinstance(parameters[0], dict | tuple | list)
            )
            params = [parameters] if flat or not executemany else parameters
            ids = []
            for p in params:
                values = list(p.values()) if isinstance(p, dict) else list(p)
                ids += [v for v in values if isinstance(v, str) and v[:2] in ("r-", "s-", "a-", "b-")]
            batches.append(ids)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    return batches


@pytest.fixture
async def writer_factory(tmp_path: Path) -> AsyncIterator[Callable[..., LedgerWriter]]:
    made: list[LedgerWriter] = []

    def make(db: Database, batch_size: int = 10, interval_ms: int = 20, **kw: object) -> LedgerWriter:
        w = LedgerWriter(db, batch_size, interval_ms, tmp_path / "spool", retry_min_s=0.05, retry_max_s=0.2, **kw)  # type: ignore[arg-type]
        made.append(w)
        return w

    yield make
    for w in made:
        await w.aclose(timeout_s=5)


async def test_rows_are_written_in_batches_of_batch_size(database: Database, writer_factory) -> None:
    writer = writer_factory(database, batch_size=50, interval_ms=60_000)
    await writer.start()
    inserts = insert_log(database)
    for i in range(49):
        writer.submit(row(i))
    await asyncio.sleep(0.2)
    assert inserts == [] and writer.stats.queue_depth == 49  # neither a full batch nor the interval yet
    writer.submit(row(49))
    await wait_for(lambda: writer.stats.rows_written == 50)
    assert [len(b) for b in inserts] == [50]
    assert len(await ledger_ids(database)) == 50


async def test_a_partial_batch_is_written_after_the_flush_interval(database: Database, writer_factory) -> None:
    writer = writer_factory(database, batch_size=1000, interval_ms=50)
    await writer.start()
    inserts = insert_log(database)
    for i in range(7):
        writer.submit(row(i))
    await wait_for(lambda: writer.stats.rows_written == 7, timeout_s=2)
    assert [len(b) for b in inserts] == [7]


async def test_close_flushes_everything_and_then_refuses_rows(sqlite_db: Database, writer_factory) -> None:
    writer = writer_factory(sqlite_db, batch_size=1000, interval_ms=60_000)
    await writer.start()
    ids = [writer.submit(row(i)) for i in range(30)]
    await writer.aclose()
    assert await ledger_ids(sqlite_db) == sorted(ids)
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(row(99))


async def test_write_waits_until_the_row_is_durable(sqlite_db: Database, writer_factory) -> None:
    writer = writer_factory(sqlite_db, batch_size=1000, interval_ms=60_000)
    await writer.start()
    await asyncio.wait_for(writer.write(row(1)), timeout=2)  # a waiter makes the writer flush at once
    assert await ledger_ids(sqlite_db) == ["r-00001"]


async def test_bad_rows_are_refused_at_submit(sqlite_db: Database, writer_factory) -> None:
    writer = writer_factory(sqlite_db)
    await writer.start()
    with pytest.raises(ValueError, match="unknown ledger fields: colour"):
        writer.submit(row(1) | {"colour": "red"})
    with pytest.raises(TypeError):
        writer.submit(42)
    from gateway.db import UsageRecordCreate

    assert writer.submit(UsageRecordCreate(project="web", cost_usd=Decimal("0.5")))  # models work, an id is assigned


async def test_the_task_survives_errors_and_is_restarted_if_it_dies(sqlite_db: Database, writer_factory) -> None:
    writer = writer_factory(sqlite_db)
    await writer.start()
    original_step, original_wait = writer._step, writer._wait_for_work
    failures = {"step": 1, "wait": 1}

    async def flaky_step() -> None:
        if failures["step"]:
            failures["step"] -= 1
            raise RuntimeError("boom in step")
        await original_step()

    async def flaky_wait() -> None:
        if failures["wait"]:
            failures["wait"] -= 1
            raise RuntimeError("boom while waiting for work")
        await original_wait()

    writer._step = flaky_step  # type: ignore[method-assign]
    writer._wait_for_work = flaky_wait  # type: ignore[method-assign]
    writer._wake.set()
    for i in range(5):
        writer.submit(row(i))
    await asyncio.wait_for(writer.flush(), timeout=5)
    # Both failures are absorbed by the loop's guard: the task never had to be restarted.
    assert writer.stats.task_restarts == 0 and failures == {"step": 0, "wait": 0}
    assert len(await ledger_ids(sqlite_db)) == 5


async def test_outage_spools_then_replays_in_order_without_duplicates(pg_url: str, tmp_path: Path, writer_factory) -> None:
    await (await fresh_postgres(pg_url)).aclose()
    target = make_url(pg_url)
    proxy = TcpProxy("127.0.0.1", target.port or 5432)
    await proxy.start()
    db = Database(target.set(port=proxy.port), connect_timeout_s=1)
    try:
        writer = writer_factory(db, batch_size=10, interval_ms=20)
        await writer.start()
        inserts = insert_log(db)
        for i in range(25):
            writer.submit(row(i))
        await writer.flush()
        assert writer.stats.rows_written == 25

        await proxy.stop()  # the database goes away
        for i in range(25, 65):
            writer.submit(row(i))
        await asyncio.wait_for(writer.flush(), timeout=10)  # durable in the spool, not in the database
        stats = writer.stats
        assert stats.rows_spooled == 40 and not stats.database_available and stats.spool_segments >= 1
        spooled = [r["id"] for p in sorted((tmp_path / "spool").glob("*.jsonl")) for r in Spool.read(p)]
        assert spooled == [f"r-{i:05d}" for i in range(25, 65)]

        await proxy.start()  # it comes back on the same port
        for i in range(65, 75):
            writer.submit(row(i))
        await wait_for(lambda: writer.stats.spool_segments == 0 and writer.stats.queue_depth == 0)
        await writer.flush()
        assert await ledger_ids(db) == [f"r-{i:05d}" for i in range(75)]
        committed_order = []
        for batch in inserts:
            committed_order += [i for i in batch if i not in committed_order]
        assert committed_order == [f"r-{i:05d}" for i in range(75)]  # spooled rows before newer rows
        final = writer.stats  # rows submitted before the retry noticed the database went behind the spool too
        assert final.rows_replayed == final.rows_spooled >= 40 and final.rows_written + final.rows_spooled == 75
        assert final.database_available
        assert not list((tmp_path / "spool").glob("*.jsonl"))
    finally:
        await writer.aclose(timeout_s=5)
        await db.aclose()
        if proxy._server is not None:
            await proxy.stop()


CRASHER = """
import asyncio, sys
from decimal import Decimal
from gateway.db import Database
from gateway.ledger import LedgerWriter

async def main() -> None:
    writer = LedgerWriter(Database(sys.argv[1], connect_timeout_s=1), 10, 20, sys.argv[2])
    await writer.start()
    for i in range(int(sys.argv[3])):
        writer.submit({"id": f"s-{i:05d}", "project": "web", "cost_usd": Decimal("0.001"), "prompt_tokens": i})
    await writer.flush()
    print("spooled", writer.stats.rows_spooled, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_spool_left_by_a_killed_process_is_replayed_on_start(database: Database, tmp_path: Path, writer_factory) -> None:
    spool_dir = tmp_path / "spool"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, "postgresql://postgres@127.0.0.1:1/down", str(spool_dir), "57"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30)  # type: ignore[union-attr]
        assert line.strip() == "spooled 57", proc.stderr.read() if proc.poll() is not None else line  # type: ignore[union-attr]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # Rows that reached the database before the crash but are still in the spool must not double.
    await write_ledger(database, [{"id": "s-00003", "project": "web", "cost_usd": Decimal("0.001"), "prompt_tokens": 3}])
    writer = writer_factory(database)
    await writer.start()
    await wait_for(lambda: writer.stats.rows_replayed == 57)
    assert await ledger_ids(database) == [f"s-{i:05d}" for i in range(57)]
    async with database.session() as session:
        total = (await session.exec(select(func.sum(UsageRecord.cost_usd)))).one()
    assert total == Decimal("0.057")
    rolled = await usage_report(database, source="rollup")  # the replayed row was not counted twice
    assert (rolled["total_requests"], rolled["total_cost_usd"]) == (57, "0.057")
    assert sorted(p.name for p in spool_dir.iterdir()) == [f"{writer._spool.owner}.lock"]  # only our own lock is left


async def test_a_live_writers_spool_is_left_alone_until_it_exits(sqlite_db: Database, tmp_path: Path, writer_factory) -> None:
    down = Database("postgresql://postgres@127.0.0.1:1/down", connect_timeout_s=1)
    spooling = writer_factory(down)
    await spooling.start()
    for i in range(12):
        spooling.submit(row(i, "a"))
    await spooling.flush()
    assert spooling.stats.rows_spooled == 12

    healthy = writer_factory(sqlite_db, orphan_scan_s=0.1)
    await healthy.start()
    await asyncio.sleep(0.4)
    assert healthy.stats.rows_replayed == 0 and await ledger_ids(sqlite_db) == []  # its owner holds the lock
    await spooling.aclose()  # exits with the database still down: the segments stay behind
    await down.aclose()
    await wait_for(lambda: healthy.stats.rows_replayed == 12)
    assert await ledger_ids(sqlite_db) == [f"a-{i:05d}" for i in range(12)]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    segment = tmp_path / "dead-1-abc.00000001.jsonl"
    segment.write_bytes(b'{"id": "x-1"}\n{"id": "x-2"}\n{"id": "x-')
    assert [r["id"] for r in Spool.read(segment)] == ["x-1", "x-2"]


async def test_rows_the_database_refuses_are_kept_aside(pg_url: str, writer_factory, tmp_path: Path) -> None:
    db = await fresh_postgres(pg_url)
    try:
        writer = writer_factory(db)
        await writer.start()
        writer.submit(row(1))
        writer.submit(row(2) | {"prompt_tokens": 2**40})  # does not fit an INTEGER column
        writer.submit(row(3))
        await writer.flush()
        assert await ledger_ids(db) == ["r-00001", "r-00003"]
        assert writer.stats.rows_rejected == 1
        assert [r["id"] for r in Spool.read(tmp_path / "spool" / "rejected.jsonl")] == ["r-00002"]
    finally:
        await db.aclose()


def test_request_path_rows_skip_validation_but_odd_rows_do_not() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from gateway.db.models import USAGE_COLUMNS
    from gateway.ledger.writer import normalize

    trusted = {c: None for c in USAGE_COLUMNS} | {
        "id": "r1",
        "ts": datetime.now(UTC),
        "cost_usd": Decimal("0.1"),
        "prompt_tokens": 1,
        "cached_tokens": 0,
        "completion_tokens": 2,
        "status": 200,
        "fallbacks": 0,
        "streamed": False,
    }
    assert normalize(trusted) is trusted
    odd = {**trusted, "prompt_tokens": "1"}  # a string where an int belongs: validated and coerced
    assert normalize(odd)["prompt_tokens"] == 1

"""Daily rollups: kept by the ledger writer in the rows' transaction, never counting a replayed row
twice (also when two writers race on PostgreSQL), and built for existing rows by migration 0002."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text

from gateway.db import Database
from gateway.ledger import LedgerWriter, usage_report
from gateway.ledger.rollups import (
    RollupWriter,
    rollup,
)
from gateway.ledger.writer import normalize
from tests.db.scratch import scratch_postgres
from tests.ledger.test_ledger_writer import writer_factory  # noqa: F401 - fixture
from tests.reports.helpers import assert_rollups_equal_rows, ledger_row

T0 = datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC)  # rows fall on both sides of a month boundary


def _rows(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [
        normalize(
            ledger_row(
                i,
                T0 + timedelta(seconds=i),
                project=f"p{i % 3}",
                cost=f"0.000000{i % 9 + 1}",
                key_id=f"k{i % 4}",
                status=502 if i % 7 == 0 else 200,
                end_user=f"u{i % 5}",
            )
            | {"id": f"{prefix}-{i}"}
        )
        for i in range(n)
    ]


async def test_the_ledger_writer_keeps_rollups_and_tells_listeners_about_new_rows_only(
    database: Database,
    writer_factory: Callable[..., LedgerWriter],
) -> None:
    writer = writer_factory(database, batch_size=7, interval_ms=10)
    committed: list[str] = []
    writer.on_commit(lambda rows: committed.extend(r["id"] for r in rows))
    await writer.start()
    rows = _rows(40)
    for row in rows + rows[:15]:  # the same ids again, as a replay would bring them
        writer.submit(row)
    await writer.flush()
    assert sorted(committed) == sorted(r["id"] for r in rows)
    await assert_rollups_equal_rows(database)
    report = await usage_report(database, source="rollup")
    assert report["total_requests"] == 40 and Decimal(report["total_cost_usd"]) == sum((r["cost_usd"] for r in rows), Decimal(0))


async def test_two_writers_racing_on_the_same_rows_count_each_once(pg_url: str) -> None:
    """Two replicas replaying overlapping journals at once: no double count, no deadlock."""
    first, second = Database(pg_url, pool_size=4), Database(pg_url, pool_size=4)
    async with first.engine.begin() as conn:
        await conn.execute(text("TRUNCATE usage_records, usage_daily, usage_project_daily, usage_daily_attribution"))
    rows = _rows(300)
    rng = random.Random(5)

    async def replica(db: Database) -> None:
        writer = RollupWriter(db.dialect)
        for _ in range(12):
            batch = rng.sample(rows, 60)
            async with db.engine.begin() as conn:
                await writer.write_rows(conn, batch)

    await asyncio.gather(replica(first), replica(second), replica(first), replica(second))
    async with first.engine.begin() as conn:
        await RollupWriter(first.dialect).write_rows(conn, rows)  # whatever the samples missed
    await assert_rollups_equal_rows(first)
    assert all(sum(v[0] for v in groups.values()) == 300 for _, _, groups in rollup(rows).tables())
    await first.aclose()
    await second.aclose()


async def _old_rows(db: Database) -> None:
    """Rows written by a 0001 gateway (no attribution columns yet)."""
    async with db.engine.begin() as conn:
        for i, row in enumerate(_rows(25)):
            cost = int(row["cost_usd"].scaleb(10)) if db.dialect == "sqlite" else row["cost_usd"]
            ts = row["ts"].replace(tzinfo=None).isoformat(sep=" ") if db.dialect == "sqlite" else row["ts"]
            await conn.execute(
                text(
                    "INSERT INTO usage_records (id, ts, project, key_id, requested_model, route, deployment, locality, sensitivity, "
                    "task, prompt_tokens, cached_tokens, completion_tokens, cost_usd, status, streamed, fallbacks) VALUES "
                    "(:id, :ts, :project, :key_id, :model, NULL, :deployment, :locality, 'public', 'chat', :p, 0, :c, :cost, :status, "
                    "false, 0)"
                ),
                {
                    "id": f"old-{i}",
                    "ts": ts,
                    "project": row["project"],
                    "key_id": row["key_id"],
                    "model": "auto" if i % 2 else None,
                    "deployment": "local",
                    "locality": "self_hosted",
                    "p": row["prompt_tokens"],
                    "c": row["completion_tokens"],
                    "cost": cost,
                    "status": row["status"],
                },
            )


async def test_migration_0002_rolls_up_the_rows_already_in_the_ledger(tmp_path: Path) -> None:
    async with scratch_postgres() as pg:
        for url in (f"sqlite:///{tmp_path}/old.db", pg):
            db = Database(url)
            await db.migrate("0001_initial")
            await _old_rows(db)
            await db.migrate()
            assert await db.schema_revision() == "0002_finance"
            await assert_rollups_equal_rows(db)
            assert (await usage_report(db, source="rollup"))["total_requests"] == 25
            assert await usage_report(db, group_by=["day", "model"], source="rollup") == await usage_report(
                db, group_by=["day", "model"], source="raw"
            )
            await db.aclose()

"""Property: for random ledgers, the rollups equal the raw rows and report totals equal the exact sum.

Each example is a random ledger (projects, keys, days across a month boundary and midnight,
amounts with ten decimals, errors, attribution) written in random batches, with some rows
written again as a journal replay would. Then, on SQLite and on PostgreSQL:

* every rollup table equals a GROUP BY over the raw rows, group for group, to the last digit;
* for random day ranges, the per-project report, the daily series and every breakdown add up to
  the exact Decimal sum of the generated rows in that range (computed here, in Python);
* ``/admin/usage``'s report from the rollups equals the same report from the raw rows.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.db import Database
from gateway.ledger import usage_report
from gateway.ledger.rollups import (
    RollupWriter,
)
from gateway.ledger.writer import normalize
from gateway.reports import DayRange, breakdown_report, daily_report, projects_report
from gateway.reports.savings import ReferencePrices
from tests.helpers import fake_deployment, make_config
from tests.reports.helpers import assert_rollups_equal_rows, clear_ledger

START = datetime(2026, 10, 28, tzinfo=UTC)
SPAN_S = 10 * 86400  # 28 Oct .. 6 Nov: a month boundary inside
CONFIG = make_config({"deployments": [fake_deployment("d", "http://127.0.0.1:9/v1")], "projects": [{"name": "a"}]})

row_strategy = st.fixed_dictionaries(
    {
        "ts": st.one_of(
            st.integers(0, SPAN_S - 1).map(lambda s: START + timedelta(seconds=s)),
            st.integers(0, 9).map(lambda d: START + timedelta(days=d)),  # exactly midnight
            st.integers(1, 9).map(lambda d: START + timedelta(days=d, microseconds=-1)),  # the last microsecond of a day
        ),
        "project": st.sampled_from(["a", "b", "c"]),
        "key_id": st.sampled_from(["k1", "k2", "k3", None]),
        "requested_model": st.sampled_from(["auto", "gpt-x", None]),
        "route": st.sampled_from(["auto", None]),
        "deployment": st.sampled_from(["local", "hosted-1", "hosted-2"]),
        "locality": st.sampled_from(["self_hosted", "hosted", None]),
        "task": st.sampled_from(["chat", "code", None]),
        "sensitivity": st.sampled_from(["public", "restricted"]),
        "prompt_tokens": st.integers(0, 5_000_000),
        "cached_fraction": st.sampled_from([0, 0, 0.5, 1]),
        "completion_tokens": st.integers(0, 2_000_000),
        "cost_usd": st.decimals(min_value=0, max_value=500, places=10, allow_nan=False, allow_infinity=False),
        "status": st.sampled_from([200, 200, 200, 429, 502]),
        "end_user": st.sampled_from([None, "u1", "u2", "=cmd|' /C calc'!A0"]),
        "project_tag": st.sampled_from([None, "beta", "batch"]),
        "key_tags": st.sampled_from([None, '["team:x"]', '["env:prod","team:x"]']),
    }
)


def _rows(drawn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, raw in enumerate(drawn):
        row = dict(raw)
        row["cached_tokens"] = int(row.pop("cached_fraction") * row["prompt_tokens"])
        row["id"] = f"row-{i:05d}"
        rows.append(normalize(row))
    return rows


def _examples(count: int) -> list[tuple[list[dict[str, Any]], list[int], list[int], list[tuple[int, int]]]]:
    examples = []

    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        drawn=st.lists(row_strategy, min_size=0, max_size=60),
        cuts=st.lists(st.integers(0, 60), max_size=5),
        replays=st.lists(st.integers(0, 59), max_size=10),
        ranges=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=3),
    )
    def collect(drawn: list[dict[str, Any]], cuts: list[int], replays: list[int], ranges: list[tuple[int, int]]) -> None:
        examples.append((_rows(drawn), cuts, replays, ranges))

    collect()
    return examples


def _expected(rows: list[dict[str, Any]], days: DayRange) -> dict[str, tuple[Decimal, int]]:
    """Per project: the exact Decimal sum of cost and the number of rows, computed in Python."""
    out: dict[str, list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for row in rows:
        if days.since <= row["ts"].astimezone(UTC).date() <= days.until:
            out[row["project"]][0] += row["cost_usd"]
            out[row["project"]][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


async def test_rollups_equal_raw_rows_and_reports_equal_the_exact_sums(database: Database) -> None:
    examples = _examples(30 if database.dialect == "sqlite" else 12)
    writer = RollupWriter(database.dialect)
    reference = ReferencePrices("ref", Decimal("2.5"), Decimal("1.25"), Decimal(10))
    for rows, cuts, replays, ranges in examples:
        await clear_ledger(database)
        bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
        batches = [rows[a:b] for a, b in itertools.pairwise(bounds)]
        replayed = [rows[i] for i in replays if i < len(rows)]
        random.Random(len(rows)).shuffle(batches)
        for batch in [*batches, replayed, replayed[:2]]:  # replays: insert-or-ignore, never counted twice
            if batch:
                async with database.engine.begin() as conn:
                    await writer.write_rows(conn, batch)

        await assert_rollups_equal_rows(database)

        for a, b in ranges:
            days = DayRange(date(2026, 10, 28) + timedelta(days=min(a, b)), date(2026, 10, 28) + timedelta(days=max(a, b)))
            expected = _expected(rows, days)
            total = sum((v[0] for v in expected.values()), Decimal(0))
            report = await projects_report(database, CONFIG, days, now=datetime(2026, 11, 3, 12, tzinfo=UTC))
            by_project = {p["project"]: p for p in report["projects"]}
            for name, (spend, count) in expected.items():
                assert Decimal(by_project[name]["spend_usd"]) == spend and by_project[name]["requests"] == count
            assert Decimal(report["totals"]["spend_usd"]) == total
            assert sum(Decimal(p["spend_usd"]) for p in report["projects"]) == total
            assert Decimal(report["totals"]["self_hosted_spend_usd"]) + Decimal(report["totals"]["hosted_spend_usd"]) == total

            daily = await daily_report(database, days, "project")
            assert Decimal(daily["totals"]["spend_usd"]) == total
            assert sum(Decimal(p["spend_usd"]) for s in daily["series"] for p in s["points"]) == total
            for name in expected:
                for dimension in ("model", "key", "deployment", "task", "sensitivity", "user", "project_tag"):
                    table = await breakdown_report(database, days, dimension, project=name, reference=reference)
                    assert sum(Decimal(r["spend_usd"]) for r in table["rows"]) == expected[name][0], dimension
                    assert sum(r["requests"] for r in table["rows"]) == expected[name][1], dimension

            for groups in ([], ["day", "project"], ["key", "model", "deployment"], ["user", "project_tag"]):
                rolled = await usage_report(database, since=days.since, until=days.until, group_by=groups, source="rollup")
                raw = await usage_report(database, since=days.since, until=days.until, group_by=groups, source="raw")
                assert rolled == raw
                assert Decimal(raw["total_cost_usd"]) == total

"""Budget alerts: a signed webhook once per threshold and period, retried, received by a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from sqlmodel import select

from gateway.alerts import BudgetAlerts, verify_signature
from gateway.config import Budget, ProjectConfig
from gateway.db import Database, sync_projects
from gateway.db.models import BudgetAlert
from gateway.keys import KeyStore
from gateway.ledger.rollups import write_ledger
from tests.db.fixtures import database, pg_url  # noqa: F401 - fixtures
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config
from tests.reports.helpers import ledger_row

SECRET = "whsec-test"


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers with scripted statuses (then 200) and keeps what it got."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/budget", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hooks/budget"  # type: ignore[union-attr]

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver([500])  # the first delivery attempt fails: it must be retried
    await r.start()
    yield r
    assert r.runner is not None
    await r.runner.cleanup()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _config(url: str, **alerts: Any) -> Any:
    return make_config(
        {
            "deployments": [fake_deployment("d", "http://127.0.0.1:9/v1")],
            "projects": [{"name": "web", "budget": {"usd": 10, "period": "monthly"}}],
            "alerts": {"webhook_url": url, "secret": SECRET, "backoff_s": 0.05, "check_interval_s": 0.05, **alerts},
        }
    )


async def test_each_threshold_is_posted_once_per_period_signed_and_retried(database: Database, receiver: Receiver) -> None:
    config = _config(receiver.url)
    await sync_projects(
        database, [*config.projects, ProjectConfig(name="shop", budget=Budget(usd=Decimal(4), alert_thresholds=[25]))]
    )
    key, _ = await KeyStore(database).create("web", "spender", budget_usd=Decimal(2), alert_thresholds=[90])
    clock = Clock(datetime(2026, 11, 20, 12, tzinfo=UTC))
    replicas = [BudgetAlerts(database, config, clock=clock), BudgetAlerts(database, config, clock=clock)]

    async def spend(i: int, when: datetime, cost: str, **fields: Any) -> None:
        row = ledger_row(i, when, cost=cost, **fields)
        await write_ledger(database, [row])
        for replica in replicas:  # both replicas see the commit (in production: each sees its own)
            replica.observe([row])
        await asyncio.gather(*(r.check() for r in replicas))
        # a snapshot of the deliveries running now: the live set empties as they finish
        deliveries = [task for r in replicas for task in r._deliveries]
        if deliveries:
            await asyncio.wait(deliveries)

    await spend(1, datetime(2026, 11, 3), "5.5", key_id="other")  # web at 55%: the 50% alert
    events = receiver.events()
    assert [(e["subject"]["id"], e["threshold_pct"]) for e in events] == [("web", 50), ("web", 50)]  # one retry after the 500
    headers, body = receiver.received[-1]
    assert verify_signature(SECRET, body, headers["x-switchyard-signature"])
    assert not verify_signature("wrong-secret", body, headers["x-switchyard-signature"])
    assert headers["x-switchyard-event"] == "budget.threshold_crossed"
    assert {h["x-switchyard-delivery"] for h, _ in receiver.received} == {events[0]["id"]}
    first = events[-1]
    assert (first["budget_usd"], first["spend_usd"], first["used_pct"], first["period"]) == ("10", "5.5", 55.0, "monthly")
    assert first["window"] == {"id": "m202611", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}

    await spend(2, datetime(2026, 11, 19), "4.6", key_id=key.id)  # web 101%: 80 and 100; the key 230% of 2: its 90
    new = [(e["subject"]["kind"], e["threshold_pct"]) for e in receiver.events()[2:]]
    assert sorted(new) == [("key", 90), ("project", 80), ("project", 100)]
    key_event = next(e for e in receiver.events() if e["subject"]["kind"] == "key")
    assert key_event["subject"] == {"kind": "key", "id": key.id, "name": "spender", "project": "web"}

    await spend(3, datetime(2026, 11, 20), "1")  # still over: nothing is sent twice, by either replica
    await spend(4, datetime(2026, 11, 20), "1", project="shop")  # shop's own threshold, 25% of 4
    assert [(e["subject"]["id"], e["threshold_pct"]) for e in receiver.events()[5:]] == [("shop", 25)]

    clock.now = datetime(2026, 12, 2, tzinfo=UTC)  # a new period: the thresholds count again
    await spend(5, datetime(2026, 12, 1, 8), "5")
    assert [(e["subject"]["id"], e["threshold_pct"], e["window"]["id"]) for e in receiver.events()[6:]] == [
        ("web", 50, "m202612")
    ]

    async with database.session() as session:
        alerts = (await session.exec(select(BudgetAlert))).all()
    assert len(alerts) == 6 and all(a.delivered_at is not None for a in alerts)
    assert sorted(a.attempts for a in alerts) == [1, 1, 1, 1, 1, 2]
    for replica in replicas:
        await replica.aclose()


async def test_a_refusal_is_final_and_kept_with_the_alert(database: Database, receiver: Receiver) -> None:
    receiver.statuses = [410]
    config = _config(receiver.url)
    await sync_projects(database, config.projects)
    alerts = BudgetAlerts(database, config, clock=Clock(datetime(2026, 11, 20, tzinfo=UTC)))
    await write_ledger(database, [ledger_row(1, datetime(2026, 11, 2), cost="9")])
    assert await alerts.check() == 2  # 50 and 80, found by the start-up sweep
    if deliveries := list(alerts._deliveries):  # a snapshot: the live set empties as they finish
        await asyncio.wait(deliveries)
    async with database.session() as session:
        rows = sorted((await session.exec(select(BudgetAlert))).all(), key=lambda a: a.threshold)
    # the two deliveries race for the one 410: whichever got it was not retried and says why
    assert sorted((a.attempts, a.delivered_at is None, a.last_error or "") for a in rows) == [
        (1, False, ""),
        (1, True, "HTTP 410"),
    ]
    assert alerts.failed == 1
    await alerts.aclose()


async def test_a_request_that_crosses_a_budget_posts_the_alert(
    upstream: FakeUpstream, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.statuses = []
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [
                fake_deployment(
                    "paid", upstream.base_url, locality="hosted", pricing={"input_per_mtok": 1000, "output_per_mtok": 2000}
                )
            ],
            "routes": [{"name": "auto", "candidates": ["paid"]}],
            "projects": [{"name": "team", "budget": {"usd": 1, "period": "daily", "alert_thresholds": [1]}}],
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "alerts": {"webhook_url": receiver.url, "secret": SECRET, "check_interval_s": 0.05},
        }
    )
    async with app_client(config) as client:
        answer = await client.post(
            "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
        )
        assert answer.status_code == 200, answer.text
        await client.app.state.gateway.ledger.flush()  # type: ignore[attr-defined]
        for _ in range(200):
            if receiver.received:
                break
            await asyncio.sleep(0.02)
        event = receiver.events()[0]
        assert (event["subject"]["id"], event["threshold_pct"], event["period"]) == ("team", 1, "daily")
        listed = (await client.get("/admin/alerts")).json()["data"]
        for _ in range(100):
            if listed and listed[0]["delivered_at"]:
                break
            await asyncio.sleep(0.02)
            listed = (await client.get("/admin/alerts")).json()["data"]
        assert listed[0]["id"] == event["id"] and listed[0]["delivered_at"] is not None and listed[0]["attempts"] == 1

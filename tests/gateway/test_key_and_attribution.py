"""Apps see their own spend (GET /v1/key, x-switchyard-budget-remaining-usd on every answer), and
the ledger records who asked: the request's ``user``, the key's tags and the project-tag hint."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from openai import AsyncOpenAI
from sqlmodel import select

from gateway.db.models import UsageRecord
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 10}
HEADER = "x-switchyard-budget-remaining-usd"


def _config(upstream: FakeUpstream, tmp_path: Path) -> Any:
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [
                fake_deployment(
                    "paid", upstream.base_url, locality="hosted", pricing={"input_per_mtok": 1000, "output_per_mtok": 2000}
                )
            ],
            "routes": [{"name": "auto", "candidates": ["paid"]}],
            "projects": [{"name": "team", "budget": {"usd": 50, "period": "monthly"}, "limits": {"rpm": 100}}],
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
        }
    )


async def _rows(client: httpx.AsyncClient) -> list[UsageRecord]:
    state = client.app.state.gateway  # type: ignore[attr-defined]
    await state.ledger.flush()
    async with state.db.session() as session:
        return list((await session.exec(select(UsageRecord).order_by(UsageRecord.ts))).all())


async def test_remaining_budget_on_every_answer_and_in_v1_key(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        created = await client.post(
            "/admin/keys",
            json={
                "project": "team",
                "name": "app",
                "tags": ["team:web", "env:prod"],
                "budget": {"usd": "2", "period": "daily"},
                "limits": {"rpm": 30},
            },
        )
        key = created.json()["key"]
        auth = {"authorization": f"Bearer {key}"}
        first = await client.post("/v1/chat/completions", json=CHAT, headers=auth)
        assert first.status_code == 200
        cost = Decimal(first.headers["x-switchyard-cost-usd"])
        assert cost > 0
        # the key's daily 2 USD is tighter than the project's 50: remaining after this answer
        assert Decimal(first.headers[HEADER]) == Decimal(2) - cost

        state = client.app.state.gateway  # type: ignore[attr-defined]
        await _rows(client)
        for _ in range(100):  # the settler applies the actual cost off the request path
            if state.accountant.settler.pending == 0:
                break
            await asyncio.sleep(0.02)
        info = (await client.get("/v1/key", headers=auth)).json()
        assert info["object"] == "key" and info["role"] == "app" and info["project"] == "team"
        assert info["budget"]["budget_usd"] == "2" and info["budget"]["period"] == "daily"
        assert Decimal(info["budget"]["spend_usd"]) == cost
        assert Decimal(info["budget"]["remaining_usd"]) == Decimal(2) - cost
        assert info["budget"]["period_reset_at"].endswith("T00:00:00Z")
        assert info["project_budget"]["budget_usd"] == "50" and Decimal(info["project_budget"]["spend_usd"]) == cost
        assert Decimal(info["remaining_usd"]) == Decimal(2) - cost
        assert info["limits"] == {"rpm": 30, "tpm": None} and info["project_limits"] == {"rpm": 100, "tpm": None}
        assert "key" not in info or not str(info.get("key", "")).startswith("sk-")

        second = await client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=auth)
        assert second.status_code == 200
        assert Decimal(second.headers[HEADER]) <= Decimal(2) - cost  # a stream's header is sent before its cost is known

        broke = await client.post("/admin/keys", json={"project": "team", "name": "broke", "budget": {"usd": "0.000001"}})
        refused = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {broke.json()['key']}"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
        assert refused.headers[HEADER] == "0.000001"

        finance = (await client.post("/admin/keys", json={"project": "team", "name": "fin", "role": "finance"})).json()["key"]
        mine = (await client.get("/v1/key", headers={"authorization": f"Bearer {finance}"})).json()
        assert mine["role"] == "finance" and mine["budget"]["budget_usd"] is None
        master = (await client.get("/v1/key")).json()
        assert master["role"] == "admin" and master["id"] is None


async def test_the_ledger_records_user_key_tags_and_project_tag(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        key = (await client.post("/admin/keys", json={"project": "team", "name": "app", "tags": ["zeta", "alpha"]})).json()["key"]
        sdk = AsyncOpenAI(
            api_key=key,
            base_url="http://gateway/v1",
            http_client=httpx.AsyncClient(transport=httpx.ASGITransport(client.app), base_url="http://gateway"),
        )  # type: ignore[attr-defined]
        await sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            user="customer-42",
            extra_headers={"x-switchyard-project-tag": "spring-campaign"},
        )
        await sdk.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], metadata={"x-switchyard-project-tag": "from-metadata"}
        )
        await sdk.embeddings.create(model="auto", input="hello", user="customer-7")
        rows = await _rows(client)
        assert [(r.end_user, r.key_tags, r.project_tag) for r in rows] == [
            ("customer-42", '["alpha","zeta"]', "spring-campaign"),
            (None, '["alpha","zeta"]', "from-metadata"),
            ("customer-7", '["alpha","zeta"]', None),
        ]
        # the upstream never sees the gateway's own hint
        assert all(b"x-switchyard-project-tag" not in orjson.dumps(r["body"]) for r in upstream.records)

        for group_by, expected in (
            ("user", {"customer-42", "customer-7", None}),
            ("project_tag", {"spring-campaign", "from-metadata", None}),
            ("tag", {"alpha", "zeta"}),
        ):
            report = (await client.get("/admin/reports/projects/team/breakdown", params={"group_by": group_by})).json()
            assert {r["group"] for r in report["rows"]} == expected, group_by
            assert sum(r["requests"] for r in report["rows"]) == (6 if group_by == "tag" else 3)
        usage = (await client.get("/admin/usage", params={"group_by": "user"})).json()
        assert {r["user"] for r in usage["rows"]} == {"customer-42", "customer-7", None}

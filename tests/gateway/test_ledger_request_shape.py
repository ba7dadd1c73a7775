"""Every ledger row records the API the client called and what the request needed (the signals a
policy simulation replays), whatever the client speaks: OpenAI chat, embeddings and Responses,
Anthropic Messages."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
from sqlmodel import select

from gateway.db.models import UsageRecord
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}


async def test_rows_record_endpoint_and_needs(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "deployments": [
                fake_deployment(
                    "local", upstream.base_url, capabilities=["chat", "completions", "embeddings", "tools", "json_schema"]
                )
            ],
            "routes": [{"name": "auto", "candidates": ["local"]}],
        }
    )
    async with app_client(config) as client:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app), timeout=30)  # type: ignore[attr-defined]
        sdk = openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)
        await sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "plain"}])
        stream = await sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "tools"}],
            tools=TOOLS,
            stream=True,  # type: ignore[arg-type]
        )
        async for _ in stream:
            pass
        await sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "schema"}],
            response_format=SCHEMA,  # type: ignore[arg-type]
        )
        await sdk.embeddings.create(model="auto", input="embed me")
        await sdk.responses.create(model="auto", input="via responses")
        http2 = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=client.app), timeout=30)  # type: ignore[attr-defined]
        claude = anthropic.AsyncAnthropic(api_key=MASTER_KEY, base_url="http://gateway", http_client=http2, max_retries=0)
        await claude.messages.create(model="auto", max_tokens=20, messages=[{"role": "user", "content": "via messages"}])
        state = client.app.state.gateway  # type: ignore[attr-defined]
        await state.ledger.flush()
        async with state.db.session() as session:
            rows = list((await session.exec(select(UsageRecord).order_by(UsageRecord.ts))).all())
    assert [(r.endpoint, r.needs, r.status) for r in rows] == [
        ("chat", None, 200),
        ("chat", '["stream","tools"]', 200),
        ("chat", '["json_schema"]', 200),
        ("embeddings", None, 200),
        ("responses", None, 200),
        ("messages", None, 200),
    ]

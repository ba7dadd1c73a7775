"""An upstream that answers exactly what a test scripts: a status, a JSON body or raw bytes, per
request in order (the last script repeats). It records every body it received.

For faults the OpenAI-format fake (``openai_upstream.py``) does not model: a backend that lies
about usage, sends malformed tool calls, or answers with an arbitrary status and body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Script:
    status: int = 200
    json: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def chat_reply(content: str = "ok", *, usage: Any = None, tool_calls: Any = None, finish_reason: str = "stop") -> dict[str, Any]:
    """A chat completion with whatever ``usage`` and ``tool_calls`` the test wants to lie with."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    reply: dict[str, Any] = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1,
        "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        reply["usage"] = usage
    return reply


class ScriptedUpstream:
    """``scripts`` are answered in order; the last one keeps being answered."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts) or [Script(json=chat_reply())]
        self.received: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _answer(self, request: web.Request) -> web.Response:
        self.received.append(orjson.loads(await request.read()))
        script = self.scripts[min(len(self.received), len(self.scripts)) - 1]
        body = script.raw if script.raw is not None else orjson.dumps(script.json)
        return web.Response(status=script.status, body=body, content_type="application/json", headers=script.headers)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        app.router.add_post("/v1/completions", self._answer)
        app.router.add_post("/v1/embeddings", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

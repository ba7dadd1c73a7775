"""A fast OpenAI-format streaming upstream: N tokens at a fixed rate after a first-token delay.

``python -m bench.stream_upstream --port P --tokens 200 --interval-ms 5 --first-token-ms 20``

Each token is one SSE event written on its own (no batching), on an absolute schedule so the
gaps a client sees directly are the configured interval. ``POST /_config`` changes tokens /
interval / first-token delay between scenarios; ``GET /_stats`` reports open, peak and served
streams (``POST /_stats`` with ``{"reset": true}`` zeroes them).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

_WORDS = [b" lorem", b" ipsum", b" dolor", b" sit", b" amet", b" consectetur", b" adipiscing", b" elit"]
_HEAD = b'data: {"id":"chatcmpl-bench-stream","object":"chat.completion.chunk","created":1700000000,"model":"bench-stream","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":'
_ROLE = _HEAD + b'{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
_STOP = _HEAD + b'{},"logprobs":null,"finish_reason":"stop"}]}\n\n'
_DONE = b"data: [DONE]\n\n"


def _token_event(i: int) -> bytes:
    return _HEAD + b'{"content":"' + _WORDS[i % len(_WORDS)] + b'"},"logprobs":null,"finish_reason":null}]}\n\n'


class StreamUpstream:
    def __init__(self, tokens: int, interval_ms: float, first_token_ms: float) -> None:
        self.tokens = tokens
        self.interval_s = interval_ms / 1000
        self.first_token_s = first_token_ms / 1000
        self.open = 0
        self.peak = 0
        self.served = 0
        self.aborted = 0
        self._events = [_token_event(i) for i in range(len(_WORDS))]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/_config", self.configure)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_stats", self.stats)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.Response(
            body=b'{"object":"list","data":[{"id":"bench-stream","object":"model","owned_by":"bench"}]}',
            content_type="application/json",
        )

    async def configure(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.tokens = int(body.get("tokens", self.tokens))
        self.interval_s = float(body.get("interval_ms", self.interval_s * 1000)) / 1000
        self.first_token_s = float(body.get("first_token_ms", self.first_token_s * 1000)) / 1000
        return await self.stats(request)

    async def stats(self, request: web.Request) -> web.Response:
        if request.method == "POST" and request.can_read_body:
            body = orjson.loads(await request.read() or b"{}")
            if body.get("reset"):
                self.peak, self.served, self.aborted = self.open, 0, 0
        data = {
            "open": self.open,
            "peak": self.peak,
            "served": self.served,
            "aborted": self.aborted,
            "tokens": self.tokens,
            "interval_ms": self.interval_s * 1000,
            "first_token_ms": self.first_token_s * 1000,
        }
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if not body.get("stream"):
            reply = {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 1700000000,
                "model": "bench-stream",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
            }
            return web.Response(body=orjson.dumps(reply), content_type="application/json")
        tokens, interval, first = self.tokens, self.interval_s, self.first_token_s
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await response.prepare(request)
            start = time.perf_counter() + first
            events = self._events
            for i in range(tokens):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if i == 0:
                    await response.write(_ROLE + events[0])
                else:
                    await response.write(events[i % len(events)])
            await response.write(_STOP)
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
                await response.write(
                    _HEAD[: -len(b'"choices":[{"index":0,"delta":')] + b'"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"
                )
            await response.write(_DONE)
            await response.write_eof()
            self.served += 1
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted += 1
            raise
        finally:
            self.open -= 1
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--first-token-ms", type=float, default=20.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    upstream = StreamUpstream(args.tokens, args.interval_ms, args.first_token_ms)
    web.run_app(upstream.app(), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()

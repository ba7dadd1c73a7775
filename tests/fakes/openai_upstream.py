"""A scripted OpenAI-format upstream for tests: behaviour picked by the model name or a switch.

Model names: ``error-500``, ``error-429``, ``error-503``, ``context-overflow`` (400
context_length_exceeded), ``bad-param`` (400 naming ``temperature`` in ``param``), ``html-502`` (a
proxy's HTML error page), ``long-error`` (a 400 whose message is kilobytes of multi-line text),
``slow-<seconds>`` (stalls before answering), ``cut-stream`` (a stream cut after three chunks, no
[DONE]), ``garbage`` (invalid JSON), ``nousage`` (streams carry no usage even when asked),
``echo-500`` (a 500 whose message quotes the prompt back, as careless backends do).
Anything else answers normally, in the shapes of OpenAI's published spec. ``POST /_control {"mode": "error-500"}``
forces a behaviour for every request; ``GET /_records`` lists what was received.

Runs in-process (``FakeUpstream`` in the test's event loop) or as a process:
``python -m tests.fakes.openai_upstream --port 9100 --name hosted``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import struct
import time
from typing import Any

import orjson
from aiohttp import web


def _words(name: str) -> list[str]:
    return f"Hello from {name}. This is a scripted answer with several words .".split(" ")


def _prompt_tokens(body: dict[str, Any]) -> int:
    text = orjson.dumps(body.get("messages") or body.get("prompt") or body.get("input") or "")
    return max(1, len(text) // 4)


class FakeUpstream:
    """The fake server's state and handlers."""

    def __init__(self, name: str = "fake", token_delay_s: float = 0.0) -> None:
        self.name = name
        self.token_delay_s = token_delay_s
        self.mode: str | None = None
        self.records: list[dict[str, Any]] = []
        self.aborted_streams = 0
        self.repeat = 1  # answer length multiplier (long streams for disconnect tests)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/_control", self.control)
        app.router.add_get("/_records", self.get_records)
        return app

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- control ---------------------------------------------------------------------------
    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.mode = body.get("mode")
        if body.get("clear"):
            self.records.clear()
        return web.json_response({"mode": self.mode})

    async def get_records(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.records), content_type="application/json")

    # -- behaviour -------------------------------------------------------------------------
    async def _misbehave(self, behaviour: str) -> web.StreamResponse | None:
        if behaviour.startswith("slow-"):
            await asyncio.sleep(float(behaviour.split("-", 1)[1]))
            return None
        if behaviour == "error-500":
            return _error(500, "The server had an error while processing your request.", "server_error")
        if behaviour == "error-503":
            return _error(503, "The engine is currently overloaded.", "server_error")
        if behaviour == "error-429":
            return _error(429, "Rate limit reached for requests.", "rate_limit_exceeded", {"retry-after": "1"})
        if behaviour == "context-overflow":
            return _error(
                400,
                "This model's maximum context length is 16 tokens. However, you requested 1000 tokens.",
                "context_length_exceeded",
            )
        if behaviour == "bad-param":
            return _error(400, "Invalid value for 'temperature': must be at most 2.", "invalid_value", param="temperature")
        if behaviour == "html-502":
            page = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        if behaviour == "long-error":
            detail = "\n".join(f"  at frame {i}: internal/secret/path/module_{i}.py line {i * 7}" for i in range(200))
            return _error(400, "Upstream validation failed:\n" + detail, "invalid_request")
        if behaviour == "garbage":
            return web.Response(body=b"<html>not json", content_type="application/json")
        return None

    def _behaviour(self, body: dict[str, Any]) -> str:
        return self.mode or str(body.get("model", ""))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.records.append({"path": "/v1/chat/completions", "body": body, "headers": dict(request.headers)})
        behaviour = self._behaviour(body)
        if behaviour == "echo-500":
            return _error(500, f"could not process {orjson.dumps(body.get('messages')).decode()}", "server_error")
        failed = await self._misbehave(behaviour)
        if failed is not None:
            return failed
        words = _words(self.name) * int(self.repeat)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int):
            words = words[:max_tokens]
        if body.get("stream"):
            return await self._stream_chat(request, body, words, behaviour)
        prompt = _prompt_tokens(body)
        data = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words), "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)},
        }
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def _stream_chat(
        self, request: web.Request, body: dict[str, Any], words: list[str], behaviour: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await response.prepare(request)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": body.get("model")}

        async def event(payload: dict[str, Any]) -> None:
            await response.write(b"data: " + orjson.dumps(payload) + b"\n\n")

        await event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        if not await self._stream_words(request, event, base, words, behaviour, text_key=None):
            return response
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        if include_usage and behaviour != "nousage":
            prompt = _prompt_tokens(body)
            usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
            await event({**base, "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _stream_words(
        self, request: web.Request, event: Any, base: dict[str, Any], words: list[str], behaviour: str, *, text_key: str | None
    ) -> bool:
        """One chunk per word, then the finish chunk: chat deltas, or completion ``text``
        (``text_key``). False when the stream was cut on purpose (``cut-stream``)."""

        def choice(text: str | None, finish: str | None) -> dict[str, Any]:
            if text_key is not None:
                return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            return {"index": 0, "delta": {"content": text} if text is not None else {}, "finish_reason": finish}

        try:
            for i, word in enumerate(words):
                if behaviour == "cut-stream" and i == 3:
                    request.transport.close()  # type: ignore[union-attr]
                    return False
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
                text = word if i == 0 else " " + word
                await event({**base, "choices": [choice(text, None)]})
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted_streams += 1
            raise
        await event({**base, "choices": [choice(None, "stop")]})
        return True

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.records.append({"path": "/v1/completions", "body": body, "headers": dict(request.headers)})
        behaviour = self._behaviour(body)
        failed = await self._misbehave(behaviour)
        if failed is not None:
            return failed
        words = _words(self.name)
        if isinstance(body.get("max_tokens"), int):
            words = words[: body["max_tokens"]]
        prompt = _prompt_tokens(body)
        if body.get("stream"):
            return await self._stream_completion(request, body, words, behaviour, prompt)
        data = {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "text": " ".join(words), "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)},
        }
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def _stream_completion(
        self, request: web.Request, body: dict[str, Any], words: list[str], behaviour: str, prompt: int
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await response.prepare(request)
        base = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": body.get("model")}

        async def event(payload: dict[str, Any]) -> None:
            await response.write(b"data: " + orjson.dumps(payload) + b"\n\n")

        if not await self._stream_words(request, event, base, words, behaviour, text_key="text"):
            return response
        if (body.get("stream_options") or {}).get("include_usage") and behaviour != "nousage":
            usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
            await event({**base, "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.records.append({"path": "/v1/embeddings", "body": body, "headers": dict(request.headers)})
        failed = await self._misbehave(self._behaviour(body))
        if failed is not None:
            return failed  # type: ignore[return-value]
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if all(isinstance(t, int) for t in inputs):  # one input given as token ids
            inputs = [inputs]
        base64_wanted = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _packed(_vector(str(text))) if base64_wanted else _vector(str(text))}
            for i, text in enumerate(inputs)
        ]
        prompt = _prompt_tokens(body)
        payload = {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "fake"}]})


def _vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(v / 2**32, 6) for v in struct.unpack("<8I", digest)][:dims]


def _packed(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None, param: str | None = None) -> web.Response:
    err_type = "invalid_request_error" if status == 400 else ("requests" if status == 429 else "server_error")
    body = {"error": {"message": message, "type": err_type, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=1, help="answer length multiplier (long streams)")
    args = parser.parse_args()
    fake = FakeUpstream(args.name, args.token_delay)
    fake.repeat = args.repeat
    web.run_app(fake.app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

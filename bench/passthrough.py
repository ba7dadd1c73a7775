"""The reference point: a bare ASGI pass-through (uvicorn + uvloop + httptools, aiohttp client).

``python -m bench.passthrough --upstream http://127.0.0.1:P --port Q`` forwards every request's
method, path and body to the upstream and relays the answer (streams chunk by chunk). No auth,
no parsing: the floor a Python gateway on the same stack cannot go below.
"""

import argparse

import aiohttp
import uvicorn


def make_app(upstream: str):
    session: list[aiohttp.ClientSession] = []

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
                await send({"type": "lifespan.startup.complete"})
            await session[0].close()
            return await send({"type": "lifespan.shutdown.complete"})
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        async with session[0].request(
            scope["method"], upstream + scope["path"], data=body, headers={"content-type": "application/json"}
        ) as resp:
            headers = [(b"content-type", resp.headers.get("content-type", "application/json").encode())]
            if "content-length" in resp.headers:  # a JSON answer: one read, one write
                data = await resp.read()
                headers.append((b"content-length", str(len(data)).encode()))
                await send({"type": "http.response.start", "status": resp.status, "headers": headers})
                return await send({"type": "http.response.body", "body": data})
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            async for chunk in resp.content.iter_any():  # a stream: relay each chunk as it arrives
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT (no path)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.upstream.rstrip("/")),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )

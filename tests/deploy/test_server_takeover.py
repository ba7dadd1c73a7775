"""gateway.server.DrainingServer in-process: connections still in the kernel's accept queue when the
listener closes are served, not reset; and a drained shutdown does not re-raise the signal."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import uvicorn

from gateway.app import create_app
from gateway.server import DrainingServer
from tests.helpers import fake_deployment, free_port, make_config


def _app(tmp_path: Path):
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [fake_deployment("d0", "http://127.0.0.1:9/v1")],
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "server": {"master_key": "sk-test-master", "drain_timeout_s": 5},
        }
    )
    return create_app(config)


async def _started(tmp_path: Path) -> tuple[DrainingServer, int]:
    app = _app(tmp_path)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http="httptools", lifespan="on", log_level="warning")
    server = DrainingServer(config, app.state.drain)
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    return server, port


async def test_connections_queued_in_the_kernel_when_the_listener_closes_are_served(tmp_path: Path) -> None:
    server, port = await _started(tmp_path)
    clients = []
    # Connect and send without yielding to the event loop: the server cannot accept these before
    # shutdown() runs, so they sit in the kernel's accept queue exactly as a load balancer's
    # connections do at the moment a replica stops listening.
    for i in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(f"GET /healthz HTTP/1.1\r\nhost: t\r\nx-request-id: queued-{i}\r\n\r\n".encode())
        clients.append(sock)
    await asyncio.wait_for(server.shutdown(), 15)

    assert server.adopted == 3
    for i, sock in enumerate(clients):
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after its response (connection: close)
            answer += chunk
        sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer
        assert f"x-request-id: queued-{i}".encode() in head
        assert b"connection: close" in head.lower()
        assert body == b'{"status":"ok"}'
    # ... and nothing listens any more: a new connection is refused (a load balancer retries it).
    refused = socket.socket()
    try:
        assert refused.connect_ex(("127.0.0.1", port)) != 0
    finally:
        refused.close()


async def test_a_drained_shutdown_does_not_re_raise_the_signal(tmp_path: Path) -> None:
    server, _ = await _started(tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    with server.capture_signals():
        assert signal.getsignal(signal.SIGTERM) == server.handle_exit
        server.handle_exit(signal.SIGTERM, None)  # what the signal would do
        assert server.should_exit and server.drain.draining
        await asyncio.wait_for(server.shutdown(), 15)
    # Leaving the block restored the handler and raised nothing (uvicorn's own would re-raise
    # SIGTERM here and end the process with status 143).
    assert signal.getsignal(signal.SIGTERM) == before

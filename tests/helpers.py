"""Factories shared by the tests: configs, an in-process app client, real gateway processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.config import GatewayConfig, parse_config

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-test-master"
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_config(data: dict[str, Any]) -> GatewayConfig:
    base: dict[str, Any] = {"server": {"master_key": MASTER_KEY}, "database_url": "sqlite:///:memory:"}
    base.update(data)
    return parse_config(yaml.safe_dump(base), source="test-config")


def fake_deployment(
    name: str, base_url: str, *, locality: str = "self_hosted", model: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai_compatible",
        "base_url": base_url,
        "model": model or name,
        "locality": locality,
        "capabilities": ["chat", "completions", "embeddings"],
        "timeouts": {"connect": 1, "first_byte": 2, "read": 2},
        **extra,
    }


@asynccontextmanager
async def app_client(config: GatewayConfig, **app_kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process gateway (lifespan run) and an httpx client bound to it."""
    from gateway.app import create_app

    app = create_app(config, **app_kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=AUTH, timeout=30) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


class GatewayProcess:
    """``switchyard serve`` as a real process on a free port."""

    def __init__(
        self,
        config_path: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        workers: int = 1,
        cwd: Path | None = None,
        log_level: str = "warning",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.config_path = config_path
        self.cwd = cwd or config_path.parent
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.workers = workers
        self.log_level = log_level
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config_path.with_suffix(f".{self.port}.log")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> GatewayProcess:
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the process's lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                self.log_level,
                *self.extra_args,
            ],
            cwd=self.cwd,
            env={**self.env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gateway did not start in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ---------------------------------------------------------------- real-process helpers (e2e)


def write_config(directory: Path, data: dict[str, Any], name: str = "config.yaml") -> Path:
    """Validate ``data`` as a gateway config (master key MASTER_KEY unless given) and write it as YAML."""
    text = yaml.safe_dump({"server": {"master_key": MASTER_KEY}, **data})
    parse_config(text, source=name)
    path = directory / name
    path.write_text(text)
    return path


async def start_gateways(*gateways: GatewayProcess, timeout: float = 90.0) -> None:
    """Start gateway processes in parallel without blocking the event loop (in-process fakes keep serving)."""
    results = await asyncio.gather(*(asyncio.to_thread(g.start, timeout) for g in gateways), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        await stop_gateways(*gateways)
        raise errors[0]


async def stop_gateways(*gateways: GatewayProcess, kill: bool = False) -> None:
    """Stop gateway processes in parallel (SIGTERM: graceful, the ledger flushes; ``kill``: SIGKILL)."""
    await asyncio.gather(*(asyncio.to_thread(g.stop, kill) for g in gateways))


async def postgres_ledger(pg_url: str) -> list[tuple[str, int, Decimal]]:
    """(request_id, status, cost) of every ledger row in a Postgres database, read directly."""
    import asyncpg

    conn = await asyncpg.connect(pg_url, timeout=5)
    try:
        records = await conn.fetch("SELECT request_id, status, cost_usd FROM usage_records")
    finally:
        await conn.close()
    return [(r["request_id"], r["status"], Decimal(r["cost_usd"])) for r in records]

"""Portkey's open-source gateway (``@portkey-ai/gateway``, Node) as a peer in the benchmark.

Installed once from the npm registry into ``bench/.portkey`` (git-ignored) and started as

    node --import bench/portkey_preload.mjs bench/.portkey/node_modules/@portkey-ai/gateway/build/start-server.js \
        --port=P --headless

``--headless`` leaves out the web UI and its log stream. The server has no host option: it listens
on every interface (``@hono/node-server`` without a hostname). The preloaded
``portkey_preload.mjs`` makes a ``listen()`` without a host bind 127.0.0.1 (and
:func:`start_portkey` checks the process's listening sockets and refuses to go on if any is not
on the loopback interface), and works around a Portkey bug with today's ``@hono/node-server``
that fails every stream and embeddings request (see the file).

Portkey has no config file for this: every request names its provider and upstream in headers,
``x-portkey-provider: openai`` and ``x-portkey-custom-host: http://127.0.0.1:PORT/v1`` (the same
nginx and stream upstream every target uses; 127.0.0.1 is in Portkey's default trusted custom
hosts), and the ``authorization`` header is passed on to the upstream as OpenAI's API key.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import psutil

from bench.procs import Service, Services, free_port, port_open
from bench.targets import UPSTREAM_KEY, Target

PORTKEY_VERSION = "1.15.2"
# V8 compiles the hot path after some thousands of requests: measured on this machine, Portkey's
# req/s after a 1 s warm-up at 50 connections was a quarter of what it is after 8 s.
WARMUP_S = 10.0
PORTKEY_DIR = Path(__file__).resolve().parent / ".portkey"
PRELOAD = Path(__file__).resolve().parent / "portkey_preload.mjs"
_PACKAGE = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway"
SERVER_JS = _PACKAGE / "build" / "start-server.js"


def _installed(package: str) -> str | None:
    try:
        return str(json.loads((PORTKEY_DIR / "node_modules" / package / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def portkey_version() -> str | None:
    return _installed("@portkey-ai/gateway")


def node_version(node: str) -> str:
    try:
        return subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def ensure_portkey(log: Path) -> tuple[str, Path]:
    """``(node, start-server.js)``, installing ``@portkey-ai/gateway@PORTKEY_VERSION`` into
    bench/.portkey when it is missing or another version."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed for the Portkey peer (Node 18+; apt-get install nodejs npm)")
    if portkey_version() == PORTKEY_VERSION and SERVER_JS.exists():
        return node, SERVER_JS
    print(f"installing @portkey-ai/gateway@{PORTKEY_VERSION} into {PORTKEY_DIR} (once) ...", flush=True)
    shutil.rmtree(PORTKEY_DIR, ignore_errors=True)  # a clean tree, not an upgrade of an older one
    PORTKEY_DIR.mkdir()
    manifest = {"private": True, "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION}}
    (PORTKEY_DIR / "package.json").write_text(json.dumps(manifest, indent=1))
    argv = [npm, "install", "--prefix", str(PORTKEY_DIR), "--no-audit", "--no-fund", "--loglevel=error"]
    with open(log, "ab") as out:
        if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` failed; see {log}")
    if not SERVER_JS.exists():
        raise RuntimeError(f"@portkey-ai/gateway installed but {SERVER_JS} is missing; see {log}")
    return node, SERVER_JS


def listening_addresses(pid: int) -> list[str]:
    """``host:port`` of every listening TCP socket of the process and its children."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in procs:
        try:
            connections = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found += [f"{c.laddr.ip}:{c.laddr.port}" for c in connections if c.status == psutil.CONN_LISTEN]
    return found


def exposed(addresses: list[str]) -> list[str]:
    """The addresses that are not on the loopback interface."""
    out = []
    for address in addresses:
        host = address.rsplit(":", 1)[0].strip("[]")
        try:
            if not ipaddress.ip_address(host).is_loopback:
                out.append(address)
        except ValueError:
            out.append(address)
    return out


def start_portkey(services: Services, run_dir: Path, nginx_base: str, stream_base: str) -> Target:
    node, server_js = ensure_portkey(run_dir / "portkey-install.log")
    port = free_port()
    argv = [node, "--import", PRELOAD.as_uri(), str(server_js), f"--port={port}", "--headless"]
    # NODE_ENV=production: no UI routes either way; no Redis connection string: no cache backends.
    service = services.add(
        Service("portkey", argv, log_dir=run_dir, cwd=PORTKEY_DIR, env={"NODE_ENV": "production", "REDIS_CONNECTION_STRING": ""})
    )
    service.env.pop("REDIS_CONNECTION_STRING", None)
    service.start(lambda: port_open(port), timeout=60)
    wrong = exposed(listening_addresses(service.pid))
    if wrong:
        services.stop(service)
        raise RuntimeError(f"Portkey listened on {', '.join(wrong)}, not only on 127.0.0.1: stopped it")
    base = f"http://127.0.0.1:{port}/v1"
    headers = {"authorization": f"Bearer {UPSTREAM_KEY}", "x-portkey-provider": "openai", "x-portkey-custom-host": nginx_base}
    return Target(
        "portkey",
        f"{base}/chat/completions",
        f"{base}/embeddings",
        f"{base}/chat/completions",
        headers=headers,
        stream_extra_headers={"x-portkey-custom-host": stream_base},
        service=service,
        min_warmup_s=WARMUP_S,
        note=f"@portkey-ai/gateway {portkey_version() or '?'} (@hono/node-server {_installed('@hono/node-server')}) "
        f"on Node {node_version(node).lstrip('v')}, --headless, one process; provider and upstream named "
        "per request in headers; bench/portkey_preload.mjs binds it to 127.0.0.1 and makes upstream "
        "headers mutable (a Portkey bug fails streams and embeddings otherwise)",
    )

"""The constant upstreams every target forwards to: nginx for JSON, a Python server for streams.

nginx answers ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` with fixed
OpenAI-format bodies (``return 200``: no work per request beyond HTTP). The config is written into
the run's temp dir and nginx runs in the foreground (``daemon off``) as a child process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.procs import Service, Services, free_port, http_ok

CHAT_REPLY = {
    "id": "chatcmpl-bench0000000000000000000001",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench-model",
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! The gateway forwarded this constant answer.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33},
}
COMPLETION_REPLY = {
    "id": "cmpl-bench0000000000000000000001",
    "object": "text_completion",
    "created": 1700000000,
    "model": "bench-model",
    "choices": [{"index": 0, "text": " a constant completion.", "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
}
EMBED_DIMS = 384
EMBED_REPLY = {
    "object": "list",
    "data": [
        {"object": "embedding", "index": 0, "embedding": [round(((i * 7919) % 2000 - 1000) / 1000, 6) for i in range(EMBED_DIMS)]}
    ],
    "model": "bench-embed",
    "usage": {"prompt_tokens": 8, "total_tokens": 8},
}
MODELS_REPLY = {"object": "list", "data": [{"id": "bench-model", "object": "model", "created": 0, "owned_by": "bench"}]}


def _nginx_literal(data: object) -> str:
    text = json.dumps(data, separators=(",", ":"))
    if "$" in text or "'" in text or "\\" in text:
        raise ValueError("fixed bodies must not contain $, ' or \\ (nginx would interpret them)")
    return text


def nginx_conf(run_dir: Path, port: int) -> str:
    d = run_dir
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_max_body_size 32m;
    client_body_buffer_size 256k;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/chat/completions {{ return 200 '{_nginx_literal(CHAT_REPLY)}'; }}
        location = /v1/completions {{ return 200 '{_nginx_literal(COMPLETION_REPLY)}'; }}
        location = /v1/embeddings {{ return 200 '{_nginx_literal(EMBED_REPLY)}'; }}
        location = /v1/models {{ return 200 '{_nginx_literal(MODELS_REPLY)}'; }}
        location = /healthz {{ return 200 'ok'; }}
    }}
}}
"""


def start_nginx(services: Services, nginx: str, run_dir: Path) -> str:
    """Start nginx; return its OpenAI base URL (``http://127.0.0.1:PORT/v1``)."""
    port = free_port()
    conf = run_dir / "nginx.conf"
    conf.write_text(nginx_conf(run_dir, port))
    service = services.add(
        Service("nginx", [nginx, "-c", str(conf), "-p", str(run_dir), "-e", str(run_dir / "nginx-error.log")], log_dir=run_dir)
    )
    service.start(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=15)
    return f"http://127.0.0.1:{port}/v1"


def start_stream_upstream(services: Services, run_dir: Path, *, tokens: int, interval_ms: float, first_token_ms: float) -> str:
    """Start :mod:`bench.stream_upstream`; return its OpenAI base URL."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.stream_upstream",
        "--port",
        str(port),
        "--tokens",
        str(tokens),
        "--interval-ms",
        str(interval_ms),
        "--first-token-ms",
        str(first_token_ms),
    ]
    service = services.add(Service("stream-upstream", argv, log_dir=run_dir, cwd=Path(__file__).resolve().parent.parent))
    service.start(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=30)
    return f"http://127.0.0.1:{port}/v1"

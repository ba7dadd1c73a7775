"""What the load is aimed at: direct to the upstreams, the bare pass-through, Switchyard, and the
peers (the LiteLLM proxy here, Portkey's gateway in :mod:`bench.portkey`).

Each :class:`Target` names the three URLs the scenarios POST to (JSON chat, embeddings, streamed
chat), the headers (auth) and the ``model`` each expects. Every target forwards to the *same*
nginx and stream upstream, so the differences between them are the proxies alone.

Switchyard is measured in variants (:data:`VARIANTS`): ``master`` (the master key, what exists
today) and ``features`` / ``features-redis`` (a virtual key created through the admin API, the
batched ledger, in-process or Redis admission). A variant whose features are not in this build
yet is reported as unavailable with the reason, and measured automatically once they land.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.procs import Service, Services, find_tool, free_port, http_ok, port_open

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-bench-master-0123456789"
LITELLM_KEY = "sk-bench-litellm-0123456789"
UPSTREAM_KEY = "sk-bench-upstream"


@dataclass
class Target:
    name: str
    chat_url: str
    embed_url: str
    stream_url: str
    headers: dict[str, str] = field(default_factory=dict)
    chat_model: str = "bench-model"
    embed_model: str = "bench-embed"
    stream_model: str = "bench-stream"
    service: Service | None = None  # the proxy process (None for direct)
    note: str = ""
    stream_extra_headers: dict[str, str] = field(default_factory=dict)  # over ``headers``, for streams only
    min_warmup_s: float = 0.0  # a JIT-compiled peer (Node) needs longer than the plan's warm-up to reach speed

    @property
    def stream_headers(self) -> dict[str, str]:
        """Headers for ``stream_url`` (a peer told its upstream per request, e.g. Portkey, names another one)."""
        return {**self.headers, **self.stream_extra_headers}


@dataclass
class Unavailable:
    name: str
    reason: str


def direct_target(nginx_base: str, stream_base: str) -> Target:
    return Target(
        "direct",
        f"{nginx_base}/chat/completions",
        f"{nginx_base}/embeddings",
        f"{stream_base}/chat/completions",
        note="nginx (JSON) and the Python stream upstream, no proxy",
    )


# ---------------------------------------------------------------- bare pass-through


def start_passthrough(services: Services, run_dir: Path, nginx_base: str, stream_base: str | None) -> Target:
    """One pass-through process per upstream (each forwards to exactly one base URL); no stream
    pass-through when ``stream_base`` is None."""
    bases: dict[str, str] = {}
    json_service: Service | None = None
    for label, base in (("json", nginx_base), ("stream", stream_base)):
        if base is None:
            continue
        port = free_port()
        argv = [sys.executable, "-m", "bench.passthrough", "--upstream", base.removesuffix("/v1"), "--port", str(port)]
        service = services.add(Service(f"passthrough-{label}", argv, log_dir=run_dir, cwd=ROOT))
        service.start(lambda p=port: port_open(p), timeout=30)
        bases[label] = f"http://127.0.0.1:{port}/v1"
        json_service = json_service or service
    stream = bases.get("stream", bases["json"])
    return Target(
        "passthrough",
        f"{bases['json']}/chat/completions",
        f"{bases['json']}/embeddings",
        f"{stream}/chat/completions",
        service=json_service,
        note="bench/passthrough.py: raw ASGI on uvicorn+uvloop+httptools, aiohttp client, no parsing",
    )


# ---------------------------------------------------------------- Switchyard


@dataclass(frozen=True)
class Variant:
    name: str
    virtual_key: bool = False
    redis: bool = False
    description: str = ""


VARIANTS = {
    "master": Variant("switchyard", description="master key; routing with the default detectors over a two-candidate route"),
    "features": Variant(
        "switchyard+features",
        virtual_key=True,
        description="virtual key (auth lookup), in-process budget reservation, batched SQLite ledger",
    ),
    "features-redis": Variant(
        "switchyard+features+redis", virtual_key=True, redis=True, description="as features, with Redis admission (redis_url)"
    ),
}


def switchyard_config(
    run_dir: Path, nginx_base: str, stream_base: str, *, redis_url: str | None = None, max_connections: int = 1024
) -> dict[str, Any]:
    """Routing as a real deployment would have it: a route over a self-hosted and a hosted
    candidate, rules on sensitivity and task, so every request runs the default detectors."""

    def deployment(name: str, base: str, locality: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "openai_compatible",
            "base_url": base,
            "api_key": UPSTREAM_KEY,
            "model": name.removesuffix("-local").removesuffix("-hosted"),
            "locality": locality,
            "context_window": 131072,
            "capabilities": ["chat", "completions", "embeddings"],
            "timeouts": {"connect": 5, "first_byte": 60, "read": 60},
            "max_connections": max_connections,
            **extra,
        }

    local_price = {"gpu_hour_usd": 2.5, "tokens_per_second": 2500}
    hosted_price = {"input_per_mtok": 0.15, "output_per_mtok": 0.6}
    rules = [
        {
            "name": "keep-private-data-home",
            "when": {"sensitivity": ["confidential", "restricted"]},
            "allow": {"locality": ["self_hosted"]},
        },
        {"name": "code-to-coder", "when": {"task": ["code"]}},
    ]
    return {
        "server": {"host": "127.0.0.1", "master_key": MASTER_KEY, "max_body_bytes": 8 * 1024 * 1024},
        "database_url": f"sqlite:///{run_dir}/switchyard-bench.db",
        "redis_url": redis_url,
        "deployments": [
            deployment("bench-model-local", nginx_base, "self_hosted", pricing=local_price),
            deployment("bench-model-hosted", nginx_base, "hosted", pricing=hosted_price),
            deployment("bench-stream-local", stream_base, "self_hosted", pricing=local_price),
            deployment("bench-stream-hosted", stream_base, "hosted", pricing=hosted_price),
        ],
        "routes": [
            {"name": "auto", "objective": "cheapest", "candidates": ["bench-model-local", "bench-model-hosted"], "rules": rules},
            {
                "name": "auto-stream",
                "objective": "cheapest",
                "candidates": ["bench-stream-local", "bench-stream-hosted"],
                "rules": rules,
            },
        ],
        "projects": [
            {
                "name": "bench",
                "budget": {"usd": 1_000_000, "period": "monthly"},
                "limits": {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000},
            },
        ],
        "ledger": {"spool_dir": str(run_dir / "spool")},
    }


def _post_json(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def create_virtual_key(base_url: str) -> str:
    """A virtual key for project ``bench`` through the admin API; raises with the reason when the
    build has no admin API / key store yet."""
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    status, body = _post_json(f"{base_url}/admin/projects", {"name": "bench"}, admin)
    if status not in (200, 201, 409):
        raise RuntimeError(f"POST /admin/projects answered {status}: {body.get('error', {}).get('message', body)}")
    status, body = _post_json(f"{base_url}/admin/keys", {"project": "bench", "name": "bench-load"}, admin)
    if status not in (200, 201) or "key" not in body:
        raise RuntimeError(f"POST /admin/keys answered {status}: {body.get('error', {}).get('message', body)}")
    return str(body["key"])


def start_redis(services: Services, run_dir: Path) -> str:
    server = find_tool("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    argv = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(run_dir)]
    services.add(Service("redis", argv, log_dir=run_dir)).start(lambda: port_open(port), timeout=15)
    return f"redis://127.0.0.1:{port}/0"


SERVERS = ("uvicorn", "granian")


def server_argv(server: str, python: str, config_path: Path, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
    """The command that serves Switchyard: ``switchyard serve`` (uvicorn with httptools and uvloop),
    or Granian's ASGI interface on the same app factory ``switchyard serve --workers N`` uses
    (``gateway.cli:app_from_env``, which reads the config path from ``SWITCHYARD_CONFIG``)."""
    if server == "uvicorn":
        return [
            python,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ], {}
    if server == "granian":
        return [
            python,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "warning",
            "gateway.cli:app_from_env",
        ], {"SWITCHYARD_CONFIG": str(config_path)}
    raise ValueError(f"unknown server {server!r}; choose from {', '.join(SERVERS)}")


def start_switchyard(
    services: Services,
    run_dir: Path,
    nginx_base: str,
    stream_base: str,
    *,
    variant: Variant = VARIANTS["master"],
    workers: int = 1,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    server: str = "uvicorn",
    label: str = "",
) -> Target:
    """Switchyard as ``variant`` with its own config, database (and Redis); ``label`` names
    otherwise identical instances apart (e.g. the server or interpreter they run on)."""
    redis_url = start_redis(services, run_dir) if variant.redis else None
    suffix = (
        variant.name.replace("switchyard", "").replace("+", "-")
        + (f"-w{workers}" if workers > 1 else "")
        + (f"-{label}" if label else "")
    )
    config_path = run_dir / f"switchyard{suffix}.yaml"
    config = switchyard_config(run_dir, nginx_base, stream_base, redis_url=redis_url)
    if label:
        config["database_url"] = f"sqlite:///{run_dir}/switchyard-bench{suffix}.db"
        config["ledger"] = {"spool_dir": str(run_dir / f"spool{suffix}")}
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    argv, server_env = server_argv(server, python, config_path, port, workers)
    service = services.add(
        Service(
            f"switchyard{suffix}", argv, log_dir=run_dir, cwd=run_dir, env={"PYTHONPATH": str(ROOT), **server_env, **(env or {})}
        )
    )
    base = f"http://127.0.0.1:{port}"
    service.start(lambda: http_ok(f"{base}/healthz"), timeout=90)
    token = MASTER_KEY
    if variant.virtual_key:
        try:
            token = create_virtual_key(base)
        except Exception:
            services.stop(service)
            raise
    if workers > 1:  # each worker binds lazily; wait until requests are answered
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not http_ok(f"{base}/v1/models", {"authorization": f"Bearer {token}"}):
            time.sleep(0.2)
    name = variant.name if workers == 1 else f"{variant.name} ({workers} workers)"
    return Target(
        f"{name} {label}" if label else name,
        f"{base}/v1/chat/completions",
        f"{base}/v1/embeddings",
        f"{base}/v1/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        chat_model="auto",
        embed_model="auto",
        stream_model="auto-stream",
        service=service,
        note=variant.description,
    )


# ---------------------------------------------------------------- LiteLLM proxy

LITELLM_VENV = Path(__file__).resolve().parent / ".litellm-venv"

_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn.error": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}


def ensure_litellm(log: Path) -> Path:
    """``bench/.litellm-venv/bin/litellm``, installing ``litellm[proxy]`` there when absent."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    import subprocess

    print(f"installing litellm[proxy] into {LITELLM_VENV} (once) ...", flush=True)
    with open(log, "ab") as out:
        steps = [
            [sys.executable, "-m", "venv", str(LITELLM_VENV)],
            [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
            [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"],
        ]
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode != 0:
                raise RuntimeError(f"`{' '.join(step)}` failed; see {log}")
    if not exe.exists():
        raise RuntimeError(f"litellm[proxy] installed but {exe} is missing; see {log}")
    return exe


def litellm_version() -> str | None:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        return None
    import subprocess

    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"], capture_output=True, text=True
    )
    return out.stdout.strip() or None


def start_litellm(services: Services, run_dir: Path, nginx_base: str, stream_base: str) -> Target:
    exe = ensure_litellm(run_dir / "litellm-install.log")

    def model(name: str, upstream_model: str, base: str) -> dict[str, Any]:
        return {
            "model_name": name,
            "litellm_params": {"model": f"openai/{upstream_model}", "api_base": base, "api_key": UPSTREAM_KEY},
        }

    config = {
        "model_list": [
            model("bench-model", "bench-model", nginx_base),
            model("bench-embed", "bench-embed", nginx_base),
            model("bench-stream", "bench-stream", stream_base),
        ],
        "litellm_settings": {"telemetry": False, "set_verbose": False, "json_logs": False},
        "general_settings": {"master_key": LITELLM_KEY, "disable_spend_logs": True},
    }
    config_path = run_dir / "litellm.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_config = run_dir / "litellm-logging.json"
    log_config.write_text(json.dumps(_LOGGING))
    port = free_port()
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at start
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
    }
    for unset in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST"):  # no DB, no Redis: the proxy's lightest setup
        env[unset] = ""
    service = Service(
        "litellm",
        [
            str(exe),
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
            "--log_config",
            str(log_config),
        ],
        log_dir=run_dir,
        env=env,
        cwd=run_dir,
    )
    for unset in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST"):
        service.env.pop(unset, None)
    services.add(service)
    service.start(lambda: http_ok(f"http://127.0.0.1:{port}/health/liveliness"), timeout=120)
    base = f"http://127.0.0.1:{port}/v1"
    return Target(
        "litellm",
        f"{base}/chat/completions",
        f"{base}/embeddings",
        f"{base}/chat/completions",
        headers={"authorization": f"Bearer {LITELLM_KEY}"},
        service=service,
        note=f"litellm[proxy] {litellm_version() or '?'}, --num_workers 1, no DB/Redis, access log off",
    )

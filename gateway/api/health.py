"""Liveness and readiness probes, and the Prometheus scrape endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter()


@router.get("/healthz", tags=["health"])
async def healthz() -> Response:
    """The process is alive and serving HTTP."""
    return json_response({"status": "ok"})


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> Response:
    """Config loaded and every configured dependency (database, Redis) reachable."""
    drain = getattr(request.app.state, "drain", None)
    if (drain is not None and drain.draining) or getattr(request.app.state, "draining", False):
        # Answered at once, on any connection: a load balancer must stop sending here.
        return json_response({"status": "draining", "checks": {"draining": "true"}}, status=503)
    state = request.app.state.gateway
    checks: dict[str, Any] = {"config": "ok"}
    ready = True
    probes = [("database", state.db)]
    if state.config.redis_url:
        probes.append(("redis", state.admission))
    for name, service in probes:
        ping = getattr(service, "ping", None)
        if ping is None:
            continue
        try:
            async with asyncio.timeout(2.5):
                ok = await ping()
        except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
            ok, checks[name] = False, f"unreachable: {type(exc).__name__}"
        else:
            checks[name] = "ok" if ok is not False else "unreachable"
        ready = ready and ok is not False
    backends = await probe_backends(state)
    if backends:
        checks["backends"] = backends  # reported, not gating: one backend down leaves the gateway useful
    return json_response({"status": "ready" if ready else "not_ready", "checks": checks}, status=200 if ready else 503)


async def probe_backends(state: Any) -> dict[str, str]:
    """Probe every deployment that has a health endpoint of its own (the self-hosted presets:
    vLLM ``/health``, Ollama ``/api/tags``, ...), concurrently, and feed the outcome to the circuit
    breakers, so a server that went down leaves the plans before a request finds out."""
    probed = {name: p for name, p in state.runtime.providers.items() if getattr(p, "preset", None) is not None}
    if not probed:
        return {}

    async def probe(provider: Any) -> bool:
        try:
            async with asyncio.timeout(2.5):
                return bool(await provider.health())
        except Exception:  # noqa: BLE001 - a probe reports, never raises
            return False

    results = await asyncio.gather(*(probe(p) for p in probed.values()))
    report = {}
    for name, ok in zip(probed, results, strict=True):
        if ok:
            state.breakers.record_success(name)
        else:
            state.breakers.record_failure(name)
        report[name] = "ok" if ok else "down"
    return report


@router.get("/metrics", tags=["health"])
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, attempts, tokens, spend, budgets, latency, time to first
    token, refusals, queues, breakers; with ``--workers N``, the totals of every worker.

    Needs the master key unless ``server.metrics_require_auth`` is off or the scraper is in
    ``server.trusted_networks`` (checked by the app before this runs)."""
    state = request.app.state.gateway
    await state.metrics.refresh()
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def json_response(data: object, status: int = 200) -> Response:
    return Response(content=orjson.dumps(data), status_code=status, media_type="application/json")

"""The ASGI application: lifespan (services, runtime, reload watcher), the hot OpenAI routes ahead
of everything else, FastAPI for the rest, and error handling that never leaks a stack trace or
drops a keep-alive connection."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from core.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    error_body,
    internal_error_body,
)
from gateway import __version__
from gateway.api import admin, anthropic, explain, health, key, openai, reports, responses
from gateway.asgi import Message, Receive, Scope, Send, send_json
from gateway.config import GatewayConfig, insecure_master_key, load_config
from gateway.dashboard import routes as dashboard
from gateway.dialects.anthropic import AnthropicDialect
from gateway.drain import Drain, DrainMiddleware
from gateway.executor import Executor
from gateway.health import make_breakers
from gateway.logs import remember_secrets
from gateway.metrics import GatewayMetrics
from gateway.middleware import RequestIdMiddleware
from gateway.reload import ConfigWatcher
from gateway.revisions import verify_revisions
from gateway.roles import RoleGuard
from gateway.runtime import build_runtime, close_all, warm_up
from gateway.services import StartupError, start_services
from gateway.state import GatewayState
from gateway.telemetry import LOGGED, start_telemetry
from gateway.volume import VolumeMeter

log = logging.getLogger("switchyard")
HOT_ROUTES = {**openai.HOT_ROUTES, **anthropic.HOT_ROUTES, **responses.HOT_ROUTES}


class GatewayApp(FastAPI):
    """FastAPI for the admin API, health, docs and explain; the model routes (OpenAI's, Anthropic's
    Messages, OpenAI's Responses) go straight to their ASGI handlers (:data:`HOT_ROUTES`) with no
    framework code in between. Every HTTP request passes the drain's tracker first (``gateway.drain``)."""

    tracked: DrainMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
        elif self.tracked is not None:
            await self.tracked(scope, receive, send)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request: a hot route's handler, or FastAPI; never an exception out of it."""
        state: GatewayState | None = getattr(self.state, "gateway", None)
        handler = HOT_ROUTES.get((scope["method"], scope["path"]))
        started = False
        status, began = 500, time.perf_counter()

        async def tracking_send(message: Message) -> None:
            nonlocal started, status
            started = True
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if handler is not None and state is not None:
                await handler(state, scope, receive, tracking_send)
                return
            if state is not None:
                receive = _bounded(receive, state.config.server.max_admin_body_bytes)
            await super().__call__(scope, receive, tracking_send)
        except Exception:
            if not started:
                request_id = _request_id(scope)
                log.exception("unhandled error on %s %s (request %s)", scope["method"], scope["path"], request_id)
                await send_json(tracking_send, 500, internal_error_body(request_id), {"x-request-id": request_id})
            # Otherwise the error handler below has answered and logged it already; re-raising
            # would make the server drop this keep-alive connection.
        finally:
            if state is not None and not scope.get("state", {}).get(LOGGED):  # served requests log themselves
                state.telemetry.served(scope, status, time.perf_counter() - began)


def _request_id(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id") or "unknown")


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses (413) a body over ``limit`` bytes, for every non-OpenAI route."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes for this endpoint.")
        return message

    return bounded


def create_app(
    config: GatewayConfig | None = None, *, config_path: str | Path | None = None, watch: bool = True, span_processor: Any = None
) -> GatewayApp:
    """Build the gateway from a config object or a config file (which is then watched for changes).

    ``span_processor`` turns tracing on with that OpenTelemetry span processor (tests, benchmarks);
    otherwise the config and the ``OTEL_*`` variables decide (``gateway.telemetry``)."""
    if config is None:
        if config_path is None:
            raise ValueError("create_app needs a config or a config_path")
        config = load_config(config_path)
    path = Path(config_path) if config_path is not None else None
    initial = config
    drain = Drain(config.server.drain_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        remember_secrets(initial)
        if insecure_master_key(initial):
            log.warning("running with the published development master key; set SWITCHYARD_MASTER_KEY in production")
        metrics = GatewayMetrics()
        # a pinned model file that does not match refuses the start (ConfigError names the key path)
        await asyncio.to_thread(verify_revisions, initial, path or "<config>")
        runtime = build_runtime(initial)
        await warm_up(runtime)
        try:
            services = await start_services(initial, metrics)
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            await close_all(runtime)
            raise
        breakers = make_breakers(initial)
        telemetry = start_telemetry(initial, metrics, span_processor)
        volume = VolumeMeter.for_policy(initial.routing.volume, initial.redis_url)
        state = GatewayState(
            runtime=runtime,
            breakers=breakers,
            executor=Executor(breakers, initial.retries),
            services=services,
            metrics=metrics,
            telemetry=telemetry,
            config_path=path,
            volume=volume,
        )
        metrics.watch(state)
        await breakers.start()
        await volume.start()
        # Everything allocated so far (config, compiled detectors, SDK modules) lives as long as
        # the process: move it out of the collector's sight so full collections stay short.
        gc.collect()
        gc.freeze()
        app.state.gateway = state
        app.state.draining = False
        watcher = None
        if path is not None and watch:
            watcher = ConfigWatcher(state, path, initial.server.reload_interval_s)
            watcher.start()
        try:
            yield
        finally:
            app.state.draining = True
            if watcher is not None:
                await watcher.aclose()
            try:
                await close_all(state.runtime)
            finally:
                await breakers.aclose()
                await volume.aclose()
                try:
                    await services.aclose()
                finally:
                    await metrics.aclose()
                    await telemetry.aclose()

    app = GatewayApp(
        title="Switchyard",
        version=__version__,
        description="OpenAI-compatible model gateway that routes by data sensitivity, task and cost.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},  # it reads the environment per request
    )
    app.include_router(openai.router)
    app.include_router(anthropic.router)
    app.include_router(responses.router)
    app.include_router(explain.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(reports.router)
    app.include_router(key.router)
    app.include_router(dashboard.router)
    _install_error_handlers(app)
    app.state.drain = drain
    app.tracked = DrainMiddleware(app.dispatch, drain)  # every request, hot or not, known to the drain
    app.add_middleware(RoleGuard, routes=app.router.routes)  # who may call what: gateway/roles.py
    app.add_middleware(RequestIdMiddleware)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        state = getattr(request.app.state, "gateway", None)
        if state is not None:
            state.metrics.observe_refusal(exc.status, exc.code)
        headers = dict(exc.headers)
        if isinstance(exc, PayloadTooLarge):
            headers["connection"] = "close"
        return Response(error_body(exc), status_code=exc.status, media_type="application/json", headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        err = InvalidRequest(f"{param or 'request'}: {first.get('msg')}", param=param)
        return Response(error_body(err), status_code=400, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            err: GatewayError = ModelNotFound(f"Unknown path {request.url.path}", code="not_found")
            err.type = "invalid_request_error"
        else:
            err = GatewayError(str(exc.detail), status=exc.status_code, code="http_error")
            err.type = "invalid_request_error" if exc.status_code < 500 else "api_error"
        if request.url.path.startswith("/v1/messages"):  # e.g. a GET: still Anthropic's shape there
            return Response(AnthropicDialect().error(err), status_code=exc.status_code, media_type="application/json")
        return Response(error_body(err), status_code=exc.status_code, media_type="application/json")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", "unknown")
        log.error("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id, exc_info=exc)
        return Response(
            internal_error_body(request_id), status_code=500, media_type="application/json", headers={"x-request-id": request_id}
        )

"""The ASGI application: lifespan (runtime, reload watcher), routes, and one error handler."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from core.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    error_body,
    internal_error_body,
)
from gateway import __version__, explain
from gateway.api import admin, health, key, openai, reports
from gateway.config import GatewayConfig, insecure_master_key, load_config
from gateway.dashboard import routes as dashboard
from gateway.executor import Executor
from gateway.health import CircuitBreakers
from gateway.middleware import RequestIdMiddleware
from gateway.reload import ConfigWatcher
from gateway.roles import RoleGuard
from gateway.runtime import build_runtime, close_all, warm_up
from gateway.services import StartupError, start_services
from gateway.state import GatewayState

log = logging.getLogger("switchyard")


def create_app(config: GatewayConfig | None = None, *, config_path: str | Path | None = None, watch: bool = True) -> FastAPI:
    """Build the gateway from a config object or a config file (which is then watched for changes)."""
    if config is None:
        if config_path is None:
            raise ValueError("create_app needs a config or a config_path")
        config = load_config(config_path)
    path = Path(config_path) if config_path is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if insecure_master_key(config):
            log.warning("running with the published development master key; set SWITCHYARD_MASTER_KEY in production")
        breakers = CircuitBreakers(config.circuit_breaker.failure_threshold, config.circuit_breaker.cooldown_s)
        state = GatewayState(
            runtime=build_runtime(config), breakers=breakers, executor=Executor(breakers, config.retries), config_path=path
        )
        await warm_up(state.runtime)
        try:
            services = await start_services(config, state.metrics)
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            await close_all(state.runtime)
            raise

        state.db, state.keys, state.admission, state.ledger = services.db, services.keys, services.admission, services.ledger
        state.accountant = services.accountant
        state.extras["on_reload"] = services.on_reload
        state.extras["alerts"] = services.alerts
        state.metrics.watch(state)
        # Everything allocated so far (config, compiled detectors, SDK modules) lives as long as
        # the process: move it out of the collector's sight so full collections stay short.
        gc.collect()
        gc.freeze()
        app.state.gateway = state
        app.state.draining = False
        watcher = None
        if path is not None and watch:
            watcher = ConfigWatcher(state, path, config.server.reload_interval_s)
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
                await services.aclose()

    app = FastAPI(
        title="Switchyard",
        version=__version__,
        description="OpenAI-compatible model gateway that routes by data sensitivity, task and cost.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},  # it reads the environment per request
    )
    app.router.routes.extend(openai.fast_routes)
    app.include_router(openai.router)
    app.include_router(health.router)
    app.include_router(explain.router)
    app.include_router(admin.router)
    app.include_router(reports.router)
    app.include_router(key.router)
    app.include_router(dashboard.router)
    _install_error_handlers(app)
    app.add_middleware(RoleGuard, routes=app.router.routes)  # who may call what: gateway/roles.py
    app.add_middleware(RequestIdMiddleware)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        state = getattr(request.app.state, "gateway", None)
        if state is not None:
            state.metrics.observe_refusal(exc.status, exc.code)
        return Response(error_body(exc), status_code=exc.status, media_type="application/json", headers=exc.headers)

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
        return Response(error_body(err), status_code=exc.status_code, media_type="application/json")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", "unknown")
        log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id)
        return Response(internal_error_body(request_id), status_code=500, media_type="application/json")

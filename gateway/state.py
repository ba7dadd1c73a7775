"""The gateway's process-wide state, built once in the app's lifespan and kept on ``app.state``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.errors import AuthUnavailable
from gateway.accounting import Accountant
from gateway.admission import Admission
from gateway.auth import Caller, api_key_from, invalid_key, is_master_key
from gateway.config import GatewayConfig
from gateway.db import Database
from gateway.executor import Executor
from gateway.health import CircuitBreakers
from gateway.keys import KeyStore
from gateway.ledger import LedgerWriter
from gateway.logs import remember_secrets
from gateway.metrics import GatewayMetrics
from gateway.runtime import Runtime
from gateway.services import Services
from gateway.telemetry import Telemetry
from gateway.volume import VolumeMeter

log = logging.getLogger("switchyard")


@dataclass(eq=False)
class GatewayState:
    """Shared by every request: the current runtime (swapped on reload) and long-lived services."""

    runtime: Runtime
    breakers: CircuitBreakers
    executor: Executor
    services: Services
    metrics: GatewayMetrics
    telemetry: Telemetry
    config_path: Path | None = None
    model_use: dict[str, float] = field(default_factory=dict)  # model name -> when last asked for (monotonic)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # "now" for reports (tests set it)
    volume: VolumeMeter = field(default_factory=VolumeMeter)  # each project's request rate (when.volume)

    @property
    def config(self) -> GatewayConfig:
        return self.runtime.config

    @property
    def accountant(self) -> Accountant:
        return self.services.accountant

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def keys(self) -> KeyStore:
        return self.services.keys

    @property
    def ledger(self) -> LedgerWriter:
        return self.services.ledger

    @property
    def admission(self) -> Admission:
        return self.services.admission

    def swap(self, runtime: Runtime) -> Runtime:
        remember_secrets(runtime.config)
        old, self.runtime = self.runtime, runtime
        self.breakers.configure(runtime.config.circuit_breaker.failure_threshold, runtime.config.circuit_breaker.cooldown_s)
        self.executor.retries = runtime.config.retries
        self.volume.configure(runtime.config.routing.volume)
        return old

    async def authenticate(self, headers: Mapping[str, str], client_host: str | None = None) -> Caller:
        """The caller behind the request's API key, or a 401 (a 503 when keys cannot be checked).

        Which roles a route admits is checked by the caller of this (``gateway.roles``)."""
        token = api_key_from(headers)
        config = self.config
        if is_master_key(token, config.server.master_key.get_secret_value()):
            return Caller(project=self.runtime.default_project, is_master=True, role="admin")
        try:
            info = await self.keys.authenticate(token)
        except Exception as exc:  # noqa: BLE001 - the database is down and the key is not cached
            self.metrics.observe_auth_unavailable()
            log.error("key lookup failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            raise AuthUnavailable(
                "API keys cannot be checked right now (the key store is unreachable); retry shortly.",
                headers={"retry-after": "2"},
            ) from None
        if info is None:
            raise invalid_key(token)
        return Caller(
            project=info.project,
            key_id=info.id,
            key_name=info.name,
            tags=frozenset(info.tags or ()),
            allowed_models=tuple(info.models or ()),
            key_info=info,
            role=info.role,
            scope=info.projects,
        )

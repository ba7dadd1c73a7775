"""The gateway's process-wide state, created in the app's lifespan and kept on ``app.state``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request

from gateway.accounting import Accountant
from gateway.auth import Caller, bearer_token, invalid_key, is_master_key
from gateway.config import GatewayConfig
from gateway.executor import Executor
from gateway.health import CircuitBreakers
from gateway.metrics import GatewayMetrics
from gateway.runtime import Runtime

log = logging.getLogger("switchyard")


@dataclass
class GatewayState:
    """Shared by every request: the current runtime (swapped on reload) and long-lived services."""

    runtime: Runtime
    breakers: CircuitBreakers
    executor: Executor
    config_path: Path | None = None
    accountant: Accountant = field(default_factory=lambda: Accountant(None, None))
    # Long-lived services (gateway.services), set in the app's lifespan.
    db: Any = None
    keys: Any = None
    ledger: Any = None
    admission: Any = None
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> GatewayConfig:
        return self.runtime.config

    def swap(self, runtime: Runtime) -> Runtime:
        old, self.runtime = self.runtime, runtime
        self.breakers.configure(runtime.config.circuit_breaker.failure_threshold, runtime.config.circuit_breaker.cooldown_s)
        self.executor.retries = runtime.config.retries
        return old

    async def authenticate(self, request: Request) -> Caller:
        """The caller behind the request's bearer token, or a 401."""
        known = request.scope.get("state", {}).get("caller")  # authenticated once by gateway.roles.RoleGuard
        if known is not None:
            return known  # type: ignore[no-any-return]
        token = bearer_token(request)
        if is_master_key(token, self.config.server.master_key.get_secret_value()):
            return Caller(project=self.config.projects[0].name if self.config.projects else "default", is_master=True, role="admin")
        if self.keys is not None:
            info = await self.keys.authenticate(token)
            if info is not None:
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
        raise invalid_key(token)

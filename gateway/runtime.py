"""Everything derived from one config: the compiled router and the live provider adapters.

A reload builds a new :class:`Runtime` and swaps it in; requests already running keep the one
they started with. Adapters whose deployment config did not change are carried over (an
embedded model is not loaded twice); dropped ones are closed after in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.asgi import BodyLimits
from gateway.config import GatewayConfig, ProjectConfig
from gateway.costmap import cost_entry
from gateway.task_classifier import build_task_classifier, plan_executor
from providers.base import Provider
from providers.registry import build_provider
from providers.settings import DeploymentConfig
from providers.tokens import decode_token_ids
from routing.pricing import prices_from
from routing.router import Router
from routing.types import DeploymentProfile, Sensitivity

log = logging.getLogger("switchyard.runtime")

ProviderFactory = Callable[[DeploymentConfig], Provider]


@dataclass(eq=False)
class Runtime:
    """One config's compiled router and providers, and what is derived from the config once."""

    config: GatewayConfig
    router: Router
    profiles: dict[str, DeploymentProfile]
    providers: dict[str, Provider]
    deployment_configs: dict[str, DeploymentConfig] = field(default_factory=dict)
    in_flight: int = 0
    # Where requests are planned when the task classifier may block (routing.task_classifier:
    # embedded); None: on the event loop, as the heuristic is microseconds.
    plan_executor: Executor | None = None
    created: int = field(default_factory=lambda: int(time.time()))  # the models' "created" in /v1/models
    projects: dict[str, ProjectConfig] = field(init=False)
    default_project: str = field(init=False)  # the master key's project
    body_limits: BodyLimits = field(init=False)
    has_free_deployment: bool = field(init=False)  # a spent budget still reaches a free deployment
    cheapest_request_usd: Decimal = field(init=False)  # one prompt token and one output token, at the cheapest prices

    def __post_init__(self) -> None:
        config = self.config
        self.projects = {p.name: p for p in config.projects}
        self.default_project = config.projects[0].name if config.projects else "default"
        server = config.server
        self.body_limits = BodyLimits(server.max_body_bytes, server.body_idle_timeout_s, server.body_timeout_s)
        self.has_free_deployment = any(not (p.prices.input_per_mtok or p.prices.output_per_mtok) for p in self.profiles.values())
        self.cheapest_request_usd = min(
            (Decimal(str(p.prices.input_per_mtok + p.prices.output_per_mtok)) / 1_000_000 for p in self.profiles.values()),
            default=Decimal(0),
        )


def deployment_profile(dep: DeploymentConfig) -> DeploymentProfile:
    """The router's view of a deployment: locality, capabilities, context and prices."""
    p = dep.pricing
    entry = cost_entry(dep.model) if dep.provider == "litellm" else None
    prices = prices_from(
        input_per_mtok=_f(p.input_per_mtok),
        output_per_mtok=_f(p.output_per_mtok),
        cached_input_per_mtok=_f(p.cached_input_per_mtok),
        gpu_hour_usd=_f(p.gpu_hour_usd),
        tokens_per_second=p.tokens_per_second,
        cost_map_entry=entry,
    )
    return DeploymentProfile(
        name=dep.name,
        provider=dep.provider,
        model=dep.model,
        locality=dep.locality,
        capabilities=frozenset(dep.capabilities),
        context_window=dep.context_window,
        quality=dep.quality,
        prices=prices,
        latency_ms=dep.latency_ms,
        unscannable=Sensitivity.parse(dep.unscannable),
        kind=dep.kind,
        group=dep.group,
        weight=dep.weight,
        approved_for=frozenset(dep.approved_for),
        region=dep.region,
        license=dep.license,
    )


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def compile_policy(
    config: GatewayConfig, deployments: list[DeploymentConfig] | None = None
) -> tuple[Router, dict[str, DeploymentProfile]]:
    """The router over the enabled deployments (or over ``deployments``): the others vanish from every route."""
    enabled = config.enabled_deployments if deployments is None else deployments
    profiles = {d.name: deployment_profile(d) for d in enabled}
    routes = [r.model_copy(update={"candidates": [c for c in r.candidates if c in profiles]}) for r in config.routes]
    routes = [r for r in routes if r.candidates]
    router = Router(
        routes,
        list(profiles.values()),
        config.sensitivity,
        config.routing,
        task_classifier=build_task_classifier(config.routing),
        token_decoder=decode_token_ids,
    )
    return router, profiles


def build_runtime(
    config: GatewayConfig,
    previous: Runtime | None = None,
    factory: ProviderFactory = build_provider,
) -> Runtime:
    """Compile ``config``; reuse the previous runtime's adapters where the deployment is unchanged."""
    enabled = config.enabled_deployments
    router, profiles = compile_policy(config)
    providers: dict[str, Provider] = {}
    for dep in enabled:
        old_cfg = previous.deployment_configs.get(dep.name) if previous else None
        if previous is not None and old_cfg == dep and dep.name in previous.providers:
            providers[dep.name] = previous.providers[dep.name]
        else:
            providers[dep.name] = factory(dep)
    return Runtime(
        config=config,
        router=router,
        profiles=profiles,
        providers=providers,
        deployment_configs={d.name: d for d in enabled},
        plan_executor=plan_executor(router.signals.task_classifier),
    )


async def warm_up(runtime: Runtime, previous: Runtime | None = None) -> None:
    """Load models / import SDKs before traffic arrives; a failure is logged, never fatal
    (the deployment then fails its requests and the breaker takes it out of plans; a task
    classifier that cannot load leaves every request to the heuristic, and says so in the reason)."""
    classifier_start = getattr(runtime.router.signals.task_classifier, "start", None)
    if classifier_start is not None:
        try:
            await asyncio.wrap_future(classifier_start())
        except Exception as exc:  # noqa: BLE001
            log.error("the embedded task classifier failed to load: %s: %s", type(exc).__name__, exc)
    for name, provider in runtime.providers.items():
        if previous is not None and previous.providers.get(name) is provider:
            continue
        start = getattr(provider, "start", None)
        if start is None:
            continue
        try:
            await start()
        except Exception as exc:  # noqa: BLE001
            log.error("deployment %s failed to start: %s: %s", name, type(exc).__name__, exc)


async def retire(old: Runtime, new: Runtime, grace_s: float = 30.0) -> None:
    """Close the adapters ``new`` no longer uses, once ``old``'s in-flight requests are done."""
    dropped = [p for name, p in old.providers.items() if new.providers.get(name) is not p]
    if not dropped:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while old.in_flight > 0 and loop.time() < deadline:  # noqa: ASYNC110 - bounded, once per reload
        await asyncio.sleep(0.1)
    for provider in dropped:
        try:
            await provider.aclose()
        except Exception:
            log.exception("closing provider %s failed", getattr(provider, "name", "?"))


async def close_all(runtime: Runtime) -> None:
    for provider in runtime.providers.values():
        try:
            await provider.aclose()
        except Exception:
            log.exception("closing provider %s failed", getattr(provider, "name", "?"))

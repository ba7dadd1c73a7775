"""The config file: strict schema, ``${VAR}`` / ``${VAR:-default}`` interpolation, cross-checks.

``load_config(path)`` returns a validated :class:`GatewayConfig` or raises :class:`ConfigError`
whose message names the file, the key path and the reason, e.g.
``config.yaml: routes[0].candidates[2]: unknown deployment 'gpt-5'``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.literals import Level
from core.strict import Strict
from gateway.measured.settings import MeasurementsConfig
from providers.settings import DeploymentConfig, SpendCap
from routing.governance import Requires
from routing.spec import Route, RoutingDefaults, SensitivityPolicy

DEV_MASTER_KEY = "sk-switchyard-dev-master"


class ConfigError(Exception):
    """A config that cannot be used; the message names the file, key path and reason."""


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    master_key: SecretStr = SecretStr(DEV_MASTER_KEY)
    workers: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    reload_interval_s: float = Field(default=1.0, gt=0)  # how often the config file is checked
    # After SIGTERM, in-flight requests and streams get this long to finish; the rest are ended
    # with an OpenAI-shaped error (gateway.drain). Read at start. ``graceful_shutdown_s`` is the
    # older name of the same setting and is honoured when ``drain_timeout_s`` is not given.
    drain_timeout_s: float = Field(default=30.0, ge=0)
    graceful_shutdown_s: float = Field(default=30.0, ge=0)
    body_idle_timeout_s: float = Field(default=15.0, gt=0)  # the longest pause while a request body arrives
    body_timeout_s: float = Field(default=120.0, gt=0)  # the longest a whole request body may take
    max_admin_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # admin API and dashboard forms
    reload_debounce_s: float = Field(default=0.5, ge=0)  # a changed config must hold still this long
    model_in_use_s: float = Field(default=3600, ge=0)  # a model asked for within this is "in use" for reloads
    # Closed by default: /metrics (spend per project is visible there) and /docs + /openapi.json
    # need the master key unless the caller is in trusted_networks or the flag is turned off.
    metrics_require_auth: bool = True
    docs_require_auth: bool = True
    trusted_networks: list[str] = Field(default_factory=list)  # CIDRs, e.g. the Prometheus pod network
    # The published development master key is refused on a non-loopback host, and a reload that
    # falls back to it is refused, unless this says it is meant.
    allow_dev_master_key: bool = False

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network: {network!r} ({exc})") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _older_drain_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "graceful_shutdown_s" in data and "drain_timeout_s" not in data:
            return {**data, "drain_timeout_s": data["graceful_shutdown_s"]}
        return data


class Budget(Strict):
    usd: Decimal = Field(ge=0)
    period: Literal["daily", "weekly", "monthly", "total"] = "monthly"
    alert_thresholds: list[int] | None = None  # percent of the budget; None: alerts.thresholds

    @field_validator("alert_thresholds")
    @classmethod
    def _thresholds(cls, value: list[int] | None) -> list[int] | None:
        return check_thresholds(value)


def check_thresholds(value: list[int] | None) -> list[int] | None:
    """Alert thresholds: whole percents from 1 to 1000, each once; returned sorted."""
    if value is None:
        return None
    if any(not 1 <= t <= 1000 for t in value):
        raise ValueError("alert thresholds are whole percents between 1 and 1000")
    if len(set(value)) != len(value):
        raise ValueError("alert thresholds must not repeat")
    return sorted(value)


class Limits(Strict):
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class ProjectConfig(Strict):
    name: str = Field(min_length=1)
    budget: Budget | None = None
    limits: Limits = Limits()
    sensitivity_floor: Level = "public"
    # A request the key's or project's budget cannot pay for: refuse (429 budget_exceeded), or
    # downgrade (route it to a deployment that costs nothing; 429 only when none is permitted).
    on_budget_exhausted: Literal["refuse", "downgrade"] = "refuse"
    # hard constraints on the deployments that may serve this project's keys, e.g.
    # {approved_for: commercial, regions: [eu]} (routing/governance.py)
    requires: Requires | None = None


class RetryConfig(Strict):
    """Retries of one deployment before falling back to the next candidate."""

    max_attempts_per_deployment: int = Field(default=2, ge=1, le=10)
    backoff_base_s: float = Field(default=0.05, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)


class CircuitBreakerConfig(Strict):
    failure_threshold: int = Field(default=5, ge=1)  # consecutive failures that open the circuit
    cooldown_s: float = Field(default=30.0, gt=0)
    # With redis_url set, breaker state is shared by every replica (gateway.health_sync); the
    # request path never waits for Redis: it reads a local copy refreshed every sync_interval_s.
    shared: bool = True
    sync_interval_s: float = Field(default=0.5, gt=0, le=60)


class LedgerConfig(Strict):
    batch_size: int = Field(default=200, ge=1)
    flush_interval_ms: int = Field(default=200, ge=1)
    spool_dir: str = "./spool"


class ReportingConfig(Strict):
    """Finance reports: savings are measured against ``reference_model``'s prices."""

    reference_model: str | None = None  # a deployment name or a model in litellm's price map


class AlertsConfig(Strict):
    """Budget alerts: a signed JSON POST to ``webhook_url`` once per threshold, subject and budget period."""

    webhook_url: str | None = None  # None: alerts are recorded (GET /admin/alerts) but not posted
    secret: SecretStr | None = None  # HMAC-SHA256 key of the x-switchyard-signature header
    thresholds: list[int] = Field(default_factory=lambda: [50, 80, 100])  # percent of each budget
    max_attempts: int = Field(default=6, ge=1, le=20)
    timeout_s: float = Field(default=5.0, gt=0)
    backoff_s: float = Field(default=1.0, gt=0)  # doubles after every failed attempt
    check_interval_s: float = Field(default=2.0, gt=0)  # how often new spend is compared with thresholds

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: list[int]) -> list[int]:
        return check_thresholds(value) or []

    @field_validator("webhook_url", "secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class DashboardConfig(Strict):
    """The finance dashboard at /dashboard."""

    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    session_secret: SecretStr | None = None  # signs session cookies; default: derived from server.master_key


class TelemetryConfig(Strict):
    """OpenTelemetry traces. Off unless an OTLP endpoint is set here or in the environment
    (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``); the other standard
    ``OTEL_*`` variables (service name, resource, headers, timeout, sampler, batch sizes) apply."""

    otlp_endpoint: str | None = None  # e.g. http://otel-collector:4318 (the /v1/traces path is added)
    service_name: str | None = None  # set here it wins over OTEL_SERVICE_NAME; "switchyard" when neither is set
    enabled: bool = True  # false: no traces even when an OTEL_* endpoint is set

    @field_validator("otlp_endpoint", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", "null", "none") else value

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL (OTLP over HTTP), not {value!r}")
        return value


class LoggingConfig(Strict):
    """Process logs on stderr and one line per request on stdout, both in one ``format``.

    Prompts and completions appear in request lines only with ``include_bodies``, and then only
    after the sensitivity detectors have masked what they find."""

    format: Literal["json", "text"] = "json"
    level: Literal["critical", "error", "warning", "info", "debug"] = "info"  # `serve --log-level` overrides
    requests: bool = True  # the request log on stdout (independent of `level`)
    include_bodies: bool = False
    max_body_chars: int = Field(default=2000, ge=0)  # per logged string, after masking


class GatewayConfig(Strict):
    """The whole config file."""

    server: ServerConfig = ServerConfig()
    database_url: str = "sqlite:///./switchyard.db"
    redis_url: str | None = None
    deployments: list[DeploymentConfig] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)
    projects: list[ProjectConfig] = Field(default_factory=lambda: [ProjectConfig(name="default")])
    sensitivity: SensitivityPolicy = SensitivityPolicy()
    routing: RoutingDefaults = RoutingDefaults()
    retries: RetryConfig = RetryConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    ledger: LedgerConfig = LedgerConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    logging: LoggingConfig = LoggingConfig()
    # Model names (routes or deployments) a reload may remove although clients used them
    # recently: naming them here says the removal is meant.
    retired_models: list[str] = Field(default_factory=list)
    reporting: ReportingConfig = ReportingConfig()
    alerts: AlertsConfig = AlertsConfig()
    dashboard: DashboardConfig = DashboardConfig()
    # spend caps per provider (a litellm prefix such as `openai`, or a provider name): gateway.measured
    provider_caps: dict[str, SpendCap] = Field(default_factory=dict)
    measurements: MeasurementsConfig = MeasurementsConfig()

    @model_validator(mode="after")
    def _provider_caps_known(self) -> GatewayConfig:
        known = sorted({d.billing_provider for d in self.deployments})
        unknown = [
            f"provider_caps.{name}: no deployment has provider '{name}'; expected one of {', '.join(known)}"
            for name in self.provider_caps
            if name not in known
        ]
        if unknown:
            raise ValueError("\n".join(unknown))
        return self

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", "null", "none") else value

    @model_validator(mode="after")
    def _cross_references(self) -> GatewayConfig:
        errors: list[str] = []
        names: dict[str, int] = {}
        for i, dep in enumerate(self.deployments):
            if dep.name in names:
                errors.append(f"deployments[{i}].name: duplicate deployment name '{dep.name}'")
            names[dep.name] = i
        route_names: set[str] = set()
        for r, route in enumerate(self.routes):
            if route.name in route_names:
                errors.append(f"routes[{r}].name: duplicate route name '{route.name}'")
            if route.name in names:
                errors.append(f"routes[{r}].name: '{route.name}' is already a deployment name")
            route_names.add(route.name)
            for c, cand in enumerate(route.candidates):
                if cand not in names:
                    errors.append(f"routes[{r}].candidates[{c}]: unknown deployment '{cand}'")
            for f, fb in enumerate(route.fallbacks or []):
                if fb not in route.candidates:
                    errors.append(f"routes[{r}].fallbacks[{f}]: '{fb}' is not one of the route's candidates")
            for k, rule in enumerate(route.rules):
                for p, pref in enumerate(rule.prefer):
                    if pref not in route.candidates:
                        errors.append(f"routes[{r}].rules[{k}].prefer[{p}]: '{pref}' is not one of the route's candidates")
                for part in ("allow", "deny"):
                    flt = getattr(rule, part)
                    for d, dep_name in enumerate((flt.deployments or []) if flt else []):
                        if dep_name not in names:
                            errors.append(f"routes[{r}].rules[{k}].{part}.deployments[{d}]: unknown deployment '{dep_name}'")
        project_names: set[str] = set()
        for p, project in enumerate(self.projects):
            if project.name in project_names:
                errors.append(f"projects[{p}].name: duplicate project name '{project.name}'")
            project_names.add(project.name)
        reference = self.reporting.reference_model
        if reference and reference not in names:
            from gateway.costmap import (
                cost_entry,  # reads litellm's price map only when it is needed
            )

            if cost_entry(reference) is None:
                errors.append(
                    f"reporting.reference_model: '{reference}' is neither a deployment nor a model in litellm's price map"
                )
        if self.routing.task_classifier == "embedded":
            from gateway.task_classifier import embedded_unavailable

            problem = embedded_unavailable()
            if problem:
                errors.append(f"routing.task_classifier: 'embedded' {problem}; or choose 'heuristic'")
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @property
    def enabled_deployments(self) -> list[DeploymentConfig]:
        return [d for d in self.deployments if d.is_enabled]

    def deployment(self, name: str) -> DeploymentConfig | None:
        return next((d for d in self.deployments if d.name == name), None)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
ENV_REFERENCE = _ENV_REF  # ``${NAME}`` / ``${NAME:-default}``; group 1 is the variable's name


def interpolate_env(text: str, environ: Mapping[str, str] | None = None, *, source: str = "<config>") -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in one string; an unset bare ``${VAR}`` is an error."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value not in (None, ""):
            return value
        if default is not None:
            return default
        if value == "":
            return ""
        raise ConfigError(f"{source}: environment variable {name} is not set (write ${{{name}:-}} to allow empty)")

    return _ENV_REF.sub(substitute, text)


def _interpolate_tree(node: Any, environ: Mapping[str, str] | None, source: str, path: str = "") -> Any:
    # Values only, after YAML parsing: comments are never expanded and an environment value can
    # never inject YAML structure.
    if isinstance(node, str):
        return interpolate_env(node, environ, source=f"{source}: {path}" if path else source)
    if isinstance(node, list):
        return [_interpolate_tree(v, environ, source, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, environ, source, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    return node


def _format_pydantic_error(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        for piece in message.split("\n"):
            # cross-reference errors already carry their own key path
            lines.append(f"{source}: {piece}" if not path else f"{source}: {path}: {piece}")
    return "\n".join(lines)


def parse_config(text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Validate config text; raise :class:`ConfigError` naming the key path on any problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    data = _interpolate_tree(data, environ, source)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_pydantic_error(source, exc)) from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate a config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=str(file), environ=environ)


def insecure_master_key(config: GatewayConfig) -> bool:
    """True when the gateway would run with the published development master key."""
    return config.server.master_key.get_secret_value() == DEV_MASTER_KEY

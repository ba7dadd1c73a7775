"""What a config change does, and whether a reload may apply it: pure functions over two configs.

A reload is refused when it would take away something still in use without saying so: a model
name (route or deployment) that clients asked for recently, unless the new file lists it under
``retired_models``; or the master key, falling back to the published development key, unless
``server.allow_dev_master_key`` says that is meant. Every applied change is logged as a diff
summary, so the log says what a reload did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.config import DEV_MASTER_KEY, GatewayConfig


def model_names(config: GatewayConfig) -> set[str]:
    """Every name a client may put in ``model``: routes and enabled deployments."""
    return {r.name for r in config.routes} | {d.name for d in config.enabled_deployments}


def reload_refusals(old: GatewayConfig, new: GatewayConfig, in_use: Iterable[str]) -> list[str]:
    """Why ``new`` must not replace ``old``; empty when it may."""
    reasons = []
    gone = (model_names(old) - model_names(new)) & set(in_use)
    unannounced = sorted(gone - set(new.retired_models))
    if unannounced:
        reasons.append(
            f"it removes {', '.join(repr(n) for n in unannounced)}, still in use by clients; "
            "list them under retired_models to remove them on purpose"
        )
    old_key, new_key = old.server.master_key.get_secret_value(), new.server.master_key.get_secret_value()
    if new_key == DEV_MASTER_KEY and old_key != DEV_MASTER_KEY and not new.server.allow_dev_master_key:
        reasons.append(
            "server.master_key would fall back to the published development key; "
            "set server.allow_dev_master_key: true if that is meant"
        )
    return reasons


# Settings read once when the process starts (the log handlers, the tracer provider).
_AT_RESTART = frozenset({("logging", "format"), ("logging", "level"), ("logging", "requests")})


def _by_name(items: Iterable[Any]) -> dict[str, dict[str, Any]]:
    return {item.name: item.model_dump(mode="json") for item in items}


def _section_diff(label: str, old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
    changed = sorted(n for n in old.keys() & new.keys() if old[n] != new[n])
    if added:
        lines.append(f"{label} added: {', '.join(added)}")
    if removed:
        lines.append(f"{label} removed: {', '.join(removed)}")
    for name in changed:
        keys = sorted(k for k in old[name].keys() | new[name].keys() if old[name].get(k) != new[name].get(k))
        lines.append(f"{label} {name} changed: {', '.join(keys)}")
    return lines


def config_diff(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """One line per change, by section and name; secrets are named, never shown."""
    lines = _section_diff("deployment", _by_name(old.deployments), _by_name(new.deployments))
    lines += _section_diff("route", _by_name(old.routes), _by_name(new.routes))
    lines += _section_diff("project", _by_name(old.projects), _by_name(new.projects))
    for section in ("server", "sensitivity", "routing", "retries", "circuit_breaker", "ledger", "telemetry", "logging"):
        before, after = getattr(old, section).model_dump(mode="json"), getattr(new, section).model_dump(mode="json")
        keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if keys:
            later = [k for k in keys if (section, k) in _AT_RESTART or (section == "telemetry")]
            note = f" ({', '.join(later)} at the next restart)" if later else ""
            lines.append(f"{section} changed: {', '.join(keys)}{note}")
    for field in ("database_url", "redis_url"):
        if getattr(old, field) != getattr(new, field):
            lines.append(f"{field} changed (takes effect at the next restart)")
    return lines

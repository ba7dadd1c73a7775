"""A candidate config for simulation: validated like the real one, compiled without secrets.

The candidate is checked by the same schema and cross-checks as a config file
(:func:`gateway.config.parse_config`), so every error names its key path. It never needs a
secret, and never sees one: every ``${VAR}`` reads as empty (``${VAR:-default}`` as its default),
whatever this process's environment holds, so an uploaded YAML cannot make the gateway echo an
environment value back in an error message.

Which deployments take part, on both sides of a simulation: every deployment not marked
``enabled: false``. A hosted deployment whose ``api_key`` is empty is left out of live traffic
(``DeploymentConfig.is_enabled``), but a candidate is a proposal whose keys are set where it
is deployed, and the running config is compiled by the same rule so that an unchanged YAML
yields an unchanged plan. To simulate removing a deployment, delete it or write ``enabled: false``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from core.literals import Sensitivity
from gateway.config import ConfigError, GatewayConfig, parse_config
from gateway.runtime import compile_policy
from routing.simulate import Policy

MAX_NODES = 100_000
"""Values a candidate may hold once YAML aliases are expanded: far above any real config, far
below what an alias bomb expands to."""


class _Blank(Mapping[str, str]):
    """An environment in which every variable is empty: ``${VAR:-default}`` reads its default,
    a bare ``${VAR}`` reads as empty (a candidate need not carry secrets)."""

    def __getitem__(self, name: str) -> str:
        return ""

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _count_nodes(data: Any, limit: int) -> int:
    """Values in ``data`` with aliases expanded, counting stopped past ``limit``."""
    count, stack = 0, [data]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def parse_candidate(text: str, source: str = "candidate") -> GatewayConfig:
    """Validate a candidate config; raises :class:`ConfigError` naming the key path of each problem."""
    if not text.strip():
        raise ConfigError(f"{source}: the config is empty")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply") from None
    if _count_nodes(data, MAX_NODES) > MAX_NODES:
        raise ConfigError(f"{source}: more than {MAX_NODES:,} values once aliases are expanded")
    # parse_config parses again: a few milliseconds, and the one validation path for every config
    return parse_config(text, source=source, environ=_Blank())


def simulation_policy(config: GatewayConfig) -> Policy:
    """The policy a simulation replays ``config`` as (see the module docstring for which deployments)."""
    deployments = [d for d in config.deployments if d.enabled is not False]
    router, profiles = compile_policy(config, deployments)
    floors = {p.name: Sensitivity.parse(p.sensitivity_floor) for p in config.projects}
    return Policy(router, profiles, floors)

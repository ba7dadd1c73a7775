"""Request shaping by task: a route rule's ``set:`` parameters, sent where they have an effect.

A rule such as ``{when: {task: [reasoning]}, set: {reasoning_effort: high}}`` carries its
parameters in the plan (``Plan.parameters``; routing stays pure). Here they are applied to the
upstream body **per attempt**: each deployment gets only the parameters its adapter takes
(:meth:`providers.parameters.ParameterPolicy.takes`: forwarded or translated, not refused and
not ignored), so a fallback to a deployment that does not support one is never sent it. For a
litellm deployment, ``reasoning_effort`` is sent only to a model litellm's price map marks
``supports_reasoning`` (an unknown model gets it: litellm maps it, or the backend names it).

**The rule wins over the client.** When the client sent its own value for a parameter the rule
sets, the rule's value replaces it on every deployment that takes it: the admin's policy for the
task decides, as in production gateways that pin request defaults. Where the deployment does not
take the parameter, the client's own value, if any, is left as the client sent it.

Only chat and (legacy) completions requests are shaped; embeddings carry no such parameters.
The parameters that decide what a request is or costs (``messages``, ``max_tokens``, ``n``,
``stream``, ...) cannot be set by a rule (``routing.spec.UNSETTABLE``), so admission and
accounting read the same body every attempt sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.literals import Endpoint
from gateway.costmap import cost_entry
from providers.registry import parameter_policy
from providers.settings import DeploymentConfig


def not_taken(config: DeploymentConfig, name: str, value: Any) -> str | None:
    """Why ``config``'s deployment does not take parameter ``name`` = ``value``; None when it does."""
    policy = parameter_policy(config.provider)
    if not policy.takes(name, value):
        rule = policy.rule(name)
        return f"{policy.family} {rule.handling.value} it" + (f": {rule.note}" if rule.note else "")
    if name == "reasoning_effort" and config.provider == "litellm":
        entry = cost_entry(config.model)
        if entry is not None and not entry.get("supports_reasoning"):
            return f"{config.model} is not a reasoning model (litellm's model map)"
    return None


def split(parameters: Mapping[str, Any], config: DeploymentConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """The parameters ``config``'s deployment takes, and why it does not take each of the others."""
    applied: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, value in parameters.items():
        why = not_taken(config, name, value)
        if why is None:
            applied[name] = value
        else:
            skipped[name] = why
    return applied, skipped


def shaped(
    sent: dict[str, Any], parameters: Mapping[str, Any], endpoint: Endpoint, config: DeploymentConfig | None
) -> dict[str, Any]:
    """``sent`` as one deployment receives it: with the rule's parameters that deployment takes."""
    if not parameters or endpoint == "embeddings" or config is None:
        return sent
    applied, _ = split(parameters, config)
    return {**sent, **applied} if applied else sent


def explain_parameters(
    parameters: Mapping[str, Any], deployments: list[str], configs: Mapping[str, DeploymentConfig], endpoint: Endpoint
) -> dict[str, dict[str, Any]]:
    """For explain: per candidate, the parameters it would be sent and the ones it would not (why)."""
    out: dict[str, dict[str, Any]] = {}
    for name in deployments:
        config = configs.get(name)
        if config is None or not parameters:
            continue
        if endpoint == "embeddings":
            out[name] = {"set": {}, "not_set": dict.fromkeys(parameters, "embeddings requests are not shaped")}
            continue
        applied, skipped = split(parameters, config)
        out[name] = {"set": applied, "not_set": skipped}
    return out

"""Explaining a routing decision: for ``POST /v1/route/explain`` and ``switchyard check --explain``.

Both build the routing request the way the real call does (``gateway.proxy.routing_request``)
and report a refusal through the same table (``gateway.refusals``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.literals import Endpoint
from core.wire import endpoint_of
from gateway.auth import Caller
from gateway.proxy import routing_request
from gateway.refusals import refusal_summary
from gateway.runtime import Runtime
from gateway.shaping import explain_parameters
from routing.explain import explain_decision


def explain_request(
    runtime: Runtime,
    headers: dict[str, str],
    caller: Caller,
    body: dict[str, Any],
    endpoint: Endpoint,
    health: Mapping[str, bool],
    volume_rpm: float | None = None,
) -> dict[str, Any]:
    """The decision as JSON-ready data, its refusal (if any) as the real call would answer it;
    ``volume_rpm`` is the project's measured request rate (None: not measured, so normal)."""
    decision = runtime.router.decide(routing_request(runtime, headers, caller, body, endpoint, volume_rpm), health)
    result = explain_decision(decision)
    parameters = decision.rule.set if decision.rule else {}
    if parameters:  # what each candidate's attempt would be sent of the rule's set: (gateway.shaping)
        shaping = explain_parameters(
            parameters, [c.deployment for c in decision.candidates], runtime.deployment_configs, endpoint
        )
        for candidate in result["candidates"]:
            if candidate["deployment"] in shaping:
                candidate["parameters"] = shaping[candidate["deployment"]]
    if decision.error is not None:
        result["error"] = refusal_summary(decision.error)
    return result


def explain_offline(runtime: Runtime, body: dict[str, Any], project: str | None = None) -> dict[str, Any]:
    """The decision for ``body`` with every deployment healthy, as ``project``'s master key."""
    caller = Caller(project=project or runtime.default_project, is_master=True)
    return explain_request(runtime, {}, caller, body, endpoint_of(body), {})

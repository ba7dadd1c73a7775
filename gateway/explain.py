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
from routing.live import LiveState


def explain_request(
    runtime: Runtime,
    headers: dict[str, str],
    caller: Caller,
    body: dict[str, Any],
    endpoint: Endpoint,
    health: Mapping[str, bool],
    volume_rpm: float | None = None,
    live: LiveState | None = None,
) -> dict[str, Any]:
    """The decision as JSON-ready data, its refusal (if any) as the real call would answer it;
    ``volume_rpm`` is the project's measured request rate (None: not measured, so normal); with
    ``live``, the measured conditions it was made under (``measured``, ``downgraded``)."""
    request = routing_request(runtime, headers, caller, body, endpoint, volume_rpm, live=live)
    decision = runtime.router.decide(request, health)
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
    if live is not None:
        result["downgraded"] = live.downgrade
        result["measured"] = measured_dict(live)
    return result


def measured_dict(live: LiveState) -> dict[str, Any]:
    """What explain shows of the measured conditions: caps reached, moving averages, in flight."""
    return {
        "capped": dict(live.capped),
        "latency": {
            name: {"latency_ms": m.latency_ms, "ttft_ms": m.ttft_ms, "answers": m.samples, "streams": m.ttft_samples}
            for name, m in live.latency.items()
        },
        "in_flight": dict(live.in_flight),
        "min_samples": live.min_samples,
    }


def explain_offline(runtime: Runtime, body: dict[str, Any], project: str | None = None) -> dict[str, Any]:
    """The decision for ``body`` with every deployment healthy, as ``project``'s master key."""
    caller = Caller(project=project or runtime.default_project, is_master=True)
    return explain_request(runtime, {}, caller, body, endpoint_of(body), {})

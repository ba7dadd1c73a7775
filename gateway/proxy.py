"""The request service behind every OpenAI route: authenticate, plan, execute, respond.

Routes in ``gateway.api.openai`` stay thin; everything a routed request goes through lives here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.auth import Caller
from gateway.errors import (
    AllDeploymentsFailed,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoPermittedDeployment,
    PermissionDenied,
    error_body,
)
from gateway.executor import OpenStream, Outcome
from gateway.requests import caller_hints, check_chat, check_completions, check_embeddings, read_json_body, upstream_body
from gateway.runtime import Runtime
from gateway.state import GatewayState
from providers.base import Provider, Reply
from routing.errors import NoCandidates, PolicyBlocked, RoutingError, UnknownModel, UnsupportedEndpoint
from routing.types import Plan, RoutingRequest, Sensitivity

Endpoint = Literal["chat", "completions", "embeddings"]

_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "chat": check_chat,
    "completions": check_completions,
    "embeddings": check_embeddings,
}


@dataclass(slots=True)
class Routed:
    """A request that passed auth and validation, with its plan."""

    request_id: str
    caller: Caller
    body: dict[str, Any]
    endpoint: Endpoint
    runtime: Runtime
    plan: Plan


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


async def route_request(state: GatewayState, request: Request, endpoint: Endpoint) -> Routed:
    """Authenticate, read and check the body, and plan it. Raises a GatewayError on any refusal."""
    caller = await state.authenticate(request)
    runtime = state.runtime
    body = await read_json_body(request, runtime.config.server.max_body_bytes)
    _CHECKS[endpoint](body)
    if caller.allowed_models and body["model"] not in caller.allowed_models:
        raise ModelNotFound(f"The model '{body['model']}' does not exist or you do not have access to it.", param="model")
    plan = plan_for(state, runtime, request, caller, body, endpoint)
    return Routed(request_id_of(request), caller, body, endpoint, runtime, plan)


def routing_request(
    runtime: Runtime, request: Request, caller: Caller, body: dict[str, Any], endpoint: Endpoint
) -> RoutingRequest:
    project = next((p for p in runtime.config.projects if p.name == caller.project), None)
    floor = Sensitivity.parse(project.sensitivity_floor) if project else Sensitivity.PUBLIC
    return RoutingRequest(
        model=body["model"],
        endpoint=endpoint,
        body=body,
        hints=caller_hints(request, body),
        project=caller.project,
        project_floor=floor,
        key_tags=caller.tags,
    )


def plan_for(
    state: GatewayState, runtime: Runtime, request: Request, caller: Caller, body: dict[str, Any], endpoint: Endpoint
) -> Plan:
    try:
        return runtime.router.plan(routing_request(runtime, request, caller, body, endpoint), state.breakers.snapshot())
    except RoutingError as exc:
        raise routing_refusal(exc) from None
    except ValueError as exc:  # e.g. an unknown sensitivity or task hint
        raise InvalidRequest(str(exc), code="invalid_hint") from None


def routing_refusal(exc: RoutingError) -> GatewayError:
    """Translate the router's refusal into the HTTP error a client sees."""
    if isinstance(exc, UnknownModel):
        return ModelNotFound(str(exc), param="model")
    if isinstance(exc, UnsupportedEndpoint):
        return InvalidRequest(str(exc), param="model", code="model_not_supported")
    if isinstance(exc, PolicyBlocked):
        return PermissionDenied(str(exc), code="policy_violation")
    if isinstance(exc, NoCandidates):
        return NoPermittedDeployment(str(exc))
    return InvalidRequest(str(exc))


def routing_headers(routed: Routed, outcome: Outcome | None) -> dict[str, str]:
    plan = routed.plan
    headers = {
        "x-request-id": routed.request_id,
        "x-switchyard-route": plan.route or "-",
        "x-switchyard-rule": plan.rule or "-",
        "x-switchyard-sensitivity": plan.signals.sensitivity.label,
        "x-switchyard-task": plan.signals.task,
    }
    if plan.rerouted:
        headers["x-switchyard-rerouted"] = "true"
    if outcome is not None:
        headers["x-switchyard-deployment"] = outcome.deployment
        headers["x-switchyard-fallbacks"] = str(outcome.fallbacks)
    return headers


def exhausted(routed: Routed, exc: AllDeploymentsFailed) -> GatewayError:
    """Every permitted deployment failed: say so in the plan's terms when there was a choice."""
    tried = {a.deployment for a in exc.attempts}
    if len(tried) <= 1:
        return exc.attempts[-1].error  # one deployment: its own error says it best
    if exc.status < 500:
        return exc
    signals = routed.plan.signals
    rule = f" under rule '{routed.plan.rule}'" if routed.plan.rule else ""
    return NoPermittedDeployment(
        f"Every permitted deployment failed for this {signals.sensitivity.label} request{rule}: {exc.message}",
        headers=exc.headers,
    )


async def serve(state: GatewayState, request: Request, endpoint: Endpoint) -> Response:
    """Serve one routed OpenAI request, streamed or not."""
    routed = await route_request(state, request, endpoint)
    send = upstream_body(routed.body)
    if routed.body.get("stream") and endpoint != "embeddings":
        return await _serve_stream(state, routed, send)
    runtime = routed.runtime
    runtime.in_flight += 1
    try:
        call = _CALLS[endpoint]
        reply, outcome = await state.executor.call(routed.plan.deployments, runtime.providers, lambda p: call(p, send))
    except AllDeploymentsFailed as exc:
        raise exhausted(routed, exc) from None
    finally:
        runtime.in_flight -= 1
    headers = routing_headers(routed, outcome)
    cost = _cost(runtime, outcome.deployment, reply)
    if cost is not None:
        headers["x-switchyard-cost-usd"] = f"{cost:.10f}".rstrip("0").rstrip(".") or "0"
    return Response(content=reply.body, media_type="application/json", headers=headers)


_CALLS: dict[str, Callable[[Provider, dict[str, Any]], Any]] = {
    "chat": lambda p, body: p.chat(body),
    "completions": lambda p, body: p.complete(body),
    "embeddings": lambda p, body: p.embed(body),
}
_STREAMS: dict[str, Callable[[Provider, dict[str, Any]], AsyncIterator[bytes]]] = {
    "chat": lambda p, body: p.chat_stream(body),
    "completions": lambda p, body: p.complete_stream(body),
}


def _cost(runtime: Runtime, deployment: str, reply: Reply) -> float | None:
    usage = reply.usage
    profile = runtime.profiles.get(deployment)
    if usage is None or profile is None:
        return None
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0 if isinstance(details, dict) else 0
    return profile.prices.cost(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), int(cached))


async def _serve_stream(state: GatewayState, routed: Routed, send: dict[str, Any]) -> Response:
    runtime = routed.runtime
    runtime.in_flight += 1
    try:
        opened = await state.executor.open_stream(
            routed.plan.deployments, runtime.providers, lambda p: _STREAMS[routed.endpoint](p, send)
        )
    except AllDeploymentsFailed as exc:
        runtime.in_flight -= 1
        raise exhausted(routed, exc) from None
    except BaseException:
        runtime.in_flight -= 1
        raise
    headers = routing_headers(routed, opened.outcome)
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"
    return StreamingResponse(_relay(state, runtime, opened), media_type="text/event-stream", headers=headers)


async def _relay(state: GatewayState, runtime: Runtime, opened: OpenStream) -> AsyncIterator[bytes]:
    """Forward each upstream event as it arrives; a failure mid-stream becomes an error event."""
    try:
        yield b"data: " + opened.first + b"\n\n"
        async for chunk in opened.rest:
            yield b"data: " + chunk + b"\n\n"
        yield b"data: [DONE]\n\n"
    except GatewayError as exc:
        state.breakers.record_failure(opened.outcome.deployment)
        yield b"data: " + error_body(exc) + b"\n\n"
    finally:
        runtime.in_flight -= 1
        aclose = getattr(opened.rest, "aclose", None)
        if aclose is not None:
            await aclose()


def models_listing(state: GatewayState, caller: Caller) -> dict[str, Any]:
    runtime = state.runtime
    names = runtime.router.model_names
    if caller.allowed_models:
        names = [n for n in names if n in caller.allowed_models]
    return {"object": "list", "data": [model_card(runtime, n) for n in names]}


def model_card(runtime: Runtime, name: str) -> dict[str, Any]:
    profile = runtime.profiles.get(name)
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": f"switchyard:{profile.provider}" if profile else "switchyard:route",
    }


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)

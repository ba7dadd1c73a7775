"""The request service behind every OpenAI route: authenticate, plan, execute, respond.

Routes in ``gateway.api.openai`` stay thin; everything a routed request goes through lives here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response

from core.errors import (
    AllDeploymentsFailed,
    Attempt,
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoPermittedDeployment,
    PayloadTooLarge,
    PermissionDenied,
)
from gateway.accounting import (
    Admitted,
    choice_text,
    cost_usd,
    failed_attempt_rows,
    ledger_row,
    usage_or_count,
)
from gateway.auth import Caller
from gateway.executor import Outcome
from gateway.requests import (
    caller_hints,
    check_chat,
    check_completions,
    check_embeddings,
    read_json_body,
    upstream_body,
)
from gateway.runtime import Runtime
from gateway.sse import EventStreamResponse
from gateway.state import GatewayState
from gateway.streaming import StreamMeter, relay
from providers.base import Provider
from routing.errors import (
    NoCandidates,
    PolicyBlocked,
    RoutingError,
    UnknownModel,
    UnsupportedEndpoint,
)
from routing.types import Plan, RoutingRequest, Sensitivity

Endpoint = Literal["chat", "completions", "embeddings"]

CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
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
    CHECKS[endpoint](body)
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
    except ValueError as exc:  # e.g. an unknown sensitivity or task hint (routing.errors.InvalidHint)
        raise InvalidRequest(str(exc), code="invalid_hint", param=getattr(exc, "param", None)) from None


def routing_refusal(exc: RoutingError) -> GatewayError:
    """Translate the router's refusal into the HTTP error a client sees."""
    if isinstance(exc, UnknownModel):
        return ModelNotFound(str(exc), param="model")
    if isinstance(exc, UnsupportedEndpoint):
        return InvalidRequest(str(exc), param="model", code="model_not_supported")
    if isinstance(exc, PolicyBlocked):
        return PermissionDenied(str(exc), code="policy_violation")
    if isinstance(exc, NoCandidates):
        if exc.excluded and all(e.reason.startswith("context window") for e in exc.excluded):
            # Nothing is down: the prompt is simply too long for every permitted deployment.
            return ContextLengthExceeded(str(exc), param="messages")
        return NoPermittedDeployment(str(exc))
    if exc.status == 413:  # routing.errors.RequestTooLarge: more text than the scan budget
        return PayloadTooLarge(str(exc), code=exc.code or "request_too_large")
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
    """Serve one routed OpenAI request, streamed or not: admit, execute, bill, respond."""
    routed = await route_request(state, request, endpoint)
    accountant = state.accountant
    admitted = await accountant.admit(routed.caller, routed.runtime, routed.plan, routed.body)
    send = upstream_body(routed.body)
    if routed.body.get("stream") and endpoint != "embeddings":
        return await _serve_stream(state, routed, admitted, send)
    runtime = routed.runtime
    started = time.perf_counter()
    runtime.in_flight += 1
    try:
        call = _CALLS[endpoint]
        reply, outcome = await state.executor.call(routed.plan.deployments, runtime.providers, lambda p: call(p, send))
    except AllDeploymentsFailed as exc:
        _record_failures(state, routed, exc.attempts, streamed=False)
        await accountant.release(admitted)
        raise exhausted(routed, exc) from None
    except BaseException:
        await accountant.release(admitted)
        raise
    finally:
        runtime.in_flight -= 1
    model = runtime.profiles[outcome.deployment].model
    usage = usage_or_count(reply.usage, send, _reply_text(reply.data), model)
    cost = cost_usd(runtime.profiles[outcome.deployment].prices, usage)
    await accountant.settle(admitted, cost, usage.prompt_tokens + usage.completion_tokens)
    _record_failures(state, routed, outcome.attempts, streamed=False)
    accountant.record(
        ledger_row(
            request_id=routed.request_id, caller=routed.caller, body=routed.body, plan=routed.plan, runtime=runtime,
            deployment=outcome.deployment, usage=usage, cost=cost, status=200,
            latency_ms=(time.perf_counter() - started) * 1000, fallbacks=outcome.fallbacks,
        )
    )
    headers = routing_headers(routed, outcome)
    headers.update(admitted.headers())
    headers["x-switchyard-cost-usd"] = _format_usd(cost)
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


def _format_usd(cost: Decimal) -> str:
    text = format(cost.normalize(), "f")
    return text if text != "-0" else "0"


def _reply_text(data: dict[str, Any]) -> str:
    return "".join(choice_text(c) for c in data.get("choices") or ())


def _record_failures(state: GatewayState, routed: Routed, attempts: list[Attempt], *, streamed: bool) -> None:
    for row in failed_attempt_rows(
        attempts, request_id=routed.request_id, caller=routed.caller, body=routed.body,
        plan=routed.plan, runtime=routed.runtime, streamed=streamed,
    ):
        state.accountant.record(row)


async def _serve_stream(state: GatewayState, routed: Routed, admitted: Admitted, send: dict[str, Any]) -> Response:
    runtime = routed.runtime
    stream_options = send.get("stream_options") if isinstance(send.get("stream_options"), dict) else {}
    meter = StreamMeter(client_wants_usage=bool(stream_options.get("include_usage")))
    # Always ask for usage: it is what the stream is billed on.
    send = {**send, "stream_options": {**stream_options, "include_usage": True}}
    runtime.in_flight += 1
    try:
        opened = await state.executor.open_stream(
            routed.plan.deployments, runtime.providers, lambda p: _STREAMS[routed.endpoint](p, send)
        )
    except AllDeploymentsFailed as exc:
        runtime.in_flight -= 1
        _record_failures(state, routed, exc.attempts, streamed=True)
        await state.accountant.release(admitted)
        raise exhausted(routed, exc) from None
    except BaseException:
        runtime.in_flight -= 1
        await state.accountant.release(admitted)
        raise

    async def finish(client_gone: bool) -> None:
        try:
            aclose = getattr(opened.rest, "aclose", None)
            if aclose is not None:
                await aclose()
            if meter.error is not None:
                state.breakers.record_failure(opened.outcome.deployment)
            reported = meter.usage or getattr(opened.rest, "usage", None)
            model = runtime.profiles[opened.outcome.deployment].model
            usage = usage_or_count(reported, send, meter.generated_text(), model)
            cost = cost_usd(runtime.profiles[opened.outcome.deployment].prices, usage)
            await state.accountant.settle(admitted, cost, usage.prompt_tokens + usage.completion_tokens)
            _record_failures(state, routed, opened.outcome.attempts, streamed=True)
            status = 200 if meter.error is None else meter.error.status
            state.accountant.record(
                ledger_row(
                    request_id=routed.request_id, caller=routed.caller, body=routed.body, plan=routed.plan,
                    runtime=runtime, deployment=opened.outcome.deployment, usage=usage, cost=cost, status=status,
                    latency_ms=(time.perf_counter() - meter.started) * 1000, ttft_ms=meter.ttft_ms, streamed=True,
                    fallbacks=opened.outcome.fallbacks, error=meter.error,
                )
            )
        finally:
            runtime.in_flight -= 1

    headers = routing_headers(routed, opened.outcome)
    headers.update(admitted.headers())
    return EventStreamResponse(relay(opened.first, opened.rest, meter), headers=headers, on_close=finish)


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

"""The request service behind every OpenAI route: authenticate, read, check, plan, admit, then
execute and answer, as JSON or as a stream; every path ends in the exchange's ``finish()``.

The order is the cheap refusals first: the key (cached) and what is already known about its
limits come before the body is read, and the body is read, bounded and checked before it is
scanned and planned. Routes in ``gateway.api.openai`` stay thin; this is everything between.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

from core.errors import (
    AllDeploymentsFailed,
    GatewayError,
    ModelNotFound,
    NoPermittedDeployment,
    ShuttingDown,
)
from core.literals import Endpoint, Sensitivity
from core.wire import CHECKS, reply_text
from gateway.accounting import recorded_endpoint
from gateway.asgi import (
    ClientGone,
    DisconnectWatch,
    Incoming,
    Send,
    send_error,
    send_json,
)
from gateway.auth import Caller
from gateway.dialects import OPENAI, Dialect
from gateway.exchange import Ending, Exchange
from gateway.executor import Walk
from gateway.measured.downgrade import admit_or_downgrade
from gateway.refusals import NO_RETRY, refusal_for
from gateway.roles import require
from gateway.runtime import Runtime
from gateway.sse import EventStreamResponse
from gateway.state import GatewayState
from gateway.streaming import StreamMeter, relay
from gateway.telemetry import Observed
from providers.base import Provider, Reply
from routing.errors import InvalidHint, RoutingError
from routing.live import DOWNGRADE_RULE, LiveState
from routing.types import Plan, RoutingRequest

HINT_HEADERS = {"sensitivity": "x-switchyard-sensitivity", "task": "x-switchyard-task"}
HINT_PREFIX = "x-switchyard-"
PROJECT_TAG = "x-switchyard-project-tag"

BodyFor = Callable[[str], dict[str, Any]]  # deployment -> the body its attempt sends (Exchange.sent_to)

_CALLS: dict[str, Callable[[BodyFor], Callable[[Provider], Awaitable[Reply]]]] = {
    "chat": lambda body: lambda p: p.chat(body(p.name)),
    "completions": lambda body: lambda p: p.complete(body(p.name)),
    "embeddings": lambda body: lambda p: p.embed(body(p.name)),
}
_STREAMS: dict[str, Callable[[BodyFor], Callable[[Provider], AsyncIterator[bytes]]]] = {
    "chat": lambda body: lambda p: p.chat_stream(body(p.name)),
    "completions": lambda body: lambda p: p.complete_stream(body(p.name)),
}


async def serve(state: GatewayState, incoming: Incoming, send: Send, endpoint: Endpoint, dialect: Dialect = OPENAI) -> None:
    """Serve one request end to end; every outcome is answered in the client's ``dialect`` and
    observed once (request log, metrics, trace) when the response is complete."""
    observed = state.telemetry.observe(incoming, endpoint)
    try:
        await _serve(state, incoming, observed.watch(send), endpoint, dialect, observed)
    except BaseException:
        observed.status = observed.status or 500
        raise
    finally:
        observed.end()


async def _serve(
    state: GatewayState, incoming: Incoming, send: Send, endpoint: Endpoint, dialect: Dialect, observed: Observed
) -> None:
    try:
        exchange = await open_exchange(state, incoming, endpoint, dialect, observed)
    except ClientGone:
        return
    except GatewayError as exc:
        state.metrics.observe_refusal(exc.status, exc.code)
        observed.refused(exc)
        await send_error(send, exc, incoming.request_id, body=dialect.error(exc))
        return
    if exchange.sent.get("stream") and endpoint != "embeddings":
        await _answer_stream(exchange, incoming, send, dialect)
    else:
        await _answer_json(exchange, incoming, send, dialect)


async def open_exchange(
    state: GatewayState, incoming: Incoming, endpoint: Endpoint, dialect: Dialect, observed: Observed
) -> Exchange:
    """Everything before a backend is called; raises the GatewayError a refusal is."""
    trace = observed.trace
    with trace.phase("auth"):
        caller = await state.authenticate(incoming.headers, incoming.client_host)
        observed.caller = caller
        require(caller, incoming.scope["method"], incoming.scope["path"])
    runtime = state.runtime
    state.accountant.precheck(caller, runtime)
    body = dialect.to_openai(await incoming.json(runtime.body_limits))
    CHECKS[endpoint](body)
    if caller.allowed_models and body["model"] not in caller.allowed_models:
        raise ModelNotFound(f"The model '{body['model']}' does not exist or you do not have access to it.", param="model")
    with trace.phase("routing"):
        plan = await plan_for(state, runtime, incoming.headers, caller, body, endpoint)
    observed.plan = plan
    state.model_use[body["model"]] = time.monotonic()
    with trace.phase("admission"):
        plan, admitted = await admit_or_downgrade(
            state,
            runtime,
            caller,
            body,
            endpoint,
            plan,
            lambda live: plan_for(state, runtime, incoming.headers, caller, body, endpoint, live, count=False),
        )
        observed.plan = plan
    exchange = Exchange(
        state=state,
        runtime=runtime,
        request_id=incoming.request_id,
        caller=caller,
        endpoint=endpoint,
        body=body,
        sent=upstream_body(body, admitted.output_cap),
        plan=plan,
        admitted=admitted,
        project_tag=project_tag(incoming.headers, body),
        api=recorded_endpoint(endpoint, dialect.name),
        observed=observed,
        walk=Walk(trace=trace),
    )
    observed.exchange = exchange
    return exchange


def project_tag(headers: dict[str, str], body: dict[str, Any]) -> str | None:
    """The ``x-switchyard-project-tag`` hint (header, or the same key in ``metadata``) the ledger records."""
    tag = headers.get(PROJECT_TAG)
    if not tag:
        metadata = body.get("metadata")
        value = metadata.get(PROJECT_TAG) if isinstance(metadata, dict) else None
        tag = value if isinstance(value, str) else None
    return tag[:200] if tag else None


def routing_request(
    runtime: Runtime,
    headers: dict[str, str],
    caller: Caller,
    body: dict[str, Any],
    endpoint: Endpoint,
    volume_rpm: float | None = None,
    live: LiveState | None = None,
) -> RoutingRequest:
    """The router's view of a request: the body, header hints, the caller's project and tags, and
    the project's request rate (``gateway.volume``).

    The project is the key's own (a ``x-switchyard-project-tag`` only labels ledger rows), so its
    ``requires`` cannot be escaped by a hint."""
    project = runtime.projects.get(caller.project)
    requires = project.requires if project and project.requires and not project.requires.empty else None
    floor = Sensitivity.parse(project.sensitivity_floor) if project else Sensitivity.PUBLIC
    hints = {name: headers[header] for name, header in HINT_HEADERS.items() if headers.get(header)}
    return RoutingRequest(
        model=body["model"],
        endpoint=endpoint,
        body=body,
        hints=hints,
        project=caller.project,
        project_floor=floor,
        key_tags=caller.tags,
        requires=requires,
        volume_rpm=volume_rpm,
        live=live,
    )


async def plan_for(
    state: GatewayState,
    runtime: Runtime,
    headers: dict[str, str],
    caller: Caller,
    body: dict[str, Any],
    endpoint: Endpoint,
    live: LiveState | None = None,
    *,
    count: bool = True,
) -> Plan:
    """The plan for a request; ``count`` adds it to its project's request rate (``when.volume``);
    ``live``: measured conditions (default: the gateway's current ones, ``gateway.measured``).
    Planned on the event loop (pure CPU, microseconds), or on the runtime's plan threads when its
    task classifier may wait for a model (``routing.task_classifier: embedded`` with a forward pass)."""
    if live is None and state.live is not None:
        live = state.live.state
    volume = state.volume
    rpm = volume.hit(caller.project) if count else volume.rate(caller.project)
    try:
        request = routing_request(runtime, headers, caller, body, endpoint, rpm, live=live)
        health = state.breakers.snapshot()
        if runtime.plan_executor is None:
            return runtime.router.plan(request, health)
        return await asyncio.get_running_loop().run_in_executor(runtime.plan_executor, runtime.router.plan, request, health)
    except (RoutingError, InvalidHint) as exc:
        raise refusal_for(exc) from None


def upstream_body(body: dict[str, Any], output_cap: int | None) -> dict[str, Any]:
    """What a backend receives: the client's body, minus the gateway's own ``x-switchyard-*``
    metadata keys, with ``max_tokens`` set when the client gave none (admission's grant)."""
    sent = body
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and any(key.startswith(HINT_PREFIX) for key in metadata):
        sent = {**body}
        cleaned = {k: v for k, v in metadata.items() if not k.startswith(HINT_PREFIX)}
        if cleaned:
            sent["metadata"] = cleaned
        else:
            del sent["metadata"]
    if output_cap is not None:
        sent = {**sent, "max_tokens": output_cap}
    return sent


def response_headers(exchange: Exchange, cost: Decimal | None = None) -> dict[str, str]:
    """``x-request-id``, where and why the request went, and the caller's limits and budget left
    (after ``cost``, when it is known before the body)."""
    plan = exchange.plan
    headers = {
        "x-request-id": exchange.request_id,
        "x-switchyard-route": plan.route or "-",
        "x-switchyard-rule": plan.rule or "-",
        "x-switchyard-sensitivity": plan.signals.sensitivity.label,
        "x-switchyard-task": plan.signals.task,
    }
    if plan.rerouted:
        headers["x-switchyard-rerouted"] = "true"
    if plan.rule == DOWNGRADE_RULE:
        headers["x-switchyard-downgraded"] = "budget"
    if exchange.walk.current is not None:
        headers["x-switchyard-deployment"] = exchange.walk.current
        headers["x-switchyard-fallbacks"] = str(exchange.walk.fallbacks)
    headers.update(exchange.admitted.headers(cost))
    return headers


def exhausted(exchange: Exchange, exc: AllDeploymentsFailed) -> GatewayError:
    """Every permitted deployment failed: say so in the plan's terms when there was a choice, and
    tell SDKs not to retry what the gateway already retried."""
    tried = {a.deployment for a in exc.attempts}
    if len(tried) <= 1 and exc.attempts:
        error = exc.attempts[-1].error  # one deployment: its own error says it best
    elif exc.status < 500:
        error = exc
    else:
        signals, rule = exchange.plan.signals, exchange.plan.rule
        where = f" under rule '{rule}'" if rule else ""
        error = NoPermittedDeployment(
            f"Every permitted deployment failed for this {signals.sensitivity.label} request{where}: {exc.message}",
            headers=exc.headers,
        )
    if len(exc.attempts) > 1:  # retried or fell back already: an SDK's own retries only add load
        error.headers.update(NO_RETRY)
    return error


async def _answer_json(exchange: Exchange, incoming: Incoming, send: Send, dialect: Dialect) -> None:
    state, runtime = exchange.state, exchange.runtime
    task = asyncio.current_task()
    assert task is not None
    watch = DisconnectWatch(incoming.receive, task)
    try:
        reply = await state.executor.call(
            exchange.plan.deployments, runtime.providers, _CALLS[exchange.endpoint](exchange.sent_to), exchange.walk
        )
    except asyncio.CancelledError:
        watch.stop()
        await exchange.finish(Ending(client_gone=watch.fired))
        if not watch.fired:
            raise
        task.uncancel()  # the client left: nobody to answer
        return
    except BaseException as exc:
        watch.stop()
        await exchange.finish(Ending())
        if isinstance(exc, AllDeploymentsFailed):
            await _refuse(exchange, send, exhausted(exchange, exc), dialect)
            return
        if isinstance(exc, GatewayError):  # refused by an adapter before any backend saw it
            await _refuse(exchange, send, exc, dialect)
            return
        raise
    watch.stop()
    cost = await exchange.finish(Ending(reported_usage=reply.usage, text=reply_text(reply.data)))
    headers = response_headers(exchange, cost)
    headers["x-switchyard-cost-usd"] = format_usd(cost)
    await send_json(send, 200, dialect.reply(reply.data, reply.body), headers)


async def _answer_stream(exchange: Exchange, incoming: Incoming, send: Send, dialect: Dialect) -> None:
    state, runtime = exchange.state, exchange.runtime
    task = asyncio.current_task()
    assert task is not None
    watch = DisconnectWatch(incoming.receive, task)  # until the first chunk; the stream watches after
    try:
        opened = await state.executor.open_stream(
            exchange.plan.deployments, runtime.providers, _STREAMS[exchange.endpoint](exchange.sent_to), exchange.walk
        )
    except asyncio.CancelledError:
        watch.stop()
        await exchange.finish(Ending(client_gone=watch.fired, streamed=True))
        if not watch.fired:
            raise
        task.uncancel()
        return
    except BaseException as exc:
        watch.stop()
        await exchange.finish(Ending(streamed=True))
        if isinstance(exc, AllDeploymentsFailed):
            await _refuse(exchange, send, exhausted(exchange, exc), dialect)
            return
        if isinstance(exc, GatewayError):
            await _refuse(exchange, send, exc, dialect)
            return
        raise
    watch.stop()
    meter = StreamMeter(started=exchange.walk.attempt_started)  # time to first token: of the answering attempt

    async def finish(client_gone: bool) -> None:
        aclose = getattr(opened.rest, "aclose", None)
        if aclose is not None:
            await aclose()
        reported = meter.usage or getattr(opened.rest, "usage", None)
        error = meter.error
        if error is None and not meter.completed and not client_gone:  # ended by the server (the drain deadline)
            error = ShuttingDown("This Switchyard replica is shutting down and ended the stream.")
        await exchange.finish(
            Ending(
                reported_usage=reported,
                text=meter.generated_text(),
                error=error,
                client_gone=client_gone,
                ttft_ms=meter.ttft_ms,
                streamed=True,
            )
        )

    events = relay(dialect, opened.first, opened.rest, meter)
    response = EventStreamResponse(events, headers=response_headers(exchange), on_close=finish)
    await response(incoming.scope, incoming.receive, send)


async def _refuse(exchange: Exchange, send: Send, error: GatewayError, dialect: Dialect) -> None:
    exchange.state.metrics.observe_refusal(error.status, error.code)
    exchange.observed.refused(error)
    headers = response_headers(exchange)
    headers.update(error.headers)
    await send_json(send, error.status, dialect.error(error), headers)


def format_usd(cost: Decimal) -> str:
    text = format(cost.normalize(), "f")
    return text if text != "-0" else "0"

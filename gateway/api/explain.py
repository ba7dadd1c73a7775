"""``POST /v1/route/explain``: the routing decision for a request, calling no backend."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from core.errors import ModelNotFound
from core.wire import CHECKS, endpoint_of
from gateway.api.schemas import EXPLAIN_BODY
from gateway.asgi import parse_json_object
from gateway.explain import explain_request
from gateway.measured.downgrade import explain_conditions
from gateway.roles import caller_of
from gateway.state import GatewayState

router = APIRouter()


@router.post("/v1/route/explain", tags=["routing"], openapi_extra=EXPLAIN_BODY)
async def explain(request: Request) -> Response:
    """Signals, matched rule, ranked candidates and every exclusion with its reason; a refusal is
    reported with the status and code the real call would answer with."""
    state: GatewayState = request.app.state.gateway
    caller = await caller_of(request)
    body = parse_json_object(await request.body())
    endpoint = endpoint_of(body)
    CHECKS[endpoint](body)
    if caller.allowed_models and body["model"] not in caller.allowed_models:
        raise ModelNotFound(f"The model '{body['model']}' does not exist or you do not have access to it.", param="model")
    live = await explain_conditions(state, caller, body, endpoint)
    runtime, health, rpm = state.runtime, state.breakers.snapshot(), state.volume.rate(caller.project)
    args = (dict(request.headers), caller, body, endpoint, health, rpm, live)
    if runtime.plan_executor is None:
        result = explain_request(runtime, *args)
    else:  # the task classifier may wait for its model: not on the event loop
        result = await asyncio.get_running_loop().run_in_executor(runtime.plan_executor, explain_request, runtime, *args)
    return Response(orjson.dumps(result), media_type="application/json")

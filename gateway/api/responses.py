"""OpenAI's Responses API: ``POST /v1/responses``, stateless.

A hot route (a plain ASGI handler): the request goes through the same lifecycle as a chat
completion (``gateway.proxy.serve``), translated at the edges by the Responses dialect, so
routing, sensitivity, budgets and the ledger are the same. Nothing is stored, so
``previous_response_id`` and ``store: true`` are refused with a 400 naming the parameter.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.openai import Handler, Handover
from gateway.api.schemas import RESPONSES_BODY
from gateway.asgi import Incoming, Receive, Scope, Send
from gateway.dialects.responses import ResponsesDialect
from gateway.proxy import serve
from gateway.state import GatewayState


async def responses(state: GatewayState, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(state, Incoming(scope, receive), send, "chat", ResponsesDialect())


HOT_ROUTES: dict[tuple[str, str], Handler] = {("POST", "/v1/responses"): responses}

router = APIRouter()


@router.post("/v1/responses", tags=["openai"], openapi_extra=RESPONSES_BODY)
async def create_response(request: Request) -> Response:
    """Create a model response (JSON or the typed SSE event stream), routed by policy; stateless."""
    return Handover(responses, request.app.state.gateway)

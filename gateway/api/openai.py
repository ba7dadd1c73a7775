"""The OpenAI surface: chat completions, completions, embeddings, models.

The three model endpoints are plain ASGI callables (:data:`HOT_ROUTES`) that the app dispatches
to before any framework code runs (see ``gateway.app``): a framework's request and response
objects cost more CPU per request than routing does. The FastAPI declarations below are the same
endpoints for the OpenAPI document (and hand over to the same callables if ever reached).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from core.errors import ModelNotFound
from core.literals import Endpoint
from core.wire import Model, ModelList
from gateway.api.schemas import CHAT_BODY, COMPLETIONS_BODY, EMBEDDINGS_BODY
from gateway.asgi import Incoming, Receive, Scope, Send
from gateway.auth import Caller
from gateway.proxy import serve
from gateway.roles import caller_of
from gateway.runtime import Runtime
from gateway.state import GatewayState

Handler = Callable[[GatewayState, Scope, Receive, Send], Awaitable[None]]


def _endpoint(endpoint: Endpoint) -> Handler:
    async def handle(state: GatewayState, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(state, Incoming(scope, receive), send, endpoint)

    handle.__name__ = f"serve_{endpoint}"
    return handle


HOT_ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): _endpoint("chat"),
    ("POST", "/v1/completions"): _endpoint("completions"),
    ("POST", "/v1/embeddings"): _endpoint("embeddings"),
}


class Handover(Response):
    """A FastAPI endpoint's answer that is the hot route's own ASGI handler."""

    def __init__(self, handler: Handler, state: GatewayState) -> None:
        self.handler, self.gateway = handler, state
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(self.gateway, scope, receive, send)


router = APIRouter()


@router.post("/v1/chat/completions", tags=["openai"], openapi_extra=CHAT_BODY)
async def chat_completions(request: Request) -> Response:
    """Create a chat completion (JSON or an SSE stream), routed by policy."""
    return Handover(HOT_ROUTES[("POST", "/v1/chat/completions")], request.app.state.gateway)


@router.post("/v1/completions", tags=["openai"], openapi_extra=COMPLETIONS_BODY)
async def completions(request: Request) -> Response:
    """Create a legacy text completion (JSON or an SSE stream), routed by policy."""
    return Handover(HOT_ROUTES[("POST", "/v1/completions")], request.app.state.gateway)


@router.post("/v1/embeddings", tags=["openai"], openapi_extra=EMBEDDINGS_BODY)
async def embeddings(request: Request) -> Response:
    """Create one embedding vector per input, routed by policy."""
    return Handover(HOT_ROUTES[("POST", "/v1/embeddings")], request.app.state.gateway)


@router.get("/v1/models", tags=["openai"])
async def list_models(request: Request) -> Response:
    """Every route and deployment the caller may name in ``model``."""
    state: GatewayState = request.app.state.gateway
    caller = await caller_of(request)
    return _json(models_listing(state.runtime, caller))


@router.get("/v1/models/{model_id:path}", tags=["openai"])
async def retrieve_model(model_id: str, request: Request) -> Response:
    """One model card; 404 for names that are neither a route nor a deployment (or not allowed)."""
    state: GatewayState = request.app.state.gateway
    caller = await caller_of(request)
    if not any(m["id"] == model_id for m in models_listing(state.runtime, caller)["data"]):
        raise ModelNotFound(f"The model '{model_id}' does not exist or you do not have access to it.", param="model")
    return _json(model_card(state.runtime, model_id))


def models_listing(runtime: Runtime, caller: Caller) -> ModelList:
    names = runtime.router.model_names
    if caller.allowed_models:
        names = [n for n in names if n in caller.allowed_models]
    return {"object": "list", "data": [model_card(runtime, n) for n in names]}


def model_card(runtime: Runtime, name: str) -> Model:
    profile = runtime.profiles.get(name)
    return {
        "id": name,
        "object": "model",
        "created": runtime.created,
        "owned_by": f"switchyard:{profile.provider}" if profile else "switchyard:route",
    }


def _json(data: Any, status: int = 200) -> Response:
    return Response(content=orjson.dumps(data), status_code=status, media_type="application/json")

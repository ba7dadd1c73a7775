"""Anthropic's Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Both are hot routes (plain ASGI handlers, as the OpenAI ones are): a message goes through the
same lifecycle as a chat completion (``gateway.proxy.serve``), translated at the edges by the
Anthropic dialect, so routing, sensitivity, budgets and the ledger are the same. The key may come
in ``x-api-key`` (Anthropic's SDKs) or as a bearer token. ``anthropic-version`` is accepted when
it is a date (every version Anthropic has published answers in the shapes served here).
"""

from __future__ import annotations

import re

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from core.errors import GatewayError, InvalidRequest, ModelNotFound
from core.wire import check_chat
from gateway.api.openai import Handler, Handover
from gateway.api.schemas import COUNT_TOKENS_BODY, MESSAGES_BODY
from gateway.asgi import ClientGone, Incoming, Receive, Scope, Send, send_error, send_json
from gateway.dialects.anthropic import AnthropicDialect
from gateway.proxy import plan_for, serve
from gateway.roles import require
from gateway.state import GatewayState
from providers.tokens import count_prompt

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _check_version(incoming: Incoming) -> None:
    version = incoming.headers.get("anthropic-version")
    if version is not None and not _VERSION.match(version.strip()):
        raise InvalidRequest(
            f"anthropic-version: '{version[:40]}' is not a version date such as 2023-06-01", param="anthropic-version"
        )


async def messages(state: GatewayState, scope: Scope, receive: Receive, send: Send) -> None:
    incoming = Incoming(scope, receive)
    dialect = AnthropicDialect()
    try:
        _check_version(incoming)
    except GatewayError as exc:
        await send_error(send, exc, incoming.request_id, body=dialect.error(exc))
        return
    await serve(state, incoming, send, "chat", dialect)


async def count_tokens(state: GatewayState, scope: Scope, receive: Receive, send: Send) -> None:
    """The prompt's input tokens, counted as the deployment the request would land on counts them
    (tiktoken's reading for OpenAI's models, the cl100k estimate otherwise); calls no backend."""
    incoming = Incoming(scope, receive)
    dialect = AnthropicDialect()
    try:
        _check_version(incoming)
        caller = await state.authenticate(incoming.headers, incoming.client_host)
        require(caller, scope["method"], scope["path"])
        runtime = state.runtime
        body = await incoming.json(runtime.body_limits)
        body.setdefault("max_tokens", 1)  # count_tokens takes no max_tokens; the translation needs one
        body.pop("stream", None)
        chat = dialect.to_openai(body)
        check_chat(chat)
        if caller.allowed_models and chat["model"] not in caller.allowed_models:
            raise ModelNotFound(f"The model '{chat['model']}' does not exist or you do not have access to it.", param="model")
        plan = await plan_for(state, runtime, incoming.headers, caller, chat, "chat", count=False)  # counts no request
        model = runtime.profiles[plan.deployments[0]].model if plan.deployments else ""
        tokens = count_prompt(chat, model)
    except ClientGone:
        return
    except GatewayError as exc:
        state.metrics.observe_refusal(exc.status, exc.code)
        await send_error(send, exc, incoming.request_id, body=dialect.error(exc))
        return
    await send_json(send, 200, orjson.dumps({"input_tokens": tokens}), {"x-request-id": incoming.request_id})


HOT_ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/messages"): messages,
    ("POST", "/v1/messages/count_tokens"): count_tokens,
}

router = APIRouter()


@router.post("/v1/messages", tags=["anthropic"], openapi_extra=MESSAGES_BODY)
async def create_message(request: Request) -> Response:
    """Create a message in Anthropic's Messages format (JSON or Anthropic's SSE event stream), routed by policy."""
    return Handover(messages, request.app.state.gateway)


@router.post("/v1/messages/count_tokens", tags=["anthropic"], openapi_extra=COUNT_TOKENS_BODY)
async def create_count_tokens(request: Request) -> Response:
    """Count a Messages request's input tokens without sending it to a backend."""
    return Handover(count_tokens, request.app.state.gateway)

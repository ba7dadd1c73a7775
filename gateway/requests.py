"""Reading and checking OpenAI request bodies at the edge (cheap checks, no re-validation).

Bodies stay plain dicts on the hot path; only what the gateway itself relies on is checked,
and every problem becomes a 400 in OpenAI's shape naming the ``param``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from core.errors import InvalidRequest, PayloadTooLarge

HINT_HEADERS = {
    "sensitivity": "x-switchyard-sensitivity",
    "task": "x-switchyard-task",
    "project_tag": "x-switchyard-project-tag",
}
_METADATA_HINTS = {"sensitivity": "x-switchyard-sensitivity", "task": "x-switchyard-task", "project_tag": "x-switchyard-project-tag"}


async def read_json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or a 400/413 that says what is wrong with it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"Request body is {declared} bytes; the limit is {max_bytes} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"Request body exceeds the limit of {max_bytes} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def check_common(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model", code="missing_required_parameter")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream", code="invalid_type")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidRequest(f"'{name}' must be a positive integer", param=name, code="invalid_value")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object", param="metadata", code="invalid_type")


def check_chat(body: dict[str, Any]) -> None:
    check_common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages", code="invalid_value")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]", code="invalid_value")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools", code="invalid_type")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options", code="invalid_type")


def check_completions(body: dict[str, Any]) -> None:
    check_common(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
        raise InvalidRequest("'prompt' must be a string or a non-empty array", param="prompt", code="invalid_value")


def check_embeddings(body: dict[str, Any]) -> None:
    check_common(body)
    value = body.get("input")
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' cannot be an empty string", param="input", code="invalid_value")
        return
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'input' must be a string or a non-empty array", param="input", code="invalid_value")
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(f"input[{i}] cannot be an empty string", param="input", code="invalid_value")
        elif not (isinstance(item, list) and all(isinstance(t, int) for t in item)):
            raise InvalidRequest(f"input[{i}] must be a string or an array of token ids", param="input", code="invalid_value")


def caller_hints(request: Request, body: dict[str, Any]) -> dict[str, str]:
    """Routing hints from ``x-switchyard-*`` headers or the same names in ``metadata``."""
    hints: dict[str, str] = {}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        for key, meta_name in _METADATA_HINTS.items():  # only the namespaced keys: the rest is the client's
            value = metadata.get(meta_name)
            if isinstance(value, str) and value:
                hints[key] = value
    headers = request.headers
    for key, header in HINT_HEADERS.items():
        value = headers.get(header)
        if value:
            hints[key] = value
    return hints


def upstream_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body a backend receives: the client's, minus the gateway-only (namespaced) metadata hints."""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return body
    hint_names = set(_METADATA_HINTS.values())
    cleaned = {k: v for k, v in metadata.items() if k not in hint_names}
    out = {k: v for k, v in body.items() if k != "metadata"}
    if cleaned:
        out["metadata"] = cleaned
    return out

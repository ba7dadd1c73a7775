"""Request-body schemas of the OpenAI endpoints, for the OpenAPI document only.

The hot routes never validate against these (the checks in ``core.wire`` do, cheaply, and
unknown fields pass through to the backend); they describe the bodies for ``/docs``, client
generators and the schema-driven fuzz suite.
"""

from __future__ import annotations

from typing import Any

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}, "text": {"type": "string"}}}},
                {"type": "null"},
            ]
        },
        "name": {"type": "string"},
        "tool_call_id": {"type": "string"},
    },
}
_COMMON = {
    "model": {"type": "string", "description": "A route (e.g. auto) or a deployment name."},
    "stream": {"type": "boolean"},
    "max_tokens": {"type": "integer", "minimum": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 16},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "user": {"type": "string"},
    "metadata": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "The client's own metadata, forwarded; x-switchyard-* keys are routing hints.",
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


CHAT_BODY = _body({
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        **_COMMON,
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "tools": {"type": "array", "items": {"type": "object"}},
        "response_format": {"type": "object"},
        "seed": {"type": "integer"},
    },
})
COMPLETIONS_BODY = _body({
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {
        **_COMMON,
        "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
        "echo": {"type": "boolean"},
        "logprobs": {"type": "integer", "minimum": 0, "maximum": 5},
    },
})
EMBEDDINGS_BODY = _body({
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": _COMMON["model"],
        "input": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
            ]
        },
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1},
        "user": {"type": "string"},
    },
})
EXPLAIN_BODY = _body({
    "type": "object",
    "required": ["model"],
    "description": "The body of a chat, completion or embeddings request.",
    "properties": {**CHAT_BODY["requestBody"]["content"]["application/json"]["schema"]["properties"]},
})

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
                {
                    "type": "array",
                    "items": {"type": "object", "properties": {"type": {"type": "string"}, "text": {"type": "string"}}},
                },
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


CHAT_BODY = _body(
    {
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
    }
)
COMPLETIONS_BODY = _body(
    {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            **_COMMON,
            "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
            "echo": {"type": "boolean"},
            "logprobs": {"type": "integer", "minimum": 0, "maximum": 5},
        },
    }
)
EMBEDDINGS_BODY = _body(
    {
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
    }
)
EXPLAIN_BODY = _body(
    {
        "type": "object",
        "required": ["model"],
        "description": "The body of a chat, completion or embeddings request.",
        "properties": {**CHAT_BODY["requestBody"]["content"]["application/json"]["schema"]["properties"]},
    }
)

# ---------------------------------------------------------------- Anthropic Messages

_ANTHROPIC_BLOCK = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["text", "image", "document", "tool_use", "tool_result", "thinking"]},
        "text": {"type": "string"},
        "source": {"type": "object"},
        "id": {"type": "string"},
        "name": {"type": "string"},
        "input": {"type": "object"},
        "tool_use_id": {"type": "string"},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "is_error": {"type": "boolean"},
    },
}
_ANTHROPIC_MESSAGES = {
    "messages": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"type": "string", "enum": ["user", "assistant"]},
                "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _ANTHROPIC_BLOCK}]},
            },
        },
    },
    "model": _COMMON["model"],
    "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["type", "text"]}}]},
    "tools": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "input_schema"],
            "properties": {"name": {"type": "string"}, "description": {"type": "string"}, "input_schema": {"type": "object"}},
        },
    },
    "tool_choice": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["auto", "any", "tool", "none"]},
            "name": {"type": "string"},
            "disable_parallel_tool_use": {"type": "boolean"},
        },
    },
}
MESSAGES_BODY = _body(
    {
        "type": "object",
        "required": ["model", "messages", "max_tokens"],
        "description": "Anthropic's Messages request; the key in x-api-key or a bearer token.",
        "properties": {
            **_ANTHROPIC_MESSAGES,
            "max_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean"},
            "stop_sequences": {"type": "array", "items": {"type": "string"}},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "top_k": {"type": "integer", "minimum": 0},
            "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}}},
        },
    }
)
COUNT_TOKENS_BODY = _body(
    {
        "type": "object",
        "required": ["model", "messages"],
        "properties": _ANTHROPIC_MESSAGES,
    }
)

# ---------------------------------------------------------------- OpenAI Responses

_RESPONSE_ITEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["message", "function_call", "function_call_output"]},
        "role": {"type": "string", "enum": ["user", "assistant", "system", "developer"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "call_id": {"type": "string"},
        "name": {"type": "string"},
        "arguments": {"type": "string"},
        "output": {"type": "string"},
    },
}
RESPONSES_BODY = _body(
    {
        "type": "object",
        "required": ["model", "input"],
        "description": "OpenAI's Responses request, stateless: no previous_response_id, no store: true.",
        "properties": {
            "model": _COMMON["model"],
            "input": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "items": _RESPONSE_ITEM}]},
            "instructions": {"type": "string"},
            "max_output_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean"},
            "temperature": _COMMON["temperature"],
            "top_p": _COMMON["top_p"],
            "user": {"type": "string"},
            "metadata": _COMMON["metadata"],
            "tools": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "name"],
                    "properties": {
                        "type": {"type": "string", "enum": ["function"]},
                        "name": {"type": "string"},
                        "parameters": {"type": "object"},
                        "strict": {"type": "boolean"},
                    },
                },
            },
            "tool_choice": {"anyOf": [{"type": "string", "enum": ["auto", "none", "required"]}, {"type": "object"}]},
            "text": {"type": "object", "properties": {"format": {"type": "object"}}},
            "store": {"type": "boolean", "enum": [False]},
        },
    }
)

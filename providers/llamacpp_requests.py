"""OpenAI request bodies -> llama-cpp-python keyword arguments, by the embedded model's
:data:`PARAMETERS` declaration.

What the embedded backend cannot honour is refused with a 400 naming the field (images, audio
output, ``n`` above :data:`MAX_N`, out-of-vocabulary ``logit_bias`` ids, ...); what it has no use
for (``user``, ``store``, ``metadata``, ...) is accepted and listed as ignored. Token-id inputs
(``prompt`` / ``input`` as arrays of ids, LangChain's default for embeddings) were made with an
OpenAI tokenizer, not this model's: they are decoded to text first (cl100k_base, then o200k_base).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidRequest
from providers.llamacpp_tools import ToolPlan, plan_tools
from providers.parameters import (
    ParameterPolicy,
    forwarded,
    ignored,
    refused,
    translated,
)
from providers.tokens import DECODING_ENCODINGS, decode_token_ids

MAX_N = 16
MAX_TOP_LOGPROBS = 20
_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_PROMPT_CACHE = "a prompt-cache hint; llama.cpp reuses a repeated prompt prefix on its own"

PARAMETERS = ParameterPolicy(
    "llamacpp",
    {
        "audio": refused("generates text only"),
        "frequency_penalty": forwarded("to llama.cpp's sampler"),
        "function_call": translated("deprecated; as `tool_choice`, answered in the legacy `function_call` shape"),
        "functions": translated("deprecated; as `tools`, answered in the legacy `function_call` shape"),
        "logit_bias": translated(
            "to llama.cpp's sampler; ids are this model's own vocabulary; an id outside it, or a bias outside -100..100, is a 400"
        ),
        "logprobs": translated("computed from the model's logits"),
        "max_completion_tokens": translated("llama.cpp's `max_tokens` (wins over `max_tokens`)"),
        "max_tokens": translated("llama.cpp's `max_tokens`"),
        "messages": translated(
            "rendered with the model's chat template; `developer` becomes `system`; text parts only (an image,"
            " audio or file part is a 400)"
        ),
        "metadata": ignored("nothing is stored; the gateway reads only its own `x-switchyard-*` keys"),
        "modalities": refused('generates text only (`["text"]` is accepted)', harmless=lambda v: v == ["text"]),
        "model": translated("routed by the gateway; the deployment's own model answers"),
        "moderation": refused("runs no moderation"),
        "n": translated(f"up to {MAX_N} choices, generated one after another"),
        "parallel_tool_calls": ignored("at most one tool call is made per turn, which either value allows"),
        "prediction": ignored("a latency hint only: the answer is the same without it"),
        "presence_penalty": forwarded("to llama.cpp's sampler"),
        "prompt_cache_key": ignored(_PROMPT_CACHE),
        "prompt_cache_options": ignored(_PROMPT_CACHE),
        "prompt_cache_retention": ignored(_PROMPT_CACHE),
        "reasoning_effort": refused("is not a reasoning model"),
        "response_format": translated("`json_object` / `json_schema` become a grammar: JSON, constrained to the schema"),
        "safety_identifier": ignored("nothing leaves the machine to be reported"),
        "seed": translated("llama.cpp's seed; choice i uses seed + i, so choices differ"),
        "service_tier": ignored("one tier"),
        "stop": forwarded("to llama.cpp (empty strings dropped)"),
        "store": ignored("nothing is stored"),
        "stream": translated("chunks as the model generates them"),
        "stream_options": translated(
            "`include_usage` adds the final usage chunk; `include_obfuscation` has no effect (no obfuscation field)"
        ),
        "temperature": forwarded("to llama.cpp's sampler"),
        "tool_choice": translated(
            "a named function or custom tool, `required` and `allowed_tools` (required mode) force one call through"
            " a grammar; `auto` lets the model answer in text; a Lark custom grammar, a streamed custom tool or"
            " `required` over several custom tools is a 400"
        ),
        "tools": translated("function and custom tools (see `tool_choice`); the chat template sees them"),
        "top_logprobs": translated(f"0..{MAX_TOP_LOGPROBS} alternatives per token, from the model's logits"),
        "top_p": forwarded("to llama.cpp's sampler"),
        "user": ignored("no per-user state"),
        "verbosity": refused("has no verbosity control"),
        "web_search_options": refused("has no web search"),
    },
    others=ignored("a field outside OpenAI's spec has no meaning for the embedded model"),
    summary="the embedded llama.cpp model (`provider: llamacpp`)",
)
"""What the embedded model does with each chat request parameter (see providers/parameters.py)."""


@dataclass(slots=True)
class GenerationRequest:
    """What every generation needs: shared kwargs, ``n`` runs, seed, logprobs, usage chunk."""

    kwargs: dict[str, Any]
    n: int = 1
    seed: int | None = None
    top_logprobs: int | None = None  # None: no logprobs; 0..20: that many alternatives
    include_usage: bool = False
    logit_bias: dict[int, float] | None = None  # checked against the vocabulary in the worker
    tools: ToolPlan | None = None  # a forced tool call

    def kwargs_for(self, run: int) -> dict[str, Any]:
        """Keyword arguments of the ``run``-th generation (choices differ under a fixed seed)."""
        kwargs = dict(self.kwargs)
        if self.seed is not None:
            kwargs["seed"] = (self.seed + run) & 0xFFFFFFFF
        return kwargs

    def check_vocabulary(self, n_vocab: int) -> None:
        """A 400 for ``logit_bias`` ids the model does not have (llama.cpp would drop them all)."""
        for token in self.logit_bias or ():
            if token >= n_vocab:
                raise InvalidRequest(
                    f"Invalid key in 'logit_bias': {token}. This model's vocabulary has ids 0 to {n_vocab - 1}.",
                    param="logit_bias",
                    code="invalid_value",
                )


@dataclass(slots=True)
class CompletionRequest(GenerationRequest):
    prompts: list[str] = field(default_factory=list)
    echo: bool = False


@dataclass(slots=True)
class EmbeddingRequest:
    inputs: list[str]
    encoding_format: str | None
    dimensions: int | None


def chat_request(body: dict[str, Any], *, stream: bool = False) -> GenerationRequest:
    PARAMETERS.refuse(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    kwargs: dict[str, Any] = {"messages": [_message(m, i) for i, m in enumerate(messages)]}
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    bias = _common_sampling(body, kwargs)
    setup = plan_tools(body, stream=stream)
    kwargs.update(setup.template)
    if setup.plan is not None:
        # A forced call: its grammar replaces any response_format (the call is the answer).
        if setup.plan.grammar is not None:
            from llama_cpp.llama_grammar import LlamaGrammar

            kwargs["grammar"] = LlamaGrammar.from_string(setup.plan.grammar)
    else:
        fmt = _response_format(body.get("response_format"))
        if fmt is not None:
            kwargs["response_format"] = fmt
    top_logprobs = None
    if body.get("logprobs"):
        top_logprobs = _bounded_int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
    return GenerationRequest(
        kwargs,
        n=_n(body),
        seed=_seed(body),
        top_logprobs=top_logprobs,
        include_usage=_include_usage(body),
        logit_bias=bias,
        tools=setup.plan,
    )


def completion_request(body: dict[str, Any]) -> CompletionRequest:
    prompts = _texts(body.get("prompt"), "prompt")
    if body.get("suffix"):
        raise InvalidRequest("suffix is not supported by this deployment", param="suffix")
    kwargs: dict[str, Any] = {"max_tokens": _positive_int(body, "max_tokens") or 16}
    bias = _common_sampling(body, kwargs)
    top_logprobs = _bounded_int(body, "logprobs", 0, 5)
    return CompletionRequest(
        kwargs,
        n=_n(body),
        seed=_seed(body),
        top_logprobs=top_logprobs,
        include_usage=_include_usage(body),
        logit_bias=bias,
        prompts=prompts,
        echo=bool(body.get("echo")),
    )


def embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    inputs = _texts(body.get("input"), "input")
    if any(not item for item in inputs):
        raise InvalidRequest("input must not contain empty strings", param="input")
    encoding = body.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
    return EmbeddingRequest(inputs, encoding, _positive_int(body, "dimensions"))


def _texts(value: Any, param: str) -> list[str]:
    """A ``prompt`` / ``input`` as texts: a string, strings, token ids, or lists of token ids."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"{param} must be a string, a list of strings or token ids, not empty", param=param)
    if all(type(t) is int for t in value):
        return [_decoded(value, param)]
    texts = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, list) and item and all(type(t) is int for t in item):
            texts.append(_decoded(item, f"{param}[{i}]"))
        else:
            raise InvalidRequest(f"{param}[{i}] must be a string or a non-empty list of token ids", param=param)
    return texts


def _decoded(ids: list[int], where: str) -> str:
    readings = decode_token_ids(ids)
    if not readings:
        raise InvalidRequest(
            f"{where} holds token ids that are not in {' or '.join(DECODING_ENCODINGS)}; send text",
            param=where.split("[", 1)[0],
        )
    return readings[0]


# --- field helpers --------------------------------------------------------------------------
def _message(message: Any, index: int) -> dict[str, Any]:
    param = f"messages[{index}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise InvalidRequest("each message must be an object with a role", param=param)
    role = "system" if message["role"] == "developer" else message["role"]
    content = _text_content(message.get("content"), param)
    tool_calls = message.get("tool_calls")
    if role == "assistant" and tool_calls and not content:
        # Templates without tool support would drop the call; keep it visible to the model.
        content = json.dumps([call.get("function", call) for call in tool_calls if isinstance(call, dict)])
    out: dict[str, Any] = {"role": role, "content": content}
    for key in ("name", "tool_call_id"):
        if message.get(key) is not None:
            out[key] = message[key]
    if tool_calls:
        out["tool_calls"] = tool_calls
    return out


def _text_content(content: Any, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequest(f"this deployment accepts text only, not '{kind}' content", param=f"{param}.content")
        return "\n".join(texts)
    raise InvalidRequest("content must be a string or a list of parts", param=f"{param}.content")


def _common_sampling(body: dict[str, Any], kwargs: dict[str, Any]) -> dict[int, float] | None:
    """Sampling options into ``kwargs``; returns the parsed ``logit_bias`` (None when absent)."""
    for key in _SAMPLING:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f"{key} must be a number", param=key)
        kwargs[key] = float(value)
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest("stop must be a string or a list of strings", param="stop")
        kwargs["stop"] = [s for s in stop if s]
    bias = _logit_bias(body.get("logit_bias"))
    if bias:
        kwargs["logit_bias"] = bias
    return bias


def _logit_bias(bias: Any) -> dict[int, float] | None:
    if bias is None:
        return None
    if not isinstance(bias, dict):
        raise InvalidRequest("logit_bias must map token ids to numbers", param="logit_bias", code="invalid_type")
    parsed: dict[int, float] = {}
    for key, value in bias.items():
        token = int(key) if isinstance(key, str) and key.isdigit() else None
        if token is None:
            raise InvalidRequest(
                f"Invalid key in 'logit_bias': {key!r} is not a token id.", param="logit_bias", code="invalid_value"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
            raise InvalidRequest(
                f"Invalid value for 'logit_bias' key {key}: {value!r}; it must be a number from -100 to 100.",
                param="logit_bias",
                code="invalid_value",
            )
        parsed[token] = float(value)
    return parsed


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return {"type": "json_object", "schema": schema} if isinstance(schema, dict) else {"type": "json_object"}
    raise InvalidRequest("response_format.type must be text, json_object or json_schema", param="response_format")


def _n(body: dict[str, Any]) -> int:
    return _bounded_int(body, "n", 1, MAX_N) or 1


def _seed(body: dict[str, Any]) -> int | None:
    seed = body.get("seed")
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidRequest("seed must be an integer", param="seed")
    return seed & 0xFFFFFFFF


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return bool(isinstance(options, dict) and options.get("include_usage"))


def _positive_int(body: dict[str, Any], key: str) -> int | None:
    return _bounded_int(body, key, 1, None)


def _bounded_int(body: dict[str, Any], key: str, low: int, high: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidRequest(f"{key} must be an integer {bound}", param=key)
    return value

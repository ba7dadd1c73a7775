"""OpenAI request bodies -> llama-cpp-python keyword arguments, and logprobs back to OpenAI.

Checks what the embedded backend cannot honour and refuses it with a 400 naming the field
(images, token-array prompts, ``n`` above :data:`MAX_N`, ...); fields it has no use for
(``user``, ``metadata``, ``store``, ``parallel_tool_calls``, ...) are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidRequest
from providers.llamacpp_worker import TokenRecord

MAX_N = 16
MAX_TOP_LOGPROBS = 20
_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


@dataclass(slots=True)
class GenerationRequest:
    """What every generation needs: shared kwargs, ``n`` runs, seed, logprobs, usage chunk."""

    kwargs: dict[str, Any]
    n: int = 1
    seed: int | None = None
    top_logprobs: int | None = None  # None: no logprobs; 0..20: that many alternatives
    include_usage: bool = False

    def kwargs_for(self, run: int) -> dict[str, Any]:
        """Keyword arguments of the ``run``-th generation (choices differ under a fixed seed)."""
        kwargs = dict(self.kwargs)
        if self.seed is not None:
            kwargs["seed"] = (self.seed + run) & 0xFFFFFFFF
        return kwargs


@dataclass(slots=True)
class CompletionRequest(GenerationRequest):
    prompts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class EmbeddingRequest:
    inputs: list[str]
    encoding_format: str | None
    dimensions: int | None


def chat_request(body: dict[str, Any]) -> GenerationRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    kwargs: dict[str, Any] = {"messages": [_message(m, i) for i, m in enumerate(messages)]}
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    _common_sampling(body, kwargs)
    fmt = _response_format(body.get("response_format"))
    if fmt is not None:
        kwargs["response_format"] = fmt
    kwargs.update(_tools(body.get("tools"), body.get("tool_choice")))
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            kwargs[legacy] = body[legacy]
    top_logprobs = None
    if body.get("logprobs"):
        top_logprobs = _bounded_int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
    return GenerationRequest(
        kwargs, n=_n(body), seed=_seed(body), top_logprobs=top_logprobs, include_usage=_include_usage(body)
    )


def completion_request(body: dict[str, Any]) -> CompletionRequest:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    elif isinstance(prompt, list) and prompt:
        raise InvalidRequest("token-array prompts are not supported by this deployment; send text", param="prompt")
    else:
        raise InvalidRequest("prompt must be a string or a non-empty list of strings", param="prompt")
    if body.get("suffix"):
        raise InvalidRequest("suffix is not supported by this deployment", param="suffix")
    kwargs: dict[str, Any] = {"max_tokens": _positive_int(body, "max_tokens") or 16}
    _common_sampling(body, kwargs)
    if body.get("echo"):
        kwargs["echo"] = True
    top_logprobs = _bounded_int(body, "logprobs", 0, 5)
    return CompletionRequest(
        kwargs, n=_n(body), seed=_seed(body), top_logprobs=top_logprobs,
        include_usage=_include_usage(body), prompts=prompts,
    )


def embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("input must be a string or a non-empty list of strings", param="input")
    if not all(isinstance(item, str) for item in inputs):
        raise InvalidRequest("token-array inputs are not supported by this deployment; send text", param="input")
    if any(not item for item in inputs):
        raise InvalidRequest("input must not contain empty strings", param="input")
    encoding = body.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
    return EmbeddingRequest(inputs, encoding, _positive_int(body, "dimensions"))


# --- logprobs -------------------------------------------------------------------------------
def _token_text(llama: Any, token: int) -> tuple[str, list[int]]:
    raw = llama.detokenize([token])
    return raw.decode("utf-8", errors="replace"), list(raw)


def chat_logprobs(llama: Any, records: list[TokenRecord]) -> dict[str, Any]:
    """Chat format: ``{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}``."""
    content = []
    for rec in records:
        text, raw = _token_text(llama, rec.token)
        top = []
        for token, logprob in rec.top:
            alt_text, alt_raw = _token_text(llama, token)
            top.append({"token": alt_text, "logprob": logprob, "bytes": alt_raw})
        content.append({"token": text, "logprob": rec.logprob, "bytes": raw, "top_logprobs": top})
    return {"content": content, "refusal": None}


def completion_logprobs(llama: Any, records: list[TokenRecord]) -> dict[str, Any]:
    """Legacy completions format: parallel ``tokens`` / ``token_logprobs`` / ``top_logprobs`` lists."""
    tokens, logprobs, tops, offsets, offset = [], [], [], [], 0
    for rec in records:
        text, _ = _token_text(llama, rec.token)
        tokens.append(text)
        logprobs.append(rec.logprob)
        tops.append({_token_text(llama, t)[0]: lp for t, lp in rec.top})
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}


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


def _common_sampling(body: dict[str, Any], kwargs: dict[str, Any]) -> None:
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
    bias = body.get("logit_bias")
    if bias:
        try:
            kwargs["logit_bias"] = {int(k): float(v) for k, v in bias.items()}
        except (AttributeError, TypeError, ValueError):
            raise InvalidRequest("logit_bias must map token ids to numbers", param="logit_bias") from None


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


def _tools(tools: Any, choice: Any) -> dict[str, Any]:
    if not tools or choice == "none":
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list", param="tools")
    names = [t.get("function", {}).get("name") for t in tools if isinstance(t, dict)]
    if choice == "required" and len(names) == 1:
        choice = {"type": "function", "function": {"name": names[0]}}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            raise InvalidRequest(f"tool_choice names '{name}', which is not in tools", param="tool_choice")
        return {"tools": tools, "tool_choice": choice}
    # "auto" (or "required" among several tools): the chat template sees the tools; the output
    # is constrained only when one function is named.
    return {"tools": tools, "tool_choice": "auto"}


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

"""The OpenAI wire format, typed: requests, responses, stream chunks and usage, with the checks and
helpers that read them.

Bodies stay the plain ``dict`` that ``orjson.loads`` returns (no model validation on the request
path); these ``TypedDict`` s give them names and field types at zero runtime cost. Fields follow the
order of OpenAI's API reference; every request type is open (``total=False``), and unknown fields
are forwarded to the backend untouched. The ``check_*`` functions verify only what the gateway
itself relies on and raise :class:`~core.errors.InvalidRequest` naming the ``param``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from core.errors import InvalidRequest
from core.literals import Endpoint

# ---------------------------------------------------------------- requests


class FunctionCall(TypedDict, total=False):
    name: str
    arguments: str


class ToolCall(TypedDict, total=False):
    id: str
    type: str
    function: FunctionCall


class ContentPart(TypedDict, total=False):
    type: str  # text | image_url | input_audio | file | refusal | ...
    text: str
    image_url: dict[str, Any]
    input_audio: dict[str, Any]
    file: dict[str, Any]
    refusal: str


class ChatMessage(TypedDict, total=False):
    role: str  # system | developer | user | assistant | tool | function
    content: str | list[ContentPart] | None
    name: str
    refusal: str | None
    tool_calls: list[ToolCall]
    tool_call_id: str
    function_call: FunctionCall


class StreamOptions(TypedDict, total=False):
    include_usage: bool


class ChatRequest(TypedDict, total=False):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage]
    model: str
    audio: dict[str, Any]
    frequency_penalty: float
    logit_bias: dict[str, float]
    logprobs: bool
    max_completion_tokens: int
    max_tokens: int
    metadata: dict[str, Any]
    modalities: list[str]
    n: int
    parallel_tool_calls: bool
    prediction: dict[str, Any]
    presence_penalty: float
    reasoning_effort: str
    response_format: dict[str, Any]
    seed: int
    service_tier: str
    stop: str | list[str]
    store: bool
    stream: bool
    stream_options: StreamOptions
    temperature: float
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_logprobs: int
    top_p: float
    user: str


class CompletionRequest(TypedDict, total=False):
    """``POST /v1/completions`` (legacy text completions)."""

    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool
    logprobs: int
    max_tokens: int
    n: int
    stream: bool
    stream_options: StreamOptions
    suffix: str
    user: str
    metadata: dict[str, Any]


class EmbeddingRequest(TypedDict, total=False):
    """``POST /v1/embeddings``."""

    input: str | list[str] | list[int] | list[list[int]]
    model: str
    dimensions: int
    encoding_format: Literal["float", "base64"]
    user: str
    metadata: dict[str, Any]


AnyRequest = ChatRequest | CompletionRequest | EmbeddingRequest

# ---------------------------------------------------------------- responses


class PromptTokensDetails(TypedDict, total=False):
    cached_tokens: int


class WireUsage(TypedDict, total=False):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: dict[str, int]


class Message(TypedDict, total=False):
    role: str
    content: str | None
    refusal: str | None
    tool_calls: list[ToolCall]


class ChatChoice(TypedDict):
    index: int
    message: Message
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: NotRequired[WireUsage | None]
    system_fingerprint: NotRequired[str]


class ChunkChoice(TypedDict):
    index: int
    delta: Message
    logprobs: NotRequired[dict[str, Any] | None]
    finish_reason: str | None


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: NotRequired[WireUsage | None]
    system_fingerprint: NotRequired[str]


class TextChoice(TypedDict):
    index: int
    text: str
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class Completion(TypedDict):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: NotRequired[WireUsage | None]
    system_fingerprint: NotRequired[str]


class Embedding(TypedDict):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingList(TypedDict):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: WireUsage


class Model(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[Model]


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(TypedDict):
    error: ErrorDetail


AnyReply = ChatCompletion | Completion | EmbeddingList

# ---------------------------------------------------------------- checks at the edge

MAX_TOKENS_FIELDS = ("max_completion_tokens", "max_tokens")
_INT_LIMIT = 2**31 - 1  # what every backend's integer fields hold


def _positive_int(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (type(value) is not int or not 1 <= value <= _INT_LIMIT):
        raise InvalidRequest(f"'{name}' must be an integer between 1 and {_INT_LIMIT}", param=name, code="invalid_value")


def _check_common(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model", code="missing_required_parameter")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream", code="invalid_type")
    for name in (*MAX_TOKENS_FIELDS, "n"):
        _positive_int(body, name)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object", param="metadata", code="invalid_type")
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise InvalidRequest("'stream_options' must be an object", param="stream_options", code="invalid_type")
        if not stream:
            # OpenAI's own answer: the option means nothing without a stream.
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )


def check_chat(body: dict[str, Any]) -> ChatRequest:
    """The body as a :class:`ChatRequest`, or a 400 naming what is wrong."""
    _check_common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages", code="invalid_value")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]", code="invalid_value")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools", code="invalid_type")
    return body  # type: ignore[return-value]


def check_completions(body: dict[str, Any]) -> CompletionRequest:
    """The body as a :class:`CompletionRequest`, or a 400 naming what is wrong."""
    _check_common(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
        raise InvalidRequest("'prompt' must be a string or a non-empty array", param="prompt", code="invalid_value")
    return body  # type: ignore[return-value]


def check_embeddings(body: dict[str, Any]) -> EmbeddingRequest:
    """The body as an :class:`EmbeddingRequest`, or a 400 naming what is wrong."""
    _check_common(body)
    value = body.get("input")
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' cannot be an empty string", param="input", code="invalid_value")
        return body  # type: ignore[return-value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'input' must be a string or a non-empty array", param="input", code="invalid_value")
    if all(type(t) is int for t in value):
        return body  # type: ignore[return-value]  # one input given as token ids
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(f"input[{i}] cannot be an empty string", param="input", code="invalid_value")
        elif not (isinstance(item, list) and item and all(type(t) is int for t in item)):
            raise InvalidRequest(f"input[{i}] must be a string or an array of token ids", param="input", code="invalid_value")
    return body  # type: ignore[return-value]


CHECKS = {"chat": check_chat, "completions": check_completions, "embeddings": check_embeddings}


def endpoint_of(body: dict[str, Any]) -> Endpoint:
    """Which endpoint a body was written for (``/v1/route/explain`` takes any of the three)."""
    if "messages" in body:
        return "chat"
    if "prompt" in body:
        return "completions"
    if "input" in body:
        return "embeddings"
    return "chat"


# ---------------------------------------------------------------- reading replies and usage


def choice_text(choice: Any) -> str:
    """The generated text of one choice, whole (``message``) or streamed (``delta``), incl. tool calls."""
    if not isinstance(choice, dict):
        return ""
    parts = [choice.get("text")]
    for key in ("message", "delta"):
        part = choice.get(key)
        if isinstance(part, dict):
            parts.append(part.get("content"))
            calls = part.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    parts += [function.get("name"), function.get("arguments")]
    return "".join(p for p in parts if isinstance(p, str))


def reply_text(data: Any) -> str:
    """Every choice's generated text in a reply or chunk."""
    choices = data.get("choices") if isinstance(data, dict) else None
    return "".join(choice_text(c) for c in choices) if isinstance(choices, list) else ""


MAX_REPORTED_TOKENS = 100_000_000
"""No real request uses more; a larger count is an upstream bug, not usage."""


@dataclass(slots=True)
class TokenUsage:
    """The tokens one answered request used: prompt (of which cached) and completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _count(value: Any) -> int | None:
    if type(value) is int and 0 <= value <= MAX_REPORTED_TOKENS:
        return value
    return None


def read_usage(usage: Any) -> tuple[TokenUsage | None, str | None]:
    """An upstream's ``usage`` object, validated: ``(usage, None)``, ``(None, None)`` when it gave
    none, or ``(None, why)`` when what it gave is not usage (negative, non-integer, absurd)."""
    if not isinstance(usage, dict) or usage.get("prompt_tokens") is None:
        return None, None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens", 0))
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    if prompt is None or completion is None or cached is None or cached > prompt:
        return None, f"invalid usage from upstream: {_sample(usage)}"
    return TokenUsage(prompt, completion, cached), None


def _sample(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."

"""Wire fixtures for every backend Switchyard claims, written from each provider's public API
reference: what a normal answer, a stream (with and without usage), a tool call and the errors
that matter (context length, rate limit with Retry-After, auth) look like on that wire.

OpenAI-compatible servers and APIs share one shape with per-provider quirks (:data:`FLAVOURS`):
the error bodies each one really sends, the extra fields on its chunks, SSE comments, where its
usage comes. Anthropic (Messages), Gemini (generateContent) and Bedrock (Converse) have their
own wire formats, built here and served by :mod:`tests.fakes.wire_upstream`.

A scenario is picked from the model name (or an ``x-fake-scenario`` header, for servers that
ignore the model): ``tool`` (a tool call), ``context`` (context length exceeded), ``ratelimit``
(429 with Retry-After), ``badkey`` (the backend refuses the key), ``nousage`` (a stream that
carries no usage even when asked); anything else is a normal answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ANSWER = "Paris is the capital of France."
PIECES = ["Paris", " is", " the", " capital", " of", " France", "."]
PROMPT_TOKENS = 14
COMPLETION_TOKENS = len(PIECES)
TOOL_NAME = "get_weather"
TOOL_ARGS = '{"city": "Paris", "unit": "celsius"}'
TOOL_ARG_PIECES = ['{"city": ', '"Paris", ', '"unit": "celsius"}']
RETRY_AFTER = "7"
SCENARIOS = ("answer", "tool", "context", "ratelimit", "badkey", "nousage")


def scenario_of(model: str, header: str | None = None) -> str:
    if header in SCENARIOS:
        return header
    for name in SCENARIOS[1:]:
        if name in model:
            return name
    return "answer"


@dataclass(frozen=True)
class ErrorFixture:
    status: int
    body: Any  # dict (JSON) or str (a raw body, e.g. an HTML page from a proxy in front)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Flavour:
    """One OpenAI-compatible backend's quirks."""

    name: str
    context: ErrorFixture | None  # None: the server has no such error (it truncates instead)
    ratelimit: ErrorFixture | None
    badkey: ErrorFixture | None
    chunk_extras: dict[str, Any] = field(default_factory=dict)  # on every stream chunk
    choice_extras: dict[str, Any] = field(default_factory=dict)  # on every choice
    reply_extras: dict[str, Any] = field(default_factory=dict)  # on a whole answer
    sse_comment: bytes | None = None  # a keep-alive comment line sent before the first event
    usage_when_asked_only: bool = True  # False: the last chunk carries usage whatever was asked


def _openai_error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_RETRY = {"retry-after": RETRY_AFTER}

FLAVOURS: dict[str, Flavour] = {
    # vLLM's OpenAI-compatible server: ErrorResponse {"error": {message, type, param, code}}
    # (older releases sent it unwrapped with "object": "error"); choices carry stop_reason.
    "vllm": Flavour(
        "vllm",
        context=ErrorFixture(
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 4096 tokens. However, you requested 5120 tokens "
                    "(4096 in the messages, 1024 in the completion). Please reduce the length of the messages "
                    "or completion.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            },
        ),
        ratelimit=ErrorFixture(
            429,
            {"object": "error", "message": "Too many requests", "type": "TooManyRequests", "param": None, "code": 429},
            _RETRY,
        ),
        badkey=ErrorFixture(401, {"error": "Unauthorized"}),
        choice_extras={"stop_reason": None},
    ),
    # Ollama's /v1: errors {"error": {message, type: "api_error", ...}}; no auth and no context
    # error of its own (it truncates the prompt to num_ctx); 503 when its queue is full.
    "ollama": Flavour(
        "ollama",
        context=None,
        ratelimit=ErrorFixture(
            503, _openai_error("server busy, please try again.  maximum pending requests exceeded", "api_error", None), _RETRY
        ),
        badkey=None,
        chunk_extras={"system_fingerprint": "fp_ollama"},
    ),
    # llama.cpp's llama-server: {"error": {code, message, type}}; exceed_context_size_error.
    "llamacpp_server": Flavour(
        "llamacpp_server",
        context=ErrorFixture(
            400,
            {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 5000,
                    "n_ctx": 4096,
                }
            },
        ),
        ratelimit=ErrorFixture(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, _RETRY),
        badkey=ErrorFixture(401, {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}),
        reply_extras={"timings": {"prompt_n": PROMPT_TOKENS, "predicted_n": COMPLETION_TOKENS}},
    ),
    # Hugging Face TGI: {"error": "...", "error_type": "..."}; the Messages API takes model "tgi".
    "tgi": Flavour(
        "tgi",
        context=ErrorFixture(
            422,
            {
                "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
                "Given: 4000 `inputs` tokens and 500 `max_new_tokens`",
                "error_type": "validation",
            },
        ),
        ratelimit=ErrorFixture(429, {"error": "Model is overloaded", "error_type": "overloaded"}, _RETRY),
        badkey=ErrorFixture(401, {"error": "Unauthorized", "error_type": "authentication"}),
        chunk_extras={"system_fingerprint": "3.0.1-sha-bb9095a"},
        usage_when_asked_only=False,
    ),
    # LM Studio: {"error": "..."} strings.
    "lmstudio": Flavour(
        "lmstudio",
        context=ErrorFixture(
            400,
            {
                "error": "Trying to keep the first 5000 tokens when context the overflows. However, "
                "the model is loaded with context length of only 4096 tokens, which is not "
                "enough. Try to load the model with a larger context length, or provide a "
                "shorter input"
            },
        ),
        ratelimit=None,
        badkey=None,
        chunk_extras={"system_fingerprint": "lmstudio-community/qwen2.5-7b-instruct"},
    ),
    # OpenAI itself.
    "openai": Flavour(
        "openai",
        context=ErrorFixture(
            400,
            _openai_error(
                "This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 130012 tokens. Please reduce the length of the "
                "messages.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
        ),
        ratelimit=ErrorFixture(
            429,
            _openai_error(
                "Rate limit reached for gpt-4o-mini in organization org-x on requests "
                "per min (RPM): Limit 3, Used 3, Requested 1.",
                "requests",
                "rate_limit_exceeded",
            ),
            _RETRY,
        ),
        badkey=ErrorFixture(
            401,
            _openai_error(
                "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        ),
        chunk_extras={"system_fingerprint": "fp_0ba0d124f1", "service_tier": "default"},
    ),
    # Azure OpenAI: OpenAI's body plus content-filter results; errors with string codes.
    "azure": Flavour(
        "azure",
        context=ErrorFixture(
            400,
            _openai_error(
                "This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 130012 tokens. Please reduce the length of the "
                "messages.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
        ),
        ratelimit=ErrorFixture(
            429,
            {
                "error": {
                    "code": "429",
                    "message": "Requests to the ChatCompletions_Create "
                    "Operation under Azure OpenAI API version 2024-10-21 have exceeded token "
                    "rate limit of your current OpenAI S0 pricing tier. Please retry after 7 "
                    "seconds.",
                }
            },
            _RETRY,
        ),
        badkey=ErrorFixture(
            401,
            {
                "error": {
                    "code": "401",
                    "message": "Access denied due to invalid subscription key or "
                    "wrong API endpoint. Make sure to provide a valid key for an active "
                    "subscription and use a correct regional API endpoint for your resource.",
                }
            },
        ),
        reply_extras={"prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
    ),
    # Mistral: {"object": "error", message, type, param, code}; 401 {"message": "Unauthorized"}.
    "mistral": Flavour(
        "mistral",
        context=ErrorFixture(
            400,
            {
                "object": "error",
                "message": "Prompt contains 40000 tokens and 0 draft tokens, too "
                "large for model with 32768 maximum context length",
                "type": "invalid_request_message_error",
                "param": None,
                "code": "3051",
            },
        ),
        ratelimit=ErrorFixture(429, {"message": "Requests rate limit exceeded"}, _RETRY),
        badkey=ErrorFixture(401, {"message": "Unauthorized", "request_id": "3f2a0c1d"}),
        usage_when_asked_only=False,  # Mistral's last chunk carries usage, asked or not
    ),
    # Groq: OpenAI's shapes; usage also in x_groq on the last chunk.
    "groq": Flavour(
        "groq",
        context=ErrorFixture(
            400,
            _openai_error(
                "Please reduce the length of the messages or completion.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
        ),
        ratelimit=ErrorFixture(
            429,
            _openai_error(
                "Rate limit reached for model `llama-3.1-8b-instant` in organization "
                "`org_x` on tokens per minute (TPM): Limit 6000, Used 5900, Requested "
                "400. Please try again in 7s.",
                "tokens",
                "rate_limit_exceeded",
            ),
            _RETRY,
        ),
        badkey=ErrorFixture(401, _openai_error("Invalid API Key", "invalid_request_error", "invalid_api_key")),
        chunk_extras={"x_groq": {"id": "req_01"}},
        reply_extras={
            "service_tier": "on_demand",
            "system_fingerprint": "fp_a4265e44d5",
            "usage_breakdown": None,
            "x_groq": {"id": "req_01"},
        },
    ),
    # Together AI: OpenAI's shapes; TGI-worded validation messages behind them.
    "together": Flavour(
        "together",
        context=ErrorFixture(
            400,
            _openai_error(
                "Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                "8193. Given: 9000 `inputs` tokens and 512 `max_new_tokens`",
                "invalid_request_error",
                None,
            ),
        ),
        ratelimit=ErrorFixture(
            429,
            _openai_error(
                "You have been rate limited. Your rate limit is 600 queries per minute.",
                "rate_limit_exceeded",
                "rate_limit_exceeded",
            ),
            _RETRY,
        ),
        badkey=ErrorFixture(
            401,
            _openai_error(
                "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        ),
    ),
    # Fireworks: {"error": {"object": "error", "type", "message"}}.
    "fireworks": Flavour(
        "fireworks",
        context=ErrorFixture(
            400,
            {
                "error": {
                    "object": "error",
                    "type": "invalid_request_error",
                    "message": "The prompt is too long: 140000, model maximum context length: 131072",
                }
            },
        ),
        ratelimit=ErrorFixture(
            429,
            {
                "error": {
                    "object": "error",
                    "type": "rate_limit_exceeded",
                    "message": "Request rate limit exceeded, please try again later",
                }
            },
            _RETRY,
        ),
        badkey=ErrorFixture(
            401,
            {"error": {"object": "error", "type": "invalid_request_error", "message": "The API key you provided is invalid."}},
        ),
    ),
    # OpenRouter: {"error": {message, code: <int>, metadata}}; ": OPENROUTER PROCESSING" comments.
    "openrouter": Flavour(
        "openrouter",
        context=ErrorFixture(
            400,
            {
                "error": {
                    "message": "This endpoint's maximum context length is 131072 tokens. "
                    "However, you requested about 140000 tokens (139000 of text input, 1000 in "
                    "the output). Please reduce the length of either one.",
                    "code": 400,
                    "metadata": {"provider_name": None},
                }
            },
        ),
        ratelimit=ErrorFixture(429, {"error": {"message": "Rate limit exceeded: free-models-per-min.", "code": 429}}, _RETRY),
        badkey=ErrorFixture(401, {"error": {"message": "No auth credentials found", "code": 401}}),
        sse_comment=b": OPENROUTER PROCESSING\n\n",
        chunk_extras={"provider": "Fireworks"},
    ),
    # Hugging Face Inference Providers (router, OpenAI-compatible): {"error": "..."} strings.
    "huggingface": Flavour(
        "huggingface",
        context=ErrorFixture(
            422,
            {
                "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8192. "
                "Given: 9000 `inputs` tokens and 500 `max_new_tokens`",
                "error_type": "validation",
            },
        ),
        ratelimit=ErrorFixture(
            429,
            {
                "error": "Rate limit reached. You reached free usage limit (reset hourly). Please "
                "subscribe to a plan to increase your limits."
            },
            _RETRY,
        ),
        badkey=ErrorFixture(401, {"error": "Invalid credentials in Authorization header"}),
    ),
    # NVIDIA's hosted NIM endpoints: RFC 7807 problem details.
    "nvidia": Flavour(
        "nvidia",
        context=ErrorFixture(
            400,
            {
                "type": "about:blank",
                "status": 400,
                "title": "Bad Request",
                "detail": "This model's maximum context length is 8192 tokens. However, you requested "
                "9000 tokens (8000 in the messages, 1000 in the completion).",
            },
        ),
        ratelimit=ErrorFixture(429, {"status": 429, "title": "Too Many Requests", "detail": "Rate limit exceeded"}, _RETRY),
        badkey=ErrorFixture(401, {"status": 401, "title": "Unauthorized", "detail": "Authentication failed"}),
    ),
    # Perplexity: answers carry citations and search results; a bad key meets its proxy's HTML.
    "perplexity": Flavour(
        "perplexity",
        context=ErrorFixture(
            400,
            _openai_error(
                "This model's maximum context length is 127072 tokens. However, you requested 130000 tokens.",
                "invalid_request_error",
                "400",
            ),
        ),
        ratelimit=ErrorFixture(429, _openai_error("Rate limit exceeded", "rate_limit_exceeded", "429"), _RETRY),
        badkey=ErrorFixture(
            401,
            "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n"
            "<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>openresty/1.25.3.1"
            "</center>\r\n</body>\r\n</html>\r\n",
        ),
        reply_extras={
            "citations": ["https://en.wikipedia.org/wiki/Paris"],
            "search_results": [{"title": "Paris", "url": "https://en.wikipedia.org/wiki/Paris"}],
        },
        usage_when_asked_only=False,  # every Perplexity chunk carries the usage so far
    ),
}

# ---------------------------------------------------------------- Anthropic Messages

ANTHROPIC_ERRORS = {
    "context": ErrorFixture(
        400,
        {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"},
        },
    ),
    "ratelimit": ErrorFixture(
        429,
        {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"},
        },
        {"retry-after": RETRY_AFTER, "anthropic-ratelimit-requests-remaining": "0"},
    ),
    "badkey": ErrorFixture(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
}

# ---------------------------------------------------------------- Gemini

GEMINI_ERRORS = {
    "context": ErrorFixture(
        400,
        {
            "error": {
                "code": 400,
                "message": "The input token count (1048600) exceeds the maximum number of tokens allowed (1048576).",
                "status": "INVALID_ARGUMENT",
            }
        },
    ),
    "ratelimit": ErrorFixture(
        429,
        {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}},
        _RETRY,
    ),
    # Gemini answers a bad key with 400, not 401: the reason says what it is.
    "badkey": ErrorFixture(
        400,
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}
                ],
            }
        },
    ),
}

# ---------------------------------------------------------------- Bedrock Converse

BEDROCK_ERRORS = {
    "context": ErrorFixture(
        400,
        {"message": "Input is too long for requested model."},
        {"x-amzn-errortype": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"},
    ),
    "ratelimit": ErrorFixture(
        429,
        {"message": "Too many requests, please wait before trying again."},
        {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", **_RETRY},
    ),
    "badkey": ErrorFixture(
        403,
        {"message": "The security token included in the request is invalid."},
        {"x-amzn-errortype": "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/"},
    ),
}

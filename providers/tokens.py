"""Token counting and token-id decoding with tiktoken, offline: the encodings bundled inside the
litellm wheel.

Counting is used where a backend reports no usage (a stream cut short, an upstream without
``include_usage``) and for admission's worst-case estimate before a request is sent. Decoding
turns token-id inputs (LangChain sends ``input: [[9906, 1917]]`` by default) back into the text
they stand for, so that it can be scanned and, for backends with another vocabulary, embedded.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def _point_tiktoken_at_bundled_encodings() -> None:
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    if folder.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)


@functools.cache
def _encoding(name: str) -> Any:
    _point_tiktoken_at_bundled_encodings()
    import tiktoken

    return tiktoken.get_encoding(name)


DECODING_ENCODINGS = ("cl100k_base", "o200k_base")
"""The vocabularies OpenAI-format clients tokenize with (text-embedding-3/ada-002 and gpt-4-era
models use cl100k; gpt-4o and later use o200k)."""


def decode_token_ids(ids: Sequence[int], encodings: Sequence[str] = DECODING_ENCODINGS) -> list[str]:
    """The text ``ids`` stand for in each encoding whose vocabulary holds them all.

    A client does not say which tokenizer made its ids, so every plausible reading is returned:
    whoever needs to be safe (the sensitivity scan) reads them all; whoever needs one text takes
    the first. An id that is out of range (or negative) for an encoding leaves that encoding out.
    """
    texts: list[str] = []
    for name in encodings:
        encoding = _encoding(name)
        if all(type(i) is int and 0 <= i < encoding.n_vocab for i in ids):
            try:
                texts.append(encoding.decode(list(ids), errors="replace"))
            except (KeyError, ValueError):  # a hole in the vocabulary (reserved ids)
                continue
    return texts


def encoding_name_for(model: str) -> str:
    bare = model.rsplit("/", 1)[-1].lower()
    return "o200k_base" if bare.startswith(_O200K_PREFIXES) else "cl100k_base"


def count_text(text: str, model: str = "") -> int:
    if not text:
        return 0
    return len(_encoding(encoding_name_for(model)).encode(text, disallowed_special=()))


def _message_texts(message: dict[str, Any]) -> Iterable[str]:
    content = message.get("content")
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function = call.get("function") or {}
            yield str(function.get("name") or "")
            yield str(function.get("arguments") or "")
    if isinstance(message.get("name"), str):
        yield message["name"]


def count_prompt(body: dict[str, Any], model: str = "") -> int:
    """Prompt tokens of a chat, completion or embeddings body, OpenAI's counting convention."""
    if isinstance(body.get("messages"), list):
        total = 3  # every reply is primed with <|start|>assistant<|message|>
        for message in body["messages"]:
            if isinstance(message, dict):
                total += 3 + sum(count_text(t, model) for t in _message_texts(message))
        if body.get("tools"):
            total += count_text(orjson.dumps(body["tools"]).decode(), model)
        return total
    value = body.get("prompt", body.get("input"))
    if isinstance(value, str):
        return count_text(value, model)
    if isinstance(value, list):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += count_text(item, model)
            elif isinstance(item, list):
                total += len(item)  # already token ids
            elif isinstance(item, int):
                total += 1
        return total
    return 0


_EXACT_UP_TO_CHARS = 8192  # below this tiktoken costs well under a tenth of a millisecond
_OPENAI_TOKENIZED = ("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "davinci", "babbage")
_OPENAI_HOSTS = ("", "openai", "azure")
TEMPLATE_TOKENS_PER_MESSAGE = 8  # the most a chat template adds around one message (Llama 3: 5)
IMAGE_TOKEN_ALLOWANCE = 3000  # per image part: above what any major vision API counts for one image


def counted_exactly(model: str) -> bool:
    """True when tiktoken counts exactly what this model's provider will bill (OpenAI's models)."""
    host, _, bare = model.rpartition("/")
    return host in _OPENAI_HOSTS and bare.lower().startswith(_OPENAI_TOKENIZED)


def prompt_token_bound(body: dict[str, Any], model: str, estimate: int, images: int = 0) -> int:
    """Prompt tokens, never fewer than the upstream will count.

    For OpenAI's own models a small prompt is counted exactly with tiktoken. Any other tokenizer
    may cut the same text finer, so the bound is the UTF-8 byte length of the JSON the prompt
    travels in (a token spans at least one byte) plus the most a chat template adds per message,
    plus an allowance per image; it costs one C-speed serialisation and no tokenizer.
    """
    if counted_exactly(model) and estimate * 4 <= _EXACT_UP_TO_CHARS:
        return count_prompt(body, model) + images * IMAGE_TOKEN_ALLOWANCE
    messages = body.get("messages")
    framing = TEMPLATE_TOKENS_PER_MESSAGE * (len(messages) + 1) if isinstance(messages, list) else 0
    payload = messages if messages is not None else body.get("prompt", body.get("input", ""))
    size = len(orjson.dumps(payload)) + (len(orjson.dumps(body["tools"])) if body.get("tools") else 0)
    return size + framing + images * IMAGE_TOKEN_ALLOWANCE

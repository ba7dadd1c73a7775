"""What an upstream would see of a request, flattened into text for the classifiers.

Scanned: every chat message's text content and content parts, ``name``, ``refusal``, tool-call
names and arguments, tool results, the legacy ``function_call``; ``prompt`` and ``suffix`` of a
completion; ``input`` of an embedding; the ``user`` field, ``prediction`` content and ``metadata``
values other than the gateway's own hints. Not scanned: tool definitions and response schemas
(written by the developer, not user data) and image bytes.
Token-id arrays carry no text; they are counted as prompt tokens instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from routing.types import Endpoint

_IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
_HINT_KEYS = frozenset(f"{prefix}{name}" for prefix in ("", "x-switchyard-") for name in ("sensitivity", "task", "project-tag"))


def _is_mapping(value: Any) -> bool:
    return isinstance(value, dict) or isinstance(value, Mapping)  # the dict check is the fast path


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class RequestContent:
    """The texts of one request and the few structural facts the router needs."""

    texts: tuple[str, ...]
    last_user_text: str  # what the task heuristic reads first
    images: int = 0
    token_ids: int = 0  # prompt tokens given as token-id arrays
    messages: int = 0
    chars: int = 0  # total length of ``texts``

    def joined(self) -> str:
        # a blank line between parts keeps a pattern from matching across two messages
        return "\n\n".join(self.texts)


class _Collector:
    __slots__ = ("texts", "images", "token_ids")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.images = 0
        self.token_ids = 0

    def add(self, value: Any) -> None:
        if isinstance(value, str):
            if value:
                self.texts.append(value)
        elif value and (isinstance(value, (list, tuple)) or _is_mapping(value)):
            try:  # arguments sent as an object rather than a JSON string
                self.texts.append(orjson.dumps(value).decode())
            except TypeError:
                self.texts.append(str(value))

    def add_content(self, content: Any) -> None:
        if isinstance(content, str):
            self.add(content)
            return
        if _is_mapping(content):
            content = [content]
        if not isinstance(content, (list, tuple)):
            return
        for part in content:
            if isinstance(part, str):
                self.add(part)
            elif _is_mapping(part):
                kind = part.get("type")
                if kind in _IMAGE_PART_TYPES:
                    self.images += 1
                elif kind == "refusal":
                    self.add(part.get("refusal"))
                else:
                    self.add(part.get("text"))

    def add_prompt(self, prompt: Any) -> None:
        """``prompt`` / ``input``: a string, strings, token ids, or lists of token ids."""
        if isinstance(prompt, str):
            self.add(prompt)
        elif isinstance(prompt, (list, tuple)):
            for item in prompt:
                if isinstance(item, str):
                    self.add(item)
                elif isinstance(item, int):
                    self.token_ids += 1
                elif isinstance(item, (list, tuple)):
                    self.token_ids += len(item)


def _function_texts(collector: _Collector, call: Any) -> None:
    if _is_mapping(call):
        collector.add(call.get("name"))
        collector.add(call.get("arguments"))


def _chat(body: Mapping[str, Any], collector: _Collector) -> tuple[str, int]:
    messages = body.get("messages")
    if not isinstance(messages, (list, tuple)) and (not isinstance(messages, Sequence) or isinstance(messages, str)):
        return "", 0
    last_user = ""
    for message in messages:
        if not _is_mapping(message):
            continue
        before = len(collector.texts)
        collector.add_content(message.get("content"))
        if message.get("role") == "user":
            last_user = "\n".join(collector.texts[before:])
        collector.add(message.get("name"))
        collector.add(message.get("refusal"))
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, (list, tuple)):
            for call in tool_calls:
                if _is_mapping(call):
                    _function_texts(collector, call.get("function"))
        _function_texts(collector, message.get("function_call"))
    return last_user, len(messages)


def extract_content(endpoint: Endpoint, body: Mapping[str, Any]) -> RequestContent:
    """Collect every text of ``body`` an upstream would see (see the module docstring)."""
    collector = _Collector()
    last_user, messages = "", 0
    if endpoint == "chat":
        last_user, messages = _chat(body, collector)
    elif endpoint == "completions":
        collector.add_prompt(body.get("prompt"))
        last_user = "\n".join(collector.texts)
        collector.add(body.get("suffix"))
    else:
        collector.add_prompt(body.get("input"))
        last_user = "\n".join(collector.texts)
    collector.add(body.get("user"))
    prediction = body.get("prediction")
    if _is_mapping(prediction):
        collector.add_content(prediction.get("content"))
    metadata = body.get("metadata")
    if metadata and _is_mapping(metadata):
        for key, value in metadata.items():
            if key not in _HINT_KEYS:
                collector.add(value)
    texts = tuple(collector.texts)
    if not last_user and texts:
        last_user = texts[-1]
    chars = sum(map(len, texts))
    return RequestContent(texts, last_user, collector.images, collector.token_ids, messages, chars)

"""What an upstream would see of a request, flattened into texts for the classifiers.

Every string a backend receives is scanned, because any of them can carry private data:

- chat messages: text content and every part type (``text``, ``refusal``, ``image_url`` and
  ``input_image`` URLs, ``file`` parts' ``filename``, ``file_id`` and ``file_data``), plus every
  other field of a message (``name``, ``tool_calls`` with their arguments, ``function_call``,
  ``tool_call_id``, unknown ones);
- ``prompt`` and ``suffix`` of a completion, ``input`` of an embedding;
- ``tools`` / ``functions`` (names, descriptions, the whole ``parameters`` schema with its
  ``enum``, defaults and examples), ``response_format`` schemas, ``prediction``, ``user``,
  vLLM's ``documents``, every ``metadata`` key and value except the gateway's own namespaced hints,
  and every other top-level field, known or not (numbers included: they reach the upstream as
  digits). Structured values are serialised once with orjson, which is what the wire carries.
- ``data:`` URLs are decoded when their media type is textual; base64 ``file_data`` is decoded
  when it is UTF-8 text;
- token-id inputs (``input: [[...]]``, ``prompt: [...]``) are decoded by the router's
  :class:`~routing.types.TokenDecoder`, every plausible reading.

What cannot be read -- image, audio and video bytes, binary files, token ids that decode in no
vocabulary or with no decoder -- is counted by kind in ``RequestContent.unscannable``; the
policy treats it as each deployment's ``unscannable`` level says.

Scanning work is bounded: once ``max_bytes`` of text (UTF-8) are collected, the rest is not
decoded or kept, and ``RequestContent.over_limit`` says so.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from routing.types import Endpoint, TokenDecoder

_IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
_AUDIO_PART_TYPES = frozenset({"input_audio", "audio"})
_FILE_PART_TYPES = frozenset({"file", "input_file"})
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
HINT_KEYS = frozenset({"x-switchyard-sensitivity", "x-switchyard-task", "x-switchyard-project-tag"})
"""The gateway's own keys in ``metadata``: hints, stripped before forwarding, so not scanned."""
# handled on their own below; "model" is replaced by the deployment's model name upstream
_SPECIAL_KEYS = frozenset(
    {
        "messages",
        "prompt",
        "input",
        "suffix",
        "metadata",
        "model",
        "tools",
        "functions",
        "response_format",
        "documents",
    }
)
_MESSAGE_SPECIAL = frozenset({"role", "content"})
_TEXTUAL_APPLICATION = frozenset(
    {
        "json",
        "xml",
        "javascript",
        "ecmascript",
        "x-javascript",
        "yaml",
        "x-yaml",
        "toml",
        "sql",
        "graphql",
        "csv",
        "x-ndjson",
        "ndjson",
        "x-sh",
        "x-shellscript",
        "x-python",
        "x-www-form-urlencoded",
        "rtf",
        "x-tex",
        "markdown",
    }
)


_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


def percent_decoded(text: str, plus_is_space: bool = False) -> bytes:
    """``%XX`` escapes (and, in a query, ``+``) as the bytes they stand for (RFC 3986)."""
    if plus_is_space:
        text = text.replace("+", " ")
    return _PERCENT.sub(lambda m: bytes((int(m.group(1), 16),)), text.encode("utf-8", "surrogatepass"))


def textual_media_type(media: str) -> bool:
    """``text/*``, JSON, XML (and ``+json`` / ``+xml``, SVG included), YAML, CSV, scripts ..."""
    media = media.strip().lower()
    if not media or media.startswith("text/") or media.endswith(("+json", "+xml")):
        return True
    kind, _, subtype = media.partition("/")
    return (kind == "application" and subtype in _TEXTUAL_APPLICATION) or media == "message/rfc822"


def _media_kind(media: str) -> str:
    kind = media.strip().lower().partition("/")[0]
    return kind if kind in ("image", "audio", "video") else "file"


def _utf8_text(raw: bytes) -> str | None:
    """``raw`` as text when it is UTF-8 without NUL bytes (binary formats fail one or the other)."""
    if b"\x00" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_mapping(value: Any) -> bool:
    return isinstance(value, dict) or isinstance(value, Mapping)  # noqa: SIM101 - the dict check is the fast path


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class RequestContent:
    """The texts of one request and the few structural facts the router needs."""

    texts: tuple[str, ...]
    last_user_text: str  # what the task heuristic reads first
    images: int = 0
    token_ids: int = 0  # prompt tokens given as token-id arrays
    messages: int = 0
    chars: int = 0  # characters of the prompt texts (token-id readings excluded: their ids are counted)
    unscannable: dict[str, int] = field(default_factory=dict)  # kind -> parts that could not be read
    over_limit: bool = False  # more text than the scan budget; ``texts`` stops at the budget
    system_text: str = ""  # the system / developer messages: a task classifier reads them second

    def joined(self) -> str:
        # a blank line between parts keeps a pattern from matching across two messages
        return "\n\n".join(self.texts)


def _walk_strings(value: Any, out: list[str]) -> None:
    """Every key, string and number of a JSON-like value, iteratively (any depth, any type)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, (int, float)):
            out.append(repr(item))
        elif _is_mapping(item):
            for key, child in item.items():
                out.append(str(key))
                stack.append(child)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        else:
            out.append(str(item))


class _Collector:
    __slots__ = ("budget", "chars", "decoder", "images", "over_limit", "texts", "token_ids", "unscannable")

    def __init__(self, max_bytes: int, decoder: TokenDecoder | None) -> None:
        self.texts: list[str] = []
        self.images = 0
        self.token_ids = 0
        self.chars = 0
        self.budget = max_bytes
        self.over_limit = False
        self.unscannable: dict[str, int] = {}
        self.decoder = decoder

    def _keep(self, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if self.budget >= size:
            self.budget -= size
            self.texts.append(text)
            return
        if self.budget > 0:
            self.texts.append(text[: self.budget // (size // len(text))])  # about budget bytes
            self.budget = 0
        self.over_limit = True

    def add(self, value: Any) -> None:
        """A string as it is; anything else as what the wire carries (compact JSON, or digits)."""
        if isinstance(value, str):
            if value.startswith("data:"):  # the header is text; the content is read by its type
                self._keep(value[: value.find(",") + 1] or value[:64])
                self.data_url(value, "file")
            elif value:
                self.chars += len(value)
                self._keep(value)
        elif value is None or isinstance(value, bool):
            return
        else:
            self.add_structured(value)

    def add_structured(self, value: Any) -> None:
        if not value and value != 0:
            return
        try:
            text = orjson.dumps(value).decode()
        except (TypeError, orjson.JSONEncodeError):  # deeper than orjson goes, big ints, non-JSON types
            parts: list[str] = []
            _walk_strings(value, parts)
            text = "\n".join(parts)
        self.chars += len(text)
        self._keep(text)
        if '"data:' in text:  # a data: URL somewhere inside: read its content too
            parts = []
            _walk_strings(value, parts)
            for part in parts:
                if part.startswith("data:"):
                    self.data_url(part, "file")

    def unreadable(self, kind: str) -> None:
        self.unscannable[kind] = self.unscannable.get(kind, 0) + 1

    def decoded_text(self, text: str) -> None:
        self.chars += len(text)
        self._keep(text)

    def data_url(self, url: str, default_kind: str) -> None:
        """``data:[<media type>][;base64],<data>``: its content when textual, else unscannable."""
        comma = url.find(",")
        header = url[5:comma] if comma >= 0 else ""
        media = header.partition(";")[0]
        if comma < 0 or not textual_media_type(media):
            self.unreadable(_media_kind(media) if media else default_kind)
            return
        if self.budget <= 0:
            self.over_limit = True
            return
        payload = url[comma + 1 :]
        try:
            raw = binascii.a2b_base64(payload) if ";base64" in header.lower() else percent_decoded(payload)
        except (binascii.Error, ValueError):
            self.unreadable(default_kind)
            return
        self.decoded_text(raw.decode("utf-8", "replace"))

    def file_data(self, data: Any) -> None:
        """A file part's ``file_data``: a data URL, or bare base64 that is text or not."""
        if not isinstance(data, str) or not data:
            self.add(data)
            return
        if data.startswith("data:"):
            self.data_url(data, "file")
            return
        if self.budget <= 0:
            self.over_limit = True
            return
        try:
            text = _utf8_text(binascii.a2b_base64(data))
        except (binascii.Error, ValueError):
            text = None
        if text is None:
            self.unreadable("file")
        else:
            self.decoded_text(text)

    def image(self, image: Any) -> None:
        self.images += 1
        url = image.get("url") if _is_mapping(image) else image
        if isinstance(url, str):
            if url.startswith("data:"):
                self.data_url(url, "image")
            else:
                self.chars += len(url)
                # the URL itself is text the upstream sees (and fetches): read its query decoded
                if "%" in url or "+" in url:
                    url = percent_decoded(url, plus_is_space=True).decode("utf-8", "replace")
                self._keep(url)
                self.unreadable("image")
        else:
            self.unreadable("image")
        if _is_mapping(image) and len(image) > 1:
            self.add_structured({k: v for k, v in image.items() if k != "url"})

    def add_part(self, part: Any) -> None:
        if isinstance(part, str):
            self.add(part)
            return
        if not _is_mapping(part):
            self.add(part)
            return
        kind = part.get("type")
        handled: tuple[str, ...] = ("type",)
        if kind in _TEXT_PART_TYPES or (kind is None and "text" in part):
            self.add(part.get("text"))
            handled = ("type", "text")
        elif kind == "refusal":
            self.add(part.get("refusal"))
            handled = ("type", "refusal")
        elif kind in _IMAGE_PART_TYPES:
            self.image(part.get(kind) if kind in part else part.get("image_url"))
            handled = ("type", kind, "image_url")
        elif kind in _AUDIO_PART_TYPES:
            self.unreadable("audio")
            handled = ("type", kind)
        elif kind in _FILE_PART_TYPES:
            file = part.get(kind) if kind in part else part.get("file")
            if _is_mapping(file):
                self.file_data(file.get("file_data"))
                self.add_structured({k: v for k, v in file.items() if k != "file_data"})
            else:
                self.add(file)
            handled = ("type", kind, "file")
        if len(part) > len(handled) or any(key not in handled for key in part):
            self.add_structured({k: v for k, v in part.items() if k not in handled})

    def add_content(self, content: Any) -> None:
        if isinstance(content, str):
            self.add(content)
        elif isinstance(content, (list, tuple)):
            for part in content:
                self.add_part(part)
        elif content is not None:
            self.add_part(content)

    def token_array(self, ids: Sequence[Any]) -> None:
        """One token-id array: every reading the decoder finds, or unscannable."""
        self.token_ids += len(ids)
        if not ids:
            return
        if self.budget <= 0:
            self.over_limit = True
            return
        readings: Sequence[str] = ()
        if self.decoder is not None:
            try:
                readings = self.decoder(ids)
            except Exception:  # noqa: BLE001 - an id the tokenizer rejects is an unreadable input, not a crash
                readings = ()
        if not readings:
            self.unreadable("token_ids")
        for reading in readings:
            self._keep(reading)

    def add_prompt(self, prompt: Any) -> None:
        """``prompt`` / ``input``: a string, strings, token ids, or lists of token ids."""
        if isinstance(prompt, str):
            self.add(prompt)
        elif isinstance(prompt, (list, tuple)):
            ids = [item for item in prompt if isinstance(item, int) and not isinstance(item, bool)]
            if ids:
                self.token_array(ids)
            for item in prompt:
                if isinstance(item, str):
                    self.add(item)
                elif isinstance(item, (list, tuple)):
                    nested = [i for i in item if isinstance(i, int) and not isinstance(i, bool)]
                    self.token_array(nested)
                    if len(nested) != len(item):
                        self.add_structured([i for i in item if not (isinstance(i, int) and not isinstance(i, bool))])
                elif not isinstance(item, int) or isinstance(item, bool):
                    self.add(item)
        else:
            self.add(prompt)


def _chat(body: Mapping[str, Any], collector: _Collector) -> tuple[str, int, str]:
    messages = body.get("messages")
    if not isinstance(messages, (list, tuple)):
        if messages is not None:
            collector.add(messages)
        return "", 0, ""
    last_user = ""
    system: list[str] = []
    for message in messages:
        if not _is_mapping(message):
            collector.add(message)
            continue
        before = len(collector.texts)
        collector.add_content(message.get("content"))
        if message.get("role") == "user":
            last_user = "\n".join(collector.texts[before:])
        elif message.get("role") in ("system", "developer"):
            system.extend(collector.texts[before:])
        if len(message) == 2 and "role" in message and "content" in message:  # the usual message: nothing else
            if not isinstance(message["role"], str):
                collector.add(message["role"])
        else:  # name, tool_calls, function_call, tool_call_id, audio, unknown fields
            rest = {k: v for k, v in message.items() if k not in _MESSAGE_SPECIAL}
            if rest:
                collector.add_structured(rest)
    return last_user, len(messages), "\n".join(system)


def extract_content(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    decoder: TokenDecoder | None = None,
    max_bytes: int = 1 << 62,
) -> RequestContent:
    """Collect every text of ``body`` an upstream would see (see the module docstring).

    Texts come in an order that keeps a chat's earlier turns in the same place on every turn:
    tool definitions and schemas first, then the messages, then the per-request fields.
    """
    collector = _Collector(max_bytes, decoder)
    for key in ("tools", "functions", "response_format"):
        value = body.get(key)
        if value is not None:
            collector.add(value)
    last_user, messages, system = "", 0, ""
    if endpoint == "chat":
        last_user, messages, system = _chat(body, collector)
        consumed: tuple[str, ...] = ("messages",)
    else:
        first = len(collector.texts)
        collector.add_prompt(body.get("prompt" if endpoint == "completions" else "input"))
        last_user = "\n".join(collector.texts[first:])
        if endpoint == "completions":
            collector.add(body.get("suffix"))
        consumed = ("prompt", "suffix") if endpoint == "completions" else ("input",)
    for key in ("messages", "prompt", "input", "suffix"):  # another endpoint's fields, sent along all the same
        if key not in consumed and body.get(key) is not None:
            collector.add(body.get(key))
    documents = body.get("documents")  # vLLM: rendered into the prompt by the chat template
    if documents is not None:
        collector.add(documents)
    prompt_chars = collector.chars  # what follows reaches the upstream but is not prompt text
    metadata = body.get("metadata")
    if metadata is not None:
        if _is_mapping(metadata):
            own = {k: v for k, v in metadata.items() if k not in HINT_KEYS}
            if own:
                collector.add(own)
        else:
            collector.add(metadata)
    rest = {k: v for k, v in body.items() if k not in _SPECIAL_KEYS}
    if rest:
        collector.add(rest)
    texts = tuple(collector.texts)
    if not last_user and texts:
        last_user = texts[-1]
    return RequestContent(
        texts,
        last_user,
        collector.images,
        collector.token_ids,
        messages,
        prompt_chars,
        collector.unscannable,
        collector.over_limit,
        system,
    )

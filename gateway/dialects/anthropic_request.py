"""Anthropic Messages requests (``POST /v1/messages``) as OpenAI chat bodies.

What maps, field by field (Anthropic's API reference order):

- ``model``, ``max_tokens`` (required, as Anthropic requires them), ``stream``;
- ``system`` (a string, or text blocks) -> one leading ``system`` message;
- ``messages``: ``user`` / ``assistant`` turns whose ``content`` is a string or blocks: ``text``;
  ``image`` (base64 or URL source) -> an ``image_url`` part; ``document`` with a plain-text
  source -> text; ``tool_use`` (assistant) -> ``tool_calls``; ``tool_result`` (user) -> a
  ``tool`` message per result, before the rest of that turn; ``thinking`` blocks are dropped
  (no backend can take them back);
- ``stop_sequences`` -> ``stop``; ``temperature``, ``top_p``, ``top_k`` as they are;
- ``tools`` (``name``, ``description``, ``input_schema``) -> function tools; Anthropic's own
  server tools (web search, code execution, ...) are refused: no backend here runs them;
- ``tool_choice`` ``auto`` / ``any`` / ``tool`` / ``none`` -> ``auto`` / ``required`` / a named
  function / ``none``; ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``;
- ``metadata.user_id`` -> ``user``; ``x-switchyard-*`` metadata keys stay routing hints.

Everything wrong is a 400 naming the field, in Anthropic's error shape (the dialect's ``error``).
"""

from __future__ import annotations

from typing import Any

import orjson

from core.errors import InvalidRequest

HINT_PREFIX = "x-switchyard-"
_ROLES = ("user", "assistant")
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_PASSED = ("temperature", "top_p", "top_k")


def invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def to_openai_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The Messages request ``body`` as an OpenAI chat completions body."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "Field required (a route such as 'auto', or a deployment name)")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise invalid("max_tokens", "Field required")
    if type(max_tokens) is not int or max_tokens < 1:
        raise invalid("max_tokens", "must be a positive integer")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream", "must be a boolean")
    messages = _system(body.get("system"))
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise invalid("messages", "must be a non-empty array of {role, content} objects")
    for i, message in enumerate(raw_messages):
        messages.extend(_message(message, f"messages.{i}"))
    chat: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    for name in _PASSED:
        if body.get(name) is not None:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise invalid(name, "must be a number")
            chat[name] = value
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid("stop_sequences", "must be an array of strings")
        if stops:
            chat["stop"] = stops
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools", "must be an array")
        if tools:
            chat["tools"] = [_tool(tool, f"tools.{i}") for i, tool in enumerate(tools)]
    if body.get("tool_choice") is not None:
        chat.update(_tool_choice(body["tool_choice"]))
    chat.update(_metadata(body.get("metadata")))
    return chat


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise invalid("system", "must be a string or an array of text blocks")
    texts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise invalid(f"system.{i}", "must be a text block {type: 'text', text}")
        texts.append(block["text"])
    return [{"role": "system", "content": "\n\n".join(texts)}] if texts else []


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise invalid(where, "must be an object with role and content")
    role = message.get("role")
    if role not in _ROLES:
        raise invalid(f"{where}.role", "must be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "must be a string or an array of content blocks")
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    tool_messages: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(at, "must be a content block with a 'type'")
        kind = block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": _string(block, "text", at)})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "document":
            parts.append({"type": "text", "text": _document_text(block, at)})
        elif kind == "tool_use" and role == "assistant":
            tool_calls.append(_tool_call(block, at))
        elif kind == "tool_result" and role == "user":
            result, images = _tool_result(block, at)
            tool_messages.append(result)
            parts.extend(images)  # a tool message holds text only: its images follow as the user's
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise invalid(f"{at}.type", f"content block type '{kind}' is not supported in a {role} message")
    out: list[dict[str, Any]] = list(tool_messages)
    if role == "assistant":
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        assistant: dict[str, Any] = {"role": "assistant", "content": text or None}
        if tool_calls:
            assistant["tool_calls"] = tool_calls
        if text or tool_calls:
            out.append(assistant)
    elif parts:
        out.append({"role": "user", "content": parts})
    if not out:
        raise invalid(f"{where}.content", "must not be empty")
    return out


def _string(block: dict[str, Any], key: str, at: str) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise invalid(f"{at}.{key}", "must be a string")
    return value


def _image(block: dict[str, Any], at: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{at}.source", "must be an object")
    if source.get("type") == "base64":
        media = _string(source, "media_type", f"{at}.source")
        data = _string(source, "data", f"{at}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": _string(source, "url", f"{at}.source")}}
    raise invalid(f"{at}.source.type", "must be 'base64' or 'url' (file ids need Anthropic's Files API)")


def _document_text(block: dict[str, Any], at: str) -> str:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text":
        return _string(source, "data", f"{at}.source")
    if isinstance(source, dict) and source.get("type") == "content" and isinstance(source.get("content"), list):
        return "".join(b.get("text", "") for b in source["content"] if isinstance(b, dict))
    raise invalid(f"{at}.source.type", "only plain-text documents are supported")


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id = _string(block, "id", at)
    name = _string(block, "name", at)
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise invalid(f"{at}.input", "must be an object")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}}


def _tool_result(block: dict[str, Any], at: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    call_id = _string(block, "tool_use_id", at)
    content = block.get("content", "")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, part in enumerate(content):
            where = f"{at}.content.{k}"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(_string(part, "text", where))
            elif kind == "image":
                images.append(_image(part, where))
            elif kind == "document":
                texts.append(_document_text(part, where))
            else:
                raise invalid(where, "a tool_result holds text, image or document blocks")
    else:
        raise invalid(f"{at}.content", "must be a string or an array of blocks")
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _tool(tool: Any, at: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise invalid(at, "must be an object")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise invalid(f"{at}.type", f"server tool '{kind}' is not supported: declare a client tool with input_schema")
    name = _string(tool, "name", at)
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise invalid(f"{at}.input_schema", "Field required (a JSON schema object)")
    function: dict[str, Any] = {"name": name, "parameters": schema}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise invalid("tool_choice", "must be an object with a 'type'")
    kind = choice["type"]
    out: dict[str, Any] = {}
    if kind in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[kind]
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}
    else:
        raise invalid("tool_choice.type", "must be one of auto, any, tool, none")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def _metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise invalid("metadata", "must be an object")
    out: dict[str, Any] = {}
    user = metadata.get("user_id")
    if user is not None:
        if not isinstance(user, str):
            raise invalid("metadata.user_id", "must be a string")
        out["user"] = user
    hints = {k: v for k, v in metadata.items() if isinstance(k, str) and k.startswith(HINT_PREFIX)}
    if hints:
        out["metadata"] = hints
    return out

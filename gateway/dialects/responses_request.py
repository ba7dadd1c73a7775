"""OpenAI Responses requests (``POST /v1/responses``) as OpenAI chat bodies.

What maps:

- ``instructions`` -> a leading ``system`` message;
- ``input``: a string (one user message) or items: messages (``{role, content}``, with or without
  ``type: "message"``; content a string or ``input_text`` / ``output_text`` / ``input_image``
  parts), ``function_call`` (consecutive ones become one assistant turn's ``tool_calls``) and
  ``function_call_output`` (a ``tool`` message); ``reasoning`` items are dropped;
- ``max_output_tokens`` -> ``max_tokens``; ``temperature``, ``top_p``, ``user``, ``metadata``,
  ``parallel_tool_calls`` as they are; ``reasoning.effort`` -> ``reasoning_effort``;
- ``tools``: function tools (``{type: "function", name, parameters, ...}``) -> chat tools; the
  hosted tools (web search, file search, computer use, ...) are refused, none runs here;
- ``tool_choice``: ``auto`` / ``none`` / ``required`` / ``{type: "function", name}``;
- ``text.format``: ``json_schema`` / ``json_object`` -> ``response_format``.

The gateway keeps no conversation state: ``previous_response_id``, ``conversation`` and
``store: true`` are refused with a 400 naming the parameter (send the whole input each time).
"""

from __future__ import annotations

from typing import Any

from core.errors import InvalidRequest

_PASSED = ("temperature", "top_p", "user", "metadata", "parallel_tool_calls")
_STATEFUL = ("previous_response_id", "conversation")
_ROLES = frozenset({"user", "assistant", "system", "developer"})


def invalid(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def to_openai_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The Responses request ``body`` as an OpenAI chat completions body."""
    for name in _STATEFUL:
        if body.get(name) is not None:
            raise invalid(
                name,
                f"'{name}' is not supported: this gateway stores no responses; send the whole conversation in 'input' instead.",
                code="unsupported_parameter",
            )
    if body.get("store") is True:
        raise invalid(
            "store",
            "'store: true' is not supported: this gateway stores no responses; omit it or send 'store: false'.",
            code="unsupported_parameter",
        )
    if body.get("background") is True:
        raise invalid(
            "background", "'background: true' is not supported: this gateway stores no responses.", code="unsupported_parameter"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "you must provide a model parameter", code="missing_required_parameter")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid("instructions", "'instructions' must be a string", code="invalid_type")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    messages += _input(body.get("input"))
    chat: dict[str, Any] = {"model": model, "messages": messages}
    if body.get("stream") is not None:
        if not isinstance(body["stream"], bool):
            raise invalid("stream", "'stream' must be a boolean", code="invalid_type")
        if body["stream"]:
            chat["stream"] = True
            chat["stream_options"] = {"include_usage": True}  # response.completed carries the usage
    limit = body.get("max_output_tokens")
    if limit is not None:
        if type(limit) is not int or limit < 1:
            raise invalid("max_output_tokens", "'max_output_tokens' must be a positive integer")
        chat["max_tokens"] = limit
    for name in _PASSED:
        if body.get(name) is not None:
            chat[name] = body[name]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools", "'tools' must be an array", code="invalid_type")
        if tools:
            chat["tools"] = [_tool(tool, i) for i, tool in enumerate(tools)]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _text_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def _input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        if not value:
            raise invalid("input", "'input' must not be empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise invalid("input", "'input' must be a string or a non-empty array of items", code="invalid_type")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(at, f"{at} must be an object", code="invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            messages.append(_message(item, at))
        elif kind == "function_call":
            call = {
                "id": _string(item, "call_id", at),
                "type": "function",
                "function": {"name": _string(item, "name", at), "arguments": _string(item, "arguments", at)},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
            if not isinstance(output, str):
                raise invalid(f"{at}.output", f"{at}.output must be a string", code="invalid_type")
            messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", at), "content": output})
        elif kind == "reasoning":
            continue
        else:
            raise invalid(f"{at}.type", f"input item type {kind!r} is not supported here")
    if not messages:
        raise invalid("input", "'input' holds no message")
    return messages


def _message(item: dict[str, Any], at: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(f"{at}.role", f"{at}.role must be one of user, assistant, system, developer")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise invalid(f"{at}.content", f"{at}.content must be a string or an array of parts", code="invalid_type")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{at}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": _string(part, "text", where)})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _string(part, "refusal", where)})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise invalid(f"{where}.image_url", f"{where}.image_url must be a URL or a data URL (file ids are not supported)")
            image: dict[str, Any] = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise invalid(f"{where}.type", f"content part type {kind!r} is not supported here")
    if role == "assistant":  # an assistant turn's content is text only
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def _string(item: dict[str, Any], key: str, at: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise invalid(f"{at}.{key}", f"{at}.{key} must be a string", code="invalid_type")
    return value


def _tool(tool: Any, i: int) -> dict[str, Any]:
    at = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise invalid(at, f"{at} must be an object", code="invalid_type")
    if tool.get("type") != "function":
        raise invalid(f"{at}.type", f"tool type {tool.get('type')!r} is not supported here: only function tools")
    function: dict[str, Any] = {"name": _string(tool, "name", at)}
    if tool.get("parameters") is not None:
        if not isinstance(tool["parameters"], dict):
            raise invalid(f"{at}.parameters", f"{at}.parameters must be a JSON schema object", code="invalid_type")
        function["parameters"] = tool["parameters"]
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise invalid("tool_choice", "'tool_choice' must be auto, none, required or {type: 'function', name}")


def _text_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid("text", "'text' must be an object", code="invalid_type")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        raise invalid("text.format", "'text.format' must be an object with a 'type'", code="invalid_type")
    kind = fmt["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise invalid("text.format.schema", "'text.format.schema' must be a JSON schema object")
        spec: dict[str, Any] = {"name": fmt.get("name") if isinstance(fmt.get("name"), str) else "response", "schema": schema}
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        if isinstance(fmt.get("description"), str):
            spec["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": spec}
    raise invalid("text.format.type", "'text.format.type' must be text, json_object or json_schema")

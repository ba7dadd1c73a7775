"""Tool calling on the embedded model: which tool the model must call, the grammar that makes
its output well-formed, and how that output becomes an OpenAI tool call.

Small GGUF chat models have no tool-call format of their own, so a call is made only when the
request forces one: a named function or custom tool, ``required``, an ``allowed_tools`` choice
in ``required`` mode, or the legacy ``function_call: {"name"}``. The output is then constrained
by a llama.cpp grammar (the function's JSON schema; one of several functions as
``{"name", "arguments"}``; a custom tool's regex) and parsed here. With ``auto`` the chat template
sees the tools and the model answers in text.

A call is reported only once its output is complete: a call cut short by ``max_tokens`` ends
with ``finish_reason: "length"`` and no call, so a client never receives arguments that are not
valid JSON. What cannot be honoured (a Lark grammar, custom tools in a stream, ``required``
over several custom tools) is refused with a 400 naming the parameter.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import InvalidRequest

Kind = Literal["function", "one_of", "custom"]


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """A forced tool call: what the model must produce and how it is read back."""

    kind: Kind  # one named function | one of several functions | one named custom tool
    names: tuple[str, ...]
    grammar: str | None  # GBNF; None: free text (a custom tool without a format)
    legacy: bool = False  # answer as the deprecated ``function_call``

    def call_from(self, text: str) -> dict[str, Any] | None:
        """The OpenAI tool call ``text`` stands for, or None when it is not complete."""
        if self.kind == "custom":
            return {"id": _call_id(), "type": "custom", "custom": {"name": self.names[0], "input": text}}
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        if self.kind == "function":
            name, arguments = self.names[0], text.strip()
        else:
            if not isinstance(parsed, dict) or parsed.get("name") not in self.names:
                return None
            name, arguments = parsed["name"], json.dumps(parsed.get("arguments", {}), separators=(",", ":"))
        return {"id": _call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}

    @property
    def finish_reason(self) -> str:
        return "function_call" if self.legacy else "tool_calls"


@dataclass(frozen=True, slots=True)
class ToolSetup:
    """What the chat template sees, and the forced call (None: the model may answer in text)."""

    template: dict[str, Any]
    plan: ToolPlan | None


def plan_tools(body: dict[str, Any], *, stream: bool) -> ToolSetup:
    """Read ``tools`` / ``tool_choice`` (or the legacy ``functions`` / ``function_call``)."""
    tools, choice, legacy = body.get("tools"), body.get("tool_choice"), False
    if tools is None and body.get("functions") is not None:
        functions = body["functions"]
        if not isinstance(functions, list):
            raise InvalidRequest("functions must be a list", param="functions")
        tools = [{"type": "function", "function": f} for f in functions]
        choice, legacy = _legacy_choice(body.get("function_call")), True
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice needs tools", param="tool_choice")
        return ToolSetup({}, None)
    by_name = _tools_by_name(tools)
    if choice is None or choice == "auto":
        return ToolSetup({"tools": tools, "tool_choice": "auto"}, None)
    if choice == "none":
        return ToolSetup({}, None)
    param = "function_call" if legacy else "tool_choice"
    candidates = _forced_candidates(choice, by_name, param)
    if candidates is None:  # allowed_tools in auto mode: the template sees only the allowed ones
        allowed = _allowed_names(choice, by_name)
        return ToolSetup({"tools": [by_name[n][1] for n in allowed], "tool_choice": "auto"}, None)
    plan = _plan_for(candidates, by_name, param)
    if plan.kind == "custom" and stream:
        raise InvalidRequest("custom tool calls cannot be streamed by this deployment; send stream: false", param="tools")
    template_tools = [by_name[n][1] for n in candidates]
    return ToolSetup({"tools": template_tools, "tool_choice": "auto"}, ToolPlan(plan.kind, plan.names, plan.grammar, legacy))


def _legacy_choice(function_call: Any) -> Any:
    if isinstance(function_call, dict) and "name" in function_call:
        return {"type": "function", "function": {"name": function_call["name"]}}
    return function_call


def _tools_by_name(tools: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list", param="tools")
    by_name: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        spec = tool.get(kind) if kind in ("function", "custom") else None
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                "each tool must be {type: function, function: {name, ...}} or {type: custom, custom: {name, ...}}",
                param=f"tools[{i}]",
            )
        by_name[name] = (i, tool)
    return by_name


def _forced_candidates(choice: Any, by_name: dict[str, tuple[int, dict[str, Any]]], param: str) -> list[str] | None:
    """The tools one of which must be called; None when the choice forces nothing."""
    if choice == "required":
        return list(by_name)
    if not isinstance(choice, dict):
        raise InvalidRequest("tool_choice must be none, auto, required or an object naming a tool", param=param)
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name = (choice.get(kind) or {}).get("name") if isinstance(choice.get(kind), dict) else None
        if name not in by_name or by_name[name][1].get("type") != kind:
            raise InvalidRequest(f"{param} names the {kind} tool '{name}', which is not in tools", param=param)
        return [name]
    if kind == "allowed_tools":
        spec = choice.get("allowed_tools")
        mode = spec.get("mode") if isinstance(spec, dict) else None
        if mode not in ("auto", "required"):
            raise InvalidRequest("tool_choice.allowed_tools.mode must be auto or required", param="tool_choice")
        allowed = _allowed_names(choice, by_name)
        return allowed if mode == "required" else None
    raise InvalidRequest(f"tool_choice.type must be function, custom or allowed_tools, not '{kind}'", param=param)


def _allowed_names(choice: dict[str, Any], by_name: dict[str, tuple[int, dict[str, Any]]]) -> list[str]:
    listed = (choice.get("allowed_tools") or {}).get("tools")
    if not isinstance(listed, list) or not listed:
        raise InvalidRequest("tool_choice.allowed_tools.tools must be a non-empty list", param="tool_choice")
    names = []
    for i, ref in enumerate(listed):
        kind = ref.get("type") if isinstance(ref, dict) else None
        name = (ref.get(kind) or {}).get("name") if kind in ("function", "custom") and isinstance(ref.get(kind), dict) else None
        if name not in by_name:
            raise InvalidRequest(f"tool_choice.allowed_tools.tools[{i}] names a tool that is not in tools", param="tool_choice")
        names.append(name)
    return names


def _plan_for(names: list[str], by_name: dict[str, tuple[int, dict[str, Any]]], param: str) -> ToolPlan:
    if len(names) == 1:
        index, tool = by_name[names[0]]
        if tool["type"] == "custom":
            return ToolPlan("custom", (names[0],), _custom_grammar(tool["custom"], index))
        return ToolPlan("function", (names[0],), _json_grammar(_parameters(tool, index), index))
    if any(by_name[n][1]["type"] == "custom" for n in names):
        raise InvalidRequest(
            f"{param} requires one of several tools, some of them custom; this deployment can force one custom"
            " tool only: name it",
            param=param,
        )
    alternatives = [
        {
            "type": "object",
            "properties": {"name": {"const": n}, "arguments": _parameters(by_name[n][1], by_name[n][0])},
            "required": ["name", "arguments"],
        }
        for n in names
    ]
    return ToolPlan("one_of", tuple(names), _json_grammar({"oneOf": alternatives}, None))


def _parameters(tool: dict[str, Any], index: int) -> dict[str, Any]:
    schema = tool["function"].get("parameters")
    if schema is None:
        return {"type": "object"}
    if not isinstance(schema, dict):
        raise InvalidRequest("function.parameters must be a JSON schema object", param=f"tools[{index}].function.parameters")
    return schema


def _json_grammar(schema: dict[str, Any], index: int | None) -> str:
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception:  # noqa: BLE001 - a schema the converter cannot express: any JSON object still parses
        return JSON_GBNF


def _custom_grammar(custom: dict[str, Any], index: int) -> str | None:
    fmt = custom.get("format")
    param = f"tools[{index}].custom.format"
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    grammar = fmt.get("grammar") if isinstance(fmt, dict) and fmt.get("type") == "grammar" else None
    if not isinstance(grammar, dict) or not isinstance(grammar.get("definition"), str):
        raise InvalidRequest("custom.format must be {type: text} or {type: grammar, grammar: {syntax, definition}}", param=param)
    if grammar.get("syntax") != "regex":
        raise InvalidRequest(
            f"custom tool grammars with syntax '{grammar.get('syntax')}' are not supported by this deployment; use regex",
            param=param,
        )
    from llama_cpp.llama_grammar import SchemaConverter

    pattern = grammar["definition"]
    anchored = ("" if pattern.startswith("^") else "^") + pattern + ("" if pattern.endswith("$") else "$")
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=True)  # type: ignore[no-untyped-call]
    try:
        converter.visit({"type": "string", "pattern": anchored}, "")  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - the converter asserts on what it cannot translate
        raise InvalidRequest(
            f"this deployment cannot use the regex of custom tool '{custom.get('name')}': {exc}", param=param
        ) from None
    return str(converter.format_grammar())  # type: ignore[no-untyped-call]


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"

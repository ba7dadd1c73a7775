"""OpenAI's published response schemas (vendored, see openai_schemas.json) as validators, plus the
one named list of places where OpenAI's own API answers differently from its spec.

The vendored file is an OpenAPI 3.1 extract, i.e. JSON Schema 2020-12. Its schemas are copied
verbatim; the deviations below are applied on top of them, each one narrow (one property of one
schema may also be one more JSON type) and each with the reason OpenAI's API does it.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

VENDORED = Path(__file__).resolve().parent / "openai_schemas.json"


@dataclass(frozen=True, slots=True)
class Deviation:
    """``schema``'s property at ``path`` (``[]`` = array items) may also be of JSON type ``allows``."""

    schema: str
    path: tuple[str, ...]
    allows: str
    why: str


NULLABLE_3_0 = "the spec marks it `nullable: true`, an OpenAPI 3.0 keyword that 3.1 (JSON Schema) ignores"

SPEC_DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "CreateChatCompletionStreamResponse",
        ("choices", "[]", "finish_reason"),
        "null",
        f"OpenAI sends finish_reason null on every chunk but the last; {NULLABLE_3_0}",
    ),
    Deviation(
        "CreateChatCompletionStreamResponse",
        ("choices", "[]", "logprobs"),
        "null",
        f"OpenAI sends logprobs null on chunks when logprobs were not asked for; {NULLABLE_3_0}",
    ),
    Deviation(
        "CreateChatCompletionStreamResponse",
        ("choices", "[]", "logprobs", "refusal"),
        "null",
        f"OpenAI sends logprobs {{content: [...], refusal: null}} on chunks of an answer; {NULLABLE_3_0}",
    ),
    Deviation(
        "CreateChatCompletionStreamResponse",
        ("usage",),
        "null",
        f"with stream_options.include_usage OpenAI sends usage null on every chunk but the last; {NULLABLE_3_0}",
    ),
    Deviation(
        "CreateCompletionResponse",
        ("choices", "[]", "finish_reason"),
        "null",
        "the completion object is also every completions stream chunk, and OpenAI sends finish_reason null on all"
        " chunks but the last; the spec does not say so at all",
    ),
    Deviation(
        "CreateCompletionResponse",
        ("choices", "[]", "logprobs", "token_logprobs", "[]"),
        "null",
        "with echo and logprobs OpenAI sends null for the first prompt token (nothing precedes it to score it by)",
    ),
    Deviation(
        "CreateCompletionResponse",
        ("choices", "[]", "logprobs", "top_logprobs", "[]"),
        "null",
        "with echo and logprobs OpenAI sends null top_logprobs for the first prompt token, as for its logprob",
    ),
    Deviation(
        "Embedding",
        ("embedding",),
        "string",
        "with encoding_format: base64 OpenAI sends the vector as a base64 string of float32s; the spec only"
        " describes the list of floats",
    ),
)
"""Where OpenAI's own API deviates from its published spec, and Switchyard follows the API."""

_SAMPLES = {"null": None, "string": "AAAA", "number": 1.5, "integer": 1, "boolean": True, "array": [], "object": {}}


def vendored() -> dict[str, Any]:
    return _load()


@functools.cache
def _load() -> dict[str, Any]:
    return json.loads(VENDORED.read_text(encoding="utf-8"))


def _target(schemas: dict[str, Any], deviation: Deviation) -> tuple[dict[str, Any], str]:
    """The parent node holding the deviation's property, and the key under it."""
    node = schemas[deviation.schema]
    parent, key = None, ""
    for step in deviation.path:
        if "properties" not in node and "items" not in node and "anyOf" in node:
            node = next(branch for branch in node["anyOf"] if "properties" in branch or "items" in branch)
        if step == "[]":
            parent, key = node, "items"
        else:
            parent, key = node["properties"], step
        node = parent[key]
    assert parent is not None
    return parent, key


def sample_of(deviation: Deviation) -> Any:
    return _SAMPLES[deviation.allows]


def raw_property_schema(deviation: Deviation) -> dict[str, Any]:
    """The property's schema as the spec has it (refs resolvable against the vendored file)."""
    parent, key = _target(_load()["components"]["schemas"], deviation)
    return {**parent[key], "components": _load()["components"]}


@functools.cache
def _patched_components() -> dict[str, Any]:
    components = copy.deepcopy(_load()["components"])
    for deviation in SPEC_DEVIATIONS:
        parent, key = _target(components["schemas"], deviation)
        parent[key] = {"anyOf": [parent[key], {"type": deviation.allows}]}
    return components


@functools.cache
def validator(name: str, *, with_deviations: bool = True) -> jsonschema.Draft202012Validator:
    """A validator for component schema ``name``, optionally without the allow-list."""
    components = _patched_components() if with_deviations else _load()["components"]
    if name not in components["schemas"]:
        raise KeyError(f"'{name}' is not vendored; add it to RESPONSE_ROOTS in scripts/vendor_openai_schemas.py")
    schema = {"$ref": f"#/components/schemas/{name}", "components": components}
    return jsonschema.Draft202012Validator(schema)


def problems(name: str, instance: Any) -> list[str]:
    """Every way ``instance`` breaks schema ``name`` (after the allow-list), readable."""
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{name} at /{'/'.join(str(p) for p in e.absolute_path)}: {_short(e)}" for e in errors]


def _short(error: jsonschema.ValidationError) -> str:
    deepest = error
    while deepest.context:
        deepest = min(deepest.context, key=lambda e: len(list(e.absolute_path)) * -1)
    text = deepest.message
    return text if len(text) <= 300 else text[:300] + "..."


def assert_conforms(name: str, instance: Any) -> None:
    found = problems(name, instance)
    assert not found, "\n".join(found) + "\n\ninstance: " + json.dumps(instance)[:2000]

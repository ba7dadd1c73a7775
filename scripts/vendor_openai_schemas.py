"""Extract the OpenAI component schemas Switchyard emits (and the chat request it accepts) from
OpenAI's published OpenAPI spec, with their ``$ref`` closure, into one vendored JSON file.

The source is the ``openai/openai-openapi`` repository (MIT licence). Refresh with::

    git clone https://github.com/openai/openai-openapi
    python scripts/vendor_openai_schemas.py --spec openai-openapi/openapi.json \\
        --commit "$(git -C openai-openapi rev-parse HEAD)"

The output keeps the spec's own layout (``components.schemas``), so every ``$ref`` in it
(``#/components/schemas/X``) resolves unchanged, and records where it came from: repository,
commit, file, spec version and licence. The schemas themselves are copied verbatim.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPOSITORY = "https://github.com/openai/openai-openapi"
LICENSE = "MIT"
OUT = Path(__file__).resolve().parent.parent / "tests" / "conformance" / "openai_schemas.json"

RESPONSE_ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "Model",
    "ListModelsResponse",
    "ErrorResponse",
)
"""Every object the gateway answers with."""

REQUEST_ROOTS = ("CreateChatCompletionRequest",)
"""Read by docs/parameters.md: one row per request property."""

_PREFIX = "#/components/schemas/"


def load_spec(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    """``roots`` and every schema they reach through ``$ref``, by name."""
    found: dict[str, Any] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        if name not in schemas:
            raise SystemExit(f"the spec has no component schema '{name}'")
        found[name] = schemas[name]
        pending.extend(_refs(schemas[name]))
    return dict(sorted(found.items()))


def _refs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith(_PREFIX):
                raise SystemExit(f"unsupported $ref '{ref}' (only {_PREFIX}...)")
            out.append(ref.removeprefix(_PREFIX))
        for value in node.values():
            out += _refs(value)
    elif isinstance(node, list):
        for value in node:
            out += _refs(value)
    return out


def extract(spec: dict[str, Any], *, commit: str, source_path: str) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    return {
        "source": {
            "repository": REPOSITORY,
            "commit": commit,
            "path": source_path,
            "openapi": spec.get("openapi"),
            "spec_version": (spec.get("info") or {}).get("version"),
            "license": LICENSE,
            "extracted_by": "scripts/vendor_openai_schemas.py",
        },
        "response_roots": list(RESPONSE_ROOTS),
        "request_roots": list(REQUEST_ROOTS),
        "components": {"schemas": closure(schemas, RESPONSE_ROOTS + REQUEST_ROOTS)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, required=True, help="openapi.json (or .yaml) of openai/openai-openapi")
    parser.add_argument("--commit", required=True, help="the commit of openai/openai-openapi the file was taken from")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if len(args.commit) != 40 or any(c not in "0123456789abcdef" for c in args.commit.lower()):
        parser.error("--commit must be a full 40-character commit id")
    vendored = extract(load_spec(args.spec), commit=args.commit.lower(), source_path=args.spec.name)
    args.out.write_text(json.dumps(vendored, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    count = len(vendored["components"]["schemas"])
    print(f"wrote {count} schemas from {REPOSITORY}@{args.commit[:12]} to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

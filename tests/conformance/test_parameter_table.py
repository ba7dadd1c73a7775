"""docs/parameters.md is what the adapters' PARAMETERS declarations and the vendored spec say."""

from __future__ import annotations

import json

from scripts.parameter_table import DOC, POLICIES, SPEC, render, request_properties
from tests.conformance.spec import vendored


def test_parameter_table_is_up_to_date() -> None:
    expected = render(json.loads(SPEC.read_text(encoding="utf-8")))
    assert DOC.read_text(encoding="utf-8") == expected, "docs/parameters.md is stale: run python scripts/parameter_table.py"


def test_table_has_one_row_per_spec_property_and_one_for_the_rest() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(("| `", "| any other field"))]
    assert len(rows) == len(request_properties(vendored())) + 1
    for name in request_properties(vendored()):
        assert any(row.startswith(f"| `{name}`") for row in rows), name
    assert [p.family for p in POLICIES] == ["llamacpp", "openai_compatible", "litellm"]

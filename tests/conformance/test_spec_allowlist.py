"""The vendored spec and its allow-list: each deviation names a place the spec really rejects."""

from __future__ import annotations

import jsonschema
import pytest

from tests.conformance.spec import (
    SPEC_DEVIATIONS,
    raw_property_schema,
    sample_of,
    validator,
    vendored,
)


@pytest.mark.parametrize("deviation", SPEC_DEVIATIONS, ids=lambda d: f"{d.schema}.{'.'.join(d.path)}")
def test_each_allowed_deviation_is_one_the_spec_really_rejects(deviation) -> None:
    raw = jsonschema.Draft202012Validator(raw_property_schema(deviation))
    assert not raw.is_valid(sample_of(deviation)), f"the spec now allows {deviation.allows} here: drop the deviation"
    assert deviation.why


def test_vendored_schemas_record_their_source_and_licence() -> None:
    source = vendored()["source"]
    assert source["repository"] == "https://github.com/openai/openai-openapi"
    assert len(source["commit"]) == 40 and source["license"] == "MIT"
    for name in vendored()["response_roots"]:
        validator(name)  # every root resolves with its $ref closure

"""Admin detectors, ``disable`` and ``levels`` overrides, and the config checks on them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from routing.detectors import BUILTIN_LEVELS, compile_detectors
from routing.spec import SensitivityPolicy
from routing.types import Sensitivity


def hits(policy: SensitivityPolicy, text: str) -> dict[str, tuple[int, Sensitivity]]:
    return {h.entity: (h.count, h.level) for h in compile_detectors(policy).scan(text)}


def test_default_levels_restrict_credentials_and_financial_data_and_keep_contacts_confidential() -> None:
    restricted = {
        "credit_card",
        "iban",
        "us_ssn",
        "openai_api_key",
        "anthropic_api_key",
        "aws_access_key",
        "github_token",
        "slack_token",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "huggingface_token",
        "google_api_key",
        "jwt",
        "private_key",
        "url_password",
        "secret_assignment",
    }
    assert {n for n, lvl in BUILTIN_LEVELS.items() if lvl == Sensitivity.RESTRICTED} == restricted
    assert {n for n, lvl in BUILTIN_LEVELS.items() if lvl == Sensitivity.CONFIDENTIAL} == {"email", "phone", "ip_address"}


def test_keyword_detector_matches_whole_words_in_any_case() -> None:
    policy = SensitivityPolicy(detectors=[{"name": "codenames", "level": "internal", "keywords": ["Project Falcon", "bluebird"]}])
    assert hits(policy, "status of project falcon and BLUEBIRD, not bluebirds or falconry") == {
        "codenames": (2, Sensitivity.INTERNAL)
    }


def test_case_sensitive_keyword_detector() -> None:
    policy = SensitivityPolicy(
        detectors=[{"name": "ticker", "level": "confidential", "keywords": ["ACME"], "case_sensitive": True}]
    )
    assert hits(policy, "acme and Acme are fine, ACME is not") == {"ticker": (1, Sensitivity.CONFIDENTIAL)}


def test_regex_detector_with_its_level() -> None:
    policy = SensitivityPolicy(detectors=[{"name": "employee-id", "level": "restricted", "regex": r"\bEMP-\d{6}\b"}])
    assert hits(policy, "emp-123456 and EMP-654321 but not EMP-12") == {"employee-id": (2, Sensitivity.RESTRICTED)}


def test_disable_switches_a_builtin_off() -> None:
    policy = SensitivityPolicy(disable=["email"])
    assert hits(policy, "bob@example.com from 10.0.0.1") == {"ip_address": (1, Sensitivity.CONFIDENTIAL)}


def test_levels_override_a_builtin_level() -> None:
    policy = SensitivityPolicy(levels={"email": "internal", "ip_address": "restricted"})
    assert hits(policy, "bob@example.com from 10.0.0.1") == {
        "email": (1, Sensitivity.INTERNAL),
        "ip_address": (1, Sensitivity.RESTRICTED),
    }
    assert policy.level_of("email") == Sensitivity.INTERNAL
    assert policy.level_of("phone") == Sensitivity.CONFIDENTIAL


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"disable": ["emial"]}, "disable[0]: unknown built-in detector 'emial'"),
        ({"levels": {"cards": "restricted"}}, "levels.cards: unknown built-in detector"),
        ({"detectors": [{"name": "email", "level": "internal", "keywords": ["x"]}]}, "'email' is already a detector name"),
        ({"detectors": [{"name": "x", "level": "internal"}]}, "exactly one of 'regex' or 'keywords'"),
        ({"detectors": [{"name": "x", "level": "internal", "regex": "("}]}, "regex does not compile"),
        ({"levels": {"email": "secret"}}, "levels.email"),
    ],
)
def test_invalid_sensitivity_policies_are_refused_with_the_key_path(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        SensitivityPolicy.model_validate(fields)


def test_non_ascii_keywords_and_empty_keyword_lists() -> None:
    policy = SensitivityPolicy(
        detectors=[
            {"name": "cities", "level": "internal", "keywords": ["Zürich"]},
            {"name": "nothing", "level": "restricted", "keywords": []},
        ]
    )
    assert hits(policy, "offices in ZÜRICH and zürich") == {"cities": (2, Sensitivity.INTERNAL)}

"""docs/providers.md has no row without a test: every table row names at least one test, every
named test exists (file, function and parameter), and every backend the matrix test verifies has a
row. The commented examples in config.example.yaml are valid config, off without their keys."""

from __future__ import annotations

import re

import yaml

from gateway.config import parse_config
from tests.helpers import ROOT
from tests.providers.test_backend_matrix import AUTH_BACKENDS, BACKENDS, CONTEXT_BACKENDS, RATE_BACKENDS, TOOLLESS

DOC = ROOT / "docs" / "providers.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[([\w-]+)\])?`")
PARAMETRIZED = {  # the matrix test's parameter lists, by test
    "test_context_length_error": CONTEXT_BACKENDS,
    "test_rate_limit_error": RATE_BACKENDS,
    "test_backend_refusing_the_key": AUTH_BACKENDS,
    "test_tools_refused_where_the_api_has_none": TOOLLESS,
}


def _rows() -> list[str]:
    rows = []
    for line in DOC.read_text().splitlines():
        if (
            line.startswith("|")
            and not line.startswith("|---")
            and not line.startswith("| backend")
            and not line.startswith("| format")
        ):
            rows.append(line)
    return rows


def test_every_row_names_a_test_that_exists() -> None:
    rows = _rows()
    assert len(rows) >= 20
    for row in rows:
        refs = REF.findall(row)
        assert refs, f"row without a test: {row[:80]}"
        for path, name, param in refs:
            source = ROOT / path
            assert source.is_file(), f"{path} does not exist ({row[:40]})"
            assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.M), f"{path}::{name} does not exist"
            if param:
                allowed = PARAMETRIZED.get(name, BACKENDS) if path.endswith("test_backend_matrix.py") else ()
                assert param in allowed or f'"{param}"' in source.read_text(), f"{path}::{name}[{param}] is not collected"


def test_every_verified_backend_has_a_row() -> None:
    text = DOC.read_text()
    for backend in BACKENDS:
        assert f"[{backend}]`" in text, f"{backend} is verified by the matrix test but has no row in docs/providers.md"


def test_commented_examples_in_the_example_config_are_valid() -> None:
    text = (ROOT / "config.example.yaml").read_text()
    lines = []
    for line in text.splitlines():
        if line.startswith("  # - name:") or (line.startswith("  #   ") and lines and lines[-1].startswith("  ")):
            lines.append("  " + line[4:])
        else:
            lines.append(line)
    data = yaml.safe_load("\n".join(lines))
    names = [d["name"] for d in data["deployments"]]
    assert {"gemini-flash", "bedrock-claude", "nvidia-llama", "ollama-llama3", "tgi-mistral", "llama-base"} <= set(names)
    config = parse_config(yaml.safe_dump(data), source="config.example.yaml (uncommented)")
    hosted = [d for d in config.deployments if d.locality == "hosted"]
    assert len(hosted) >= 13
    for deployment in hosted:  # a hosted API whose key is unset stays off
        assert deployment.is_enabled == bool(deployment.api_key and deployment.api_key.get_secret_value())

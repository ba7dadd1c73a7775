"""Scanning stays linear on hostile input: a 256 KB body built to make regexes backtrack must not
stall the router (each case here took seconds to minutes with naive patterns)."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from routing.detectors import compile_detectors
from routing.spec import SensitivityPolicy

DETECTORS = compile_detectors(SensitivityPolicy())
ROUTING = Path(__file__).resolve().parents[2] / "routing"


@pytest.mark.parametrize(
    "unit",
    ["eyJ", "+1 ", "1.", "@", "a@b.", ":", "a:", "password=", "-----BEGIN RSA PRIVATE KEY-----a:\\n", "AKIA-", "xoxb-", "DE89 ", "a://b:c@", "4"],
)
def test_hostile_repetitions_scan_in_linear_time(unit: str) -> None:
    text = unit * (256 * 1024 // len(unit))
    started = time.perf_counter()
    DETECTORS.scan(text)
    assert time.perf_counter() - started < 1.0  # linear scans take ~0.1 s here; quadratic ones took 2-50 s


def test_routing_never_imports_the_gateway_or_providers() -> None:
    for path in ROUTING.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("gateway", "providers") for n in names), path

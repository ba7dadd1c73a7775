"""Scanning stays linear on hostile input: a 256 KB body built to make regexes backtrack must not
stall the router (each case here took seconds to minutes with naive patterns)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from routing.detectors import compile_detectors
from routing.spec import SensitivityPolicy

DETECTORS = compile_detectors(SensitivityPolicy())
ROUTING = Path(__file__).resolve().parents[2] / "routing"


@pytest.mark.parametrize(
    "unit",
    [
        "eyJ",
        "+1 ",
        "1.",
        "@",
        "a@b.",
        ":",
        "a:",
        "password=",
        "-----BEGIN RSA PRIVATE KEY-----a:\\n",
        "AKIA-",
        "xoxb-",
        "DE89 ",
        "a://b:c@",
        "4",
    ],
)
def test_hostile_repetitions_scan_in_linear_time(unit: str) -> None:
    text = unit * (256 * 1024 // len(unit))
    started = time.thread_time()  # CPU time: waiting for a core on a busy machine does not count
    DETECTORS.scan(text)
    assert time.thread_time() - started < 1.0  # linear scans take ~0.1 s here; quadratic ones took 2-50 s

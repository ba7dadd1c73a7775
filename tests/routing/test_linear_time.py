"""Every detector runs in linear time on hostile input (the one kind of timed test in this suite).

Each adversarial input (bench/adversarial.py: the two known killers -- a PEM header followed by
lines with a literal backslash-n, digit-heavy text for the phone patterns -- and repeated
prefixes, separators and Unicode-heavy text for every other scanner) is timed per detector at two
sizes 16x apart: linear growth is 16x, quadratic 256x, and the assertion allows 48x plus a fixed
allowance for a noisy shared machine. The whole detector set, normalisation included, must also
stay under 5 ms per KB on 1 MB of the known killers and of the inputs that cost most per KB (see
docs/benchmarks.md, "Detectors", where every input is measured at 1 MB for every detector).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bench.adversarial import UNITS, adversarial
from routing.detectors import compile_detectors
from routing.detectors.base import Scan
from routing.detectors.normalize import normalize
from routing.spec import SensitivityPolicy

DETECTORS = compile_detectors(
    SensitivityPolicy(
        detectors=[
            {"name": "codenames", "level": "internal", "keywords": ["falcon", "bluebird"]},
            {"name": "employee-id", "level": "restricted", "regex": r"\bEMP-\d{6}\b"},
        ]
    )
)
SMALL, LARGE, HUGE = 4 * 1024, 64 * 1024, 1024 * 1024
CEILING_S_PER_KB = 0.005
GROWTH = LARGE // SMALL  # 16: what linear time allows
ALLOWED_GROWTH = 3 * GROWTH  # quadratic would be 256
NOISE_S = 0.02


def best_of(runs: int, action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_each_detector_scales_linearly_on_hostile_input(unit: str) -> None:
    small, large = normalize(adversarial(unit, SMALL)), normalize(adversarial(unit, LARGE))
    for detector in DETECTORS.detectors:
        t_small = best_of(3, lambda d=detector: d.count(Scan(small)))
        t_large = best_of(2, lambda d=detector: d.count(Scan(large)))
        assert t_large <= ALLOWED_GROWTH * t_small + NOISE_S, (detector.name, t_small, t_large)
        assert t_large / (LARGE / 1024) <= CEILING_S_PER_KB, (detector.name, t_large)


COSTLIEST = (
    "pem header + literal \\n lines",
    "phone: +1 digits",
    "phone: +(1) 2-3.4/",
    "digit run",
    "digits and spaces",
    "card groups",
    "card groups, commas",
    "valid cards in CSV",
    "ssn context",
    "phone context",
    "url userinfo",
    "DE89 repeated",
    "pem header repeated",
    "escaped \\n",
    "mixed Unicode",
    "a@b.",
)


def test_the_costliest_inputs_are_known_units() -> None:
    assert set(COSTLIEST) <= set(UNITS)


@pytest.mark.parametrize("unit", COSTLIEST)
def test_a_megabyte_of_hostile_input_scans_under_5_ms_per_kb(unit: str) -> None:
    text = adversarial(unit, HUGE)
    started = time.perf_counter()
    DETECTORS.clear_cache()
    DETECTORS.scan(text)
    elapsed = time.perf_counter() - started
    assert elapsed / (HUGE / 1024) <= CEILING_S_PER_KB, elapsed


def test_normalisation_scales_linearly_on_escapes_and_unicode() -> None:
    for unit in ("escaped \\n", "escaped \\u00a0", "full-width digits", "mixed Unicode", "zero-width space"):
        t_small = best_of(3, lambda u=unit: normalize(adversarial(u, SMALL)))
        t_large = best_of(2, lambda u=unit: normalize(adversarial(u, LARGE)))
        assert t_large <= ALLOWED_GROWTH * t_small + NOISE_S, (unit, t_small, t_large)


def test_nested_escapes_cost_a_logarithmic_number_of_passes() -> None:
    text = "\\" * (1 << 18) + "n"  # 2**18 backslashes: 18 passes, each halving the run
    assert best_of(1, lambda: normalize(text)) < 1.0

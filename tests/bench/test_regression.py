"""The CI guard on gateway throughput: Switchyard against the bare pass-through, in one run.

Starts nginx, bench/passthrough.py and Switchyard as real processes and drives them with wrk
(installed with apt-get when missing and running as root; skipped otherwise). About 20 s each.
See bench/regression.py for how the threshold was chosen.
"""

from __future__ import annotations

import pytest

from bench.regression import DEFAULT_THRESHOLD, check

pytestmark = pytest.mark.slow


def test_switchyard_throughput_stays_within_threshold_of_bare_passthrough() -> None:
    try:
        verdict = check(rounds=3, duration_s=2.0, threshold=DEFAULT_THRESHOLD)
    except SystemExit as exc:  # wrk or nginx missing and cannot be installed here
        pytest.skip(str(exc))
    assert verdict.passed, verdict.message


def test_the_same_gateway_slowed_down_2x_fails_the_check() -> None:
    try:
        verdict = check(rounds=3, duration_s=2.0, threshold=DEFAULT_THRESHOLD, slowdown=2.0)
    except SystemExit as exc:
        pytest.skip(str(exc))
    assert not verdict.passed, f"a 2x slowdown passed: re-derive DEFAULT_THRESHOLD ({verdict.message})"
    assert len(verdict.attempts) == 2  # re-measured once before failing, as a real slowdown would be

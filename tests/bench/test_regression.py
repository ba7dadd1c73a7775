"""The CI guard on gateway throughput: Switchyard against the bare pass-through, in one run.

Starts nginx, bench/passthrough.py and Switchyard as real processes and drives them with wrk
(installed with apt-get when missing and running as root; skipped otherwise). About 20 s.
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

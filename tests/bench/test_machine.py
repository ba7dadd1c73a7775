"""The quiet-machine check: CPU of processes outside the run is counted, the run's own is not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.machine import is_quiet, others_cpu, summarise_load

# Spins for a few seconds under a name of its own (prctl PR_SET_NAME); with "detach" it double-forks
# so that init adopts it: a process that is not a descendant of the test, like another user's job.
BURNER = """
import ctypes, os, sys, time
if sys.argv[2] == "detach" and os.fork():
    os._exit(0)
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    pass
"""


def _burn(name: str, mode: str, seconds: float = 4.0) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BURNER, name, mode, str(seconds)])


def test_a_process_outside_the_run_is_counted_and_one_of_the_run_is_not() -> None:
    own = _burn("sy-burn-own", "child")
    other = _burn("sy-burn-other", "detach")
    other.wait(timeout=10)  # the intermediate parent exits at once; the burner lives on, adopted by init
    time.sleep(0.3)
    try:
        total, busiest = others_cpu(os.getpid(), 1.5, top_n=1000)
    finally:
        own.kill()
        own.wait()
    names = dict(busiest)
    assert names.get("sy-burn-other", 0.0) >= 5.0, busiest  # a spinning core, however shared the machine is
    assert "sy-burn-own" not in names, busiest
    assert total >= names["sy-burn-other"]


def test_quiet_means_a_low_median_and_a_low_90th_percentile() -> None:
    assert is_quiet([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 40.0])  # one burst tolerated
    assert not is_quiet([20.0] * 10)  # median too high
    assert not is_quiet([1.0] * 8 + [60.0, 60.0])  # bursts in 20% of the samples
    summary = summarise_load([3.0, 1.0, 2.0], {"python": 4.0, "nginx": 6.0})
    assert summary["median_pct"] == 2.0
    assert summary["max_pct"] == 3.0
    assert summary["quiet"] is True
    assert summary["busiest"] == [("nginx", 6.0)]  # under 5% is not named


def test_require_quiet_refuses_to_start_when_the_machine_stays_busy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    burners = [_burn(f"sy-burn-{i}", "detach", seconds=8.0) for i in range(2)]  # two spinning cores, not of this run
    for burner in burners:
        burner.wait(timeout=10)
    out = tmp_path / "benchmarks.md"
    status = main(["--quick", "--require-quiet", "--quiet-timeout", "0", "--out", str(out)])
    assert status == 3
    assert not out.exists()  # nothing was started, nothing written
    assert "refusing to start: the machine stayed busy" in capsys.readouterr().err

"""CI regression check: Switchyard's throughput relative to the bare pass-through, same run.

``python -m bench.regression [--rounds 3] [--duration 2] [--threshold 0.09]`` starts nginx, the
bare pass-through (bench/passthrough.py) and Switchyard (1 worker, the bench config: routing over
two candidates with the default detectors, budgets, ledger), drives small chat requests at 50
connections with wrk, alternating the two targets round by round, and compares the best round of
each. Exit status 1 when Switchyard falls under ``threshold`` x the pass-through's req/s.

Why relative and best-of: on a shared 2-core CI machine absolute req/s swing by 2x with other
jobs, but both targets run on the same machine in alternating 2 s windows, so outside load hits
both; taking each target's best round discards windows that a burst of outside load happened to
hit. A failing verdict is re-measured once (longer windows) before it is reported, so one unlucky
attempt cannot fail CI, while a real 2x slowdown fails both.

Threshold: see ``DEFAULT_THRESHOLD`` below and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.procs import Services, ensure_tools, raise_fd_limit
from bench.scenarios import Bench, Plan
from bench.targets import Target, start_passthrough, start_switchyard
from bench.upstreams import start_nginx

# Measured on the 2-core development machine (docs/benchmarks.md, "Regression check"): Switchyard
# (routing, budgets and the ledger on) forwards 0.20-0.215 of the pass-through's req/s, best of
# rounds, across repeated runs with other test suites running (it was ~0.15 before gc.freeze and
# the ledger fast path landed). A 2x slowdown puts it at ~0.10-0.11. 0.13 sits between: ~38% of
# headroom under today's ratio for noise, and a 2x slowdown lands under it. Raise it as the gateway
# gets faster (issue 5's goal is 0.40); keep it between half and ~0.65x of the ratio that
# docs/benchmarks.md reports (the report says whether a 2x slowdown would still be caught).
DEFAULT_THRESHOLD = 0.13


@dataclass
class Attempt:
    passthrough_rps: list[float] = field(default_factory=list)
    switchyard_rps: list[float] = field(default_factory=list)
    passthrough_cpu_us: list[float] = field(default_factory=list)
    switchyard_cpu_us: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def ratio(self) -> float:
        best_pt = max(self.passthrough_rps, default=0.0)
        return max(self.switchyard_rps, default=0.0) / best_pt if best_pt else 0.0

    @property
    def cpu_ratio(self) -> float | None:
        """Pass-through CPU per request over Switchyard's (the same ratio seen through CPU time)."""
        if not self.passthrough_cpu_us or not self.switchyard_cpu_us:
            return None
        return min(self.passthrough_cpu_us) / min(self.switchyard_cpu_us)


@dataclass
class Verdict:
    passed: bool
    threshold: float
    attempts: list[Attempt]
    message: str


def _measure(bench: Bench, passthrough: Target, switchyard: Target, rounds: int, duration_s: float) -> Attempt:
    attempt = Attempt()
    for _ in range(rounds):
        for target, rps, cpu in ((passthrough, attempt.passthrough_rps, attempt.passthrough_cpu_us),
                                 (switchyard, attempt.switchyard_rps, attempt.switchyard_cpu_us)):
            res = bench.wrk_run(target, target.chat_url, bench.chat_body(target), 50, duration_s)
            attempt.errors += res["errors"]
            rps.append(res["rps"])
            if res.get("cpu_us_per_req") is not None:
                cpu.append(res["cpu_us_per_req"])
    return attempt


def check(rounds: int = 3, duration_s: float = 2.0, threshold: float = DEFAULT_THRESHOLD, retry: bool = True,
          log=print) -> Verdict:  # noqa: ANN001
    tools = ensure_tools(("wrk", "nginx"))
    raise_fd_limit()
    services = Services()
    run_dir = Path(tempfile.mkdtemp(prefix="switchyard-regression-"))
    attempts: list[Attempt] = []
    try:
        nginx = start_nginx(services, tools["nginx"], run_dir)
        passthrough = start_passthrough(services, run_dir, nginx, None)
        switchyard = start_switchyard(services, run_dir, nginx, nginx)
        bench = Bench(tools["wrk"], run_dir, Plan(), [passthrough, switchyard], "", log=log)
        for target in (passthrough, switchyard):  # warm-up: connection pools, caches, first-request imports
            bench.wrk_run(target, target.chat_url, bench.chat_body(target), 50, 1)
        attempts.append(_measure(bench, passthrough, switchyard, rounds, duration_s))
        if attempts[-1].ratio < threshold and retry:
            log(f"ratio {attempts[-1].ratio:.3f} under {threshold}; measuring again with longer windows")
            attempts.append(_measure(bench, passthrough, switchyard, rounds, duration_s * 1.5))
    finally:
        services.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
    best = max(attempts, key=lambda a: a.ratio)
    errors = sum(a.errors for a in attempts)
    passed = best.ratio >= threshold and errors == 0
    cpu = f", CPU/request ratio {best.cpu_ratio:.3f}" if best.cpu_ratio is not None else ""
    message = (f"Switchyard {max(best.switchyard_rps):,.0f} req/s vs bare pass-through {max(best.passthrough_rps):,.0f} "
               f"req/s = {best.ratio:.3f} (threshold {threshold}){cpu}; errors {errors}; "
               f"{len(attempts)} attempt(s)")
    return Verdict(passed, threshold, attempts, message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.regression", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per wrk window")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--no-retry", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the attempts as JSON too")
    args = parser.parse_args(argv)
    started = time.monotonic()
    verdict = check(args.rounds, args.duration, args.threshold, retry=not args.no_retry,
                    log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps([asdict(a) | {"ratio": a.ratio, "cpu_ratio": a.cpu_ratio} for a in verdict.attempts], indent=1))
    print(("PASS: " if verdict.passed else "FAIL: ") + verdict.message + f" ({time.monotonic() - started:.0f} s)")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())

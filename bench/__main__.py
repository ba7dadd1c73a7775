"""``python -m bench``: the whole comparison in one run, written to docs/benchmarks.md.

Checks that the machine is quiet (other processes' CPU; ``--require-quiet`` waits for it, bounded,
or refuses to start) and keeps sampling it during the run. Starts nginx and the stream upstream,
then the targets (direct, the bare pass-through, Switchyard in each available variant, the
LiteLLM proxy, Portkey's gateway), runs every scenario interleaved, profiles Switchyard with
py-spy, runs the long memory test and the ``--workers`` scaling run, stops everything, runs the
routing micro-benchmark, and renders the report from the results (raw data:
bench/results/last-run.json), keeping the sections other benchmarks own (bench/sections.py).
Issue 12's targets are judged on ``switchyard+features+redis`` (every feature on).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import QUIET_MEDIAN_PCT, QUIET_P90_PCT, LoadWatch, busy_processes, describe, wait_for_quiet
from bench.procs import Services, ensure_tools, raise_fd_limit
from bench.report import HEADLINE, render
from bench.routing_figures import measure as measure_routing
from bench.scenarios import Bench, Plan
from bench.sections import carry_sections, replace_section
from bench.targets import (
    VARIANTS,
    Target,
    Variant,
    direct_target,
    litellm_version,
    start_litellm,
    start_passthrough,
    start_switchyard,
)
from bench.upstreams import CHAT_REPLY, EMBED_REPLY, start_nginx, start_stream_upstream

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def quick_plan() -> Plan:
    return Plan(
        duration_s=3.0,
        warmup_s=1.0,
        rounds=1,
        stream_count=8,
        stream_concurrency=4,
        stream_solo_count=10,
        many_streams=500,
        many_tokens=20,
        long_requests=20_000,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short measurements (~2-3 min): smoke-test the harness")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="markdown report path")
    parser.add_argument("--skip-litellm", action="store_true", help="do not install/run the LiteLLM proxy")
    parser.add_argument("--skip-portkey", action="store_true", help="do not install/run Portkey's gateway (Node)")
    parser.add_argument(
        "--require-quiet",
        action="store_true",
        help="wait (up to --quiet-timeout) until other processes leave the machine quiet, or refuse to start",
    )
    parser.add_argument("--quiet-timeout", type=float, default=900.0, help="seconds --require-quiet waits (default 900)")
    parser.add_argument(
        "--variants",
        default="master,features,features-redis",
        help=f"Switchyard variants to measure, comma-separated ({', '.join(VARIANTS)})",
    )
    parser.add_argument("--long-requests", type=int, help="requests in the memory run (default 200,000; --quick 20,000)")
    parser.add_argument("--workers", type=int, help="also measure Switchyard with --workers N (default 2; 0 skips)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--profile-seconds", type=float, default=8.0)
    parser.add_argument("--keep-run-dir", action="store_true", help="keep configs and server logs for inspection")
    parser.add_argument(
        "--render-only", action="store_true", help="measure nothing: re-render the report from bench/results/last-run.json"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        _write(args.out, render(json.loads((RESULTS / "last-run.json").read_text())) + "\n")
        print(f"re-rendered {args.out} from {RESULTS / 'last-run.json'}")
        return 0
    started = time.monotonic()
    plan = quick_plan() if args.quick else Plan()
    if args.long_requests is not None:
        plan.long_requests = args.long_requests
    if args.workers is not None:
        plan.workers = args.workers
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    tools = ensure_tools(("wrk", "nginx"))
    raise_fd_limit()
    log("checking that the machine is quiet (CPU of other processes) ...")
    others_before = wait_for_quiet(
        args.quiet_timeout if args.require_quiet else 0.0, window_s=4.0 if args.quick else 10.0, log=log
    )
    log(
        f"other processes: median {others_before['median_pct']}% of a core, p90 {others_before['p90_pct']}%: "
        + ("quiet" if others_before["quiet"] else "BUSY")
    )
    if args.require_quiet and not others_before["quiet"]:
        print(
            f"refusing to start: the machine stayed busy for {args.quiet_timeout:.0f} s "
            f"({', '.join(f'{n} {p:.0f}%' for n, p in others_before['busiest'])})",
            file=sys.stderr,
        )
        return 3
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through the finally below
    run_dir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    services = Services()
    results: dict = {"plan": dataclasses.asdict(plan), "targets": {}, "unavailable": {}}
    meta = describe(ROOT, tools["wrk"], tools["nginx"])
    meta.update(
        {
            "command": "python -m bench" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
            "quick": args.quick,
            "load_start": round(os.getloadavg()[0], 2),
            "busy_start": busy_processes({os.getpid()}),
            "others_before": others_before,
            "quiet_rule": {"median_pct": QUIET_MEDIAN_PCT, "p90_pct": QUIET_P90_PCT},
        }
    )
    results["meta"] = meta
    watch = LoadWatch().start()
    results["upstream"] = {
        "chat_bytes": len(json.dumps(CHAT_REPLY, separators=(",", ":"))),
        "embed_bytes": len(json.dumps(EMBED_REPLY, separators=(",", ":"))),
    }
    log(f"run dir {run_dir}; load average {meta['load_start']}; busy: {', '.join(meta['busy_start']) or '-'}")
    try:
        nginx = start_nginx(services, tools["nginx"], run_dir)
        stream = start_stream_upstream(
            services, run_dir, tokens=plan.stream_tokens, interval_ms=plan.stream_interval_ms, first_token_ms=plan.first_token_ms
        )
        targets: list[Target] = [direct_target(nginx, stream), start_passthrough(services, run_dir, nginx, stream)]
        switchyard: Target | None = None
        for key in variants:
            variant = VARIANTS[key]
            try:
                target = start_switchyard(services, run_dir, nginx, stream, variant=variant)
            except Exception as exc:
                results["unavailable"][variant.name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                log(f"{variant.name}: not available ({results['unavailable'][variant.name]})")
                continue
            targets.append(target)
            if key == "master":
                switchyard = target
        litellm: Target | None = None
        if args.skip_litellm:
            results["unavailable"]["litellm"] = "skipped (--skip-litellm)"
        else:
            try:
                litellm = start_litellm(services, run_dir, nginx, stream)
                targets.append(litellm)
                meta["litellm"] = f"litellm[proxy] {litellm_version()} in bench/.litellm-venv"
            except Exception as exc:
                results["unavailable"]["litellm"] = f"{type(exc).__name__}: {exc}"[:600]
                log(f"LiteLLM proxy not available: {results['unavailable']['litellm']}")
        if args.skip_portkey:
            results["unavailable"]["portkey"] = "skipped (--skip-portkey)"
        else:
            try:
                from bench.portkey import start_portkey

                portkey = start_portkey(services, run_dir, nginx, stream)
                targets.append(portkey)
                meta["portkey"] = portkey.note
            except Exception as exc:
                results["unavailable"]["portkey"] = f"{type(exc).__name__}: {exc}"[:600]
                log(f"Portkey not available: {results['unavailable']['portkey']}")
        results["targets"] = {t.name: t.note for t in targets}
        results["rss_cold_mb"] = {t.name: round(t.service.rss_bytes() / 2**20, 1) for t in targets if t.service}
        log("targets up: " + ", ".join(t.name for t in targets))

        bench = Bench(tools["wrk"], run_dir, plan, targets, stream, results, log)
        bench.preflight()
        bench.warmup()
        bench.chat_throughput()
        bench.chat_latency()
        bench.embeddings()
        bench.stream_200()
        bench.many_streams()
        bench.big_prompt()
        for peer in targets:  # done with the peers: leave their CPU to the remaining runs
            if peer.name in ("litellm", "portkey") and peer.service is not None:
                services.stop(peer.service)
        # The profile and the memory run follow the targets: every feature on, when measured.
        headline = next((t for t in targets if t.name == HEADLINE), switchyard)
        if headline is not None and not args.no_profile:
            log(f"profiling {headline.name} with py-spy for {args.profile_seconds:.0f} s")
            results["profile"] = {**run_profile(bench, headline, args.profile_seconds), "target": headline.name}
        if headline is not None:
            bench.memory(headline)
            if plan.workers > 1:
                # Several workers need redis_url (shared budgets and limits): compare with the same
                # variant on one worker, measured alongside.
                single = next((t for t in targets if t.name == VARIANTS["features-redis"].name), None)
                variant = (
                    VARIANTS["features-redis"]
                    if single is not None
                    else Variant("switchyard+redis", redis=True, description="master key, Redis admission")
                )

                def start(n: int) -> Target:
                    return start_switchyard(services, run_dir, nginx, stream, variant=variant, workers=n)

                bench.workers_scaling(start, lambda t: services.stop(t.service) if t.service else None, single)
        services.stop_all()  # the routing micro-benchmark runs with nothing else of ours on the machine
        log("routing: classification + plan (python -m bench.routing_bench --no-write)")
        results["routing"] = measure_routing(quick=args.quick)
        log(
            f"  [routing] p99 at 4 KB {results['routing'].get('p99_ms_at_4kb')} ms, "
            f"{results['routing'].get('us_per_kb_beyond_4kb')} µs/KB beyond; {results['routing'].get('failed', '')}"
        )
    finally:
        services.stop_all()
        meta["others_during"] = watch.stop()
        meta["load_end"] = round(os.getloadavg()[0], 2)
        meta["wall_s"] = round(time.monotonic() - started, 1)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "last-run.json").write_text(json.dumps(results, indent=1, default=str))
        if args.keep_run_dir:
            log(f"logs and configs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out, render(results) + "\n")
    log(
        f"wrote {args.out} ({meta['wall_s'] / 60:.1f} min); machine "
        + ("quiet" if meta["others_during"]["quiet"] and others_before["quiet"] else "BUSY: do not judge the targets from it")
    )
    return 0


def _write(out: Path, report: str, inproc: list[dict[str, Any]] | None = None) -> None:
    """The report, keeping the sections other benchmarks own (bench/sections.py); the in-process
    CPU section is re-created from ``inproc`` (by default bench/results/inproc.json, written by
    ``python -m bench.inproc``) when there is any, else kept as it was."""
    from bench.inproc import SECTION as INPROC
    from bench.inproc import load_results
    from bench.inproc import render as render_inproc

    old = out.read_text(encoding="utf-8") if out.exists() else ""
    text = carry_sections(old, report)
    entries = load_results() if inproc is None else inproc
    if entries:
        text = replace_section(text, INPROC, render_inproc(entries))
    out.write_text(text, encoding="utf-8")


def run_profile(bench: Bench, target: Target, seconds: float) -> dict:
    from bench.profile import profile_under_load, py_spy

    if py_spy() is None:
        return {"failed": "py-spy is not installed (it is in the dev extra: pip install -e '.[dev]')"}
    assert target.service is not None
    body = bench.chat_body(target)
    try:
        return profile_under_load(
            target.service.pid, lambda: bench.wrk_run(target, target.chat_url, body, 50, seconds + 3), seconds, target.name
        )
    except Exception as exc:
        return {"failed": f"{type(exc).__name__}: {exc}"[:300]}


if __name__ == "__main__":
    sys.exit(main())

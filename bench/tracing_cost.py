"""What tracing and the request log cost on the request path, in CPU time per request.

``python -m bench.tracing_cost [--requests 2000] [--rounds 5] [--runs 3] [--quick] [--no-write]``

The same small chat request goes through the gateway's ASGI app, in this process, to nginx
answering a fixed completion (no Python upstream sharing the CPU), one request at a time, in
four apps side by side:

* ``off``: the default; no tracer exists, the hooks are shared do-nothing context managers (the
  request log is off too: no handler in this process);
* ``tracing on``: every span made (server, auth, routing, admission, attempt, accounting) and
  handed to a batch span processor whose exporter drops them (the cost of tracing without the
  network);
* ``tracing on, 10% sampled``: the same with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` at 0.1;
* ``request log on``: tracing off, one JSON request line per request written to /dev/null.

The measure is this process's CPU time (``time.process_time``, all threads: the batch
processor's thread counts) over the requests; each round runs every app's requests in ten
interleaved blocks, so that a busy neighbour weighs on all of them alike. A run reports each
app's median over its rounds and the median of the per-round differences from ``off``; the
docs give the median over several runs, each with fresh apps. The off-path hooks and one SDK
span are also timed alone. Results go to
docs/benchmarks.md between ``<!-- tracing-cost:start -->`` and ``<!-- tracing-cost:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson
import yaml
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bench.procs import Services, ensure_tools
from bench.sections import write_section
from bench.upstreams import start_nginx

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "benchmarks.md"
SECTION = "tracing-cost"
MASTER_KEY = "sk-bench-tracing-cost"
BODY = orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "Summarise the meeting notes in two lines."}]})
VARIANTS = ("off", "tracing on", "tracing on, 10% sampled", "request log on")
BLOCKS = 10  # each round's requests, per app, in this many interleaved blocks
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}


def _config(base_url: str) -> Any:
    from gateway.config import parse_config

    return parse_config(
        yaml.safe_dump(
            {
                "server": {"master_key": MASTER_KEY},
                "database_url": "sqlite:///:memory:",
                "deployments": [
                    {
                        "name": "nginx",
                        "provider": "openai_compatible",
                        "base_url": base_url,
                        "model": "bench-model",
                        "locality": "self_hosted",
                        "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                    }
                ],
                "routes": [{"name": "auto", "candidates": ["nginx"]}],
            }
        ),
        source="bench.tracing_cost",
    )


class _DropExporter(SpanExporter):
    """A span exporter that takes every batch and keeps nothing."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def _request(app: Any) -> int:
    """One request through the ASGI app as uvicorn would make it; returns the status."""
    done = asyncio.Event()
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway"),
            (b"authorization", f"Bearer {MASTER_KEY}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4000),
    }
    await app(scope, receive, send)
    done.set()
    return status


async def _cpu_per_request(app: Any, count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        status = await _request(app)
        if status != 200:
            raise RuntimeError(f"the gateway answered {status}")
    return (time.process_time() - started) / count * 1e6


def _request_log_on() -> logging.Handler:
    from gateway.logs import REQUEST_LOGGER, JsonFormatter

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - closed in _request_log_off
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def _request_log_off(handler: logging.Handler) -> None:
    from gateway.logs import REQUEST_LOGGER

    logger = logging.getLogger(REQUEST_LOGGER)
    logger.removeHandler(handler)
    logger.setLevel(logging.WARNING)
    handler.close()


def hooks_cost_us() -> float:
    """The off path's own work per request: the hooks a request calls, timed alone."""
    from gateway.telemetry import UNTRACED

    def hooks() -> None:
        trace = UNTRACED
        for name in ("auth", "routing", "admission"):
            with trace.phase(name):
                pass
        with trace.attempt("nginx"):
            pass
        with trace.phase("accounting"):
            pass

    runs = 200_000
    return min(timeit.repeat(hooks, number=runs, repeat=5, timer=time.process_time)) / runs * 1e6


def sdk_span_us() -> float:
    """One OpenTelemetry SDK span started and ended under a parent, through the same kind of batch
    processor, timed alone: what each of a request's spans costs before any attribute is set."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DropExporter()))
    tracer = provider.get_tracer("bench")
    parent = trace.set_span_in_context(tracer.start_span("parent"))

    def one() -> None:
        tracer.start_span("child", context=parent).end()

    runs = 2000  # about 4 batches: the queue is drained as it would be under traffic
    try:
        return statistics.median(timeit.repeat(one, number=runs, repeat=7, timer=time.process_time)) / runs * 1e6
    finally:
        provider.shutdown()


async def measure(base_url: str, requests: int, rounds: int, warmup: int) -> dict[str, Any]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from gateway.app import create_app

    config = _config(base_url)
    apps = {
        "off": create_app(config),
        "tracing on": create_app(config, span_processor=BatchSpanProcessor(_DropExporter())),
        "tracing on, 10% sampled": create_app(config, span_processor=BatchSpanProcessor(_DropExporter())),
        "request log on": create_app(config),
    }
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    async with AsyncExitStack() as stack:
        for name, app in apps.items():
            saved = {k: os.environ.get(k) for k in SAMPLED}
            if name == "tracing on, 10% sampled":
                os.environ.update(SAMPLED)  # the tracer provider reads its sampler from the environment
            try:
                await stack.enter_async_context(app.router.lifespan_context(app))
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        for app in apps.values():
            await _cpu_per_request(app, warmup)
        for round_number in range(rounds):
            shift = round_number % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            spent = dict.fromkeys(VARIANTS, 0.0)
            for _ in range(BLOCKS):  # small blocks, interleaved: a burst of load weighs on every app alike
                for name in order:
                    handler = _request_log_on() if name == "request log on" else None
                    try:
                        spent[name] += await _cpu_per_request(apps[name], requests // BLOCKS)
                    finally:
                        if handler is not None:
                            _request_log_off(handler)
            for name in VARIANTS:
                samples[name].append(spent[name] / BLOCKS)
            print(
                f"round {round_number + 1}/{rounds}: " + ", ".join(f"{n} {samples[n][-1]:.1f} µs" for n in VARIANTS), flush=True
            )
    return {"samples": samples, "requests": requests, "rounds": rounds, "hooks_us": hooks_cost_us(), "span_us": sdk_span_us()}


def render(runs: list[dict[str, Any]]) -> str:
    """The docs section: per app, the median over runs of each run's median over its rounds."""
    first = runs[0]
    per_run = [{name: statistics.median(run["samples"][name]) for name in VARIANTS} for run in runs]
    differences = [
        {
            name: statistics.median([v - o for v, o in zip(run["samples"][name], run["samples"]["off"], strict=True)])
            for name in VARIANTS
        }
        for run in runs
    ]
    median_off = statistics.median(r["off"] for r in per_run)
    span_us = statistics.median(run["span_us"] for run in runs)
    hooks_us = statistics.median(run["hooks_us"] for run in runs)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        git = ["git", "rev-parse", "--short", "HEAD"]
        revision = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        revision = ""
    load = os.getloadavg()[0]
    lines = [
        "## Request-path cost of tracing and of the request log",
        "",
        (
            f"Generated by `python -m bench.tracing_cost` on {when} (revision {revision or '?'}, "
            f"Python {platform.python_version()}, load average {load:.2f} at the end): {len(runs)} run{'s' * (len(runs) > 1)} of "
            f"{first['rounds']} rounds of {first['requests']:,} small chat requests per app, the apps alternating in "
            f"blocks of {first['requests'] // BLOCKS}, one request at a time through the ASGI app (in process) to "
            "nginx. CPU time of the whole process per request, the batch span processor's thread included. The "
            "machine is shared with other work, which inflates every figure and varies from run to run: read the "
            "medians and the differences, not the absolute values."
        ),
        "",
        "| app | CPU µs/request, median of runs | each run (median of its rounds) | vs off, median of runs | each run |",
        "|---|---|---|---|---|",
    ]
    descriptions = {
        "off": "tracing off (the default)",
        "tracing on": "tracing on: 7 spans/request, batch processor, exporter drops them",
        "tracing on, 10% sampled": "tracing on, `parentbased_traceidratio` 0.1: one request in ten recorded",
        "request log on": "request log on: one JSON line/request to /dev/null",
    }
    for name in VARIANTS:
        median = statistics.median(r[name] for r in per_run)
        each = " / ".join(f"{r[name]:.0f}" for r in per_run)
        if name == "off":
            delta, deltas = "-", "-"
        else:
            d = statistics.median(r[name] for r in differences)
            delta = f"{d:+.1f} µs ({d / median_off:+.1%})"
            deltas = " / ".join(f"{r[name]:+.0f}" for r in differences)
        lines.append(f"| {descriptions[name]} | {median:.1f} | {each} | {delta} | {deltas} |")
    lines += [
        "",
        (
            f"Where it goes: the OpenTelemetry SDK's span objects alone (one span started and ended under a parent, "
            f"timed by itself) cost {span_us:.1f} µs of CPU here, {7 * span_us:.0f} µs for a request's 7; in the "
            "request they cost more (a larger program leaves the caches cold), and the attributes (about 40 across "
            "the spans, each checked by the SDK), the W3C context read from the client and written to each upstream "
            "attempt, and the batch processor's thread (which takes the GIL to drain its queue) make the rest. A "
            "sampler (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.1`, third row) "
            "leaves an unsampled request one non-recording server span and the propagated context, no children and "
            "no export."
        ),
        "",
        (
            f"With tracing off, a request runs the hooks (a phase around auth, routing, admission and accounting, one "
            f"per attempt) on a shared do-nothing object: {hooks_us:.2f} µs of CPU per request timed alone, "
            f"{hooks_us / median_off:.2%} of the request's CPU time: below what this measurement can resolve. "
            "No tracer or span exists and the tracing SDK is not imported."
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="independent runs (fresh apps each), reported by their median")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="300 requests x 2 rounds: a smoke test")
    parser.add_argument("--no-write", action="store_true", help=f"print the section, leave {OUTPUT.name} alone")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.warmup, args.runs = 300, 2, 100, 1
    nginx = ensure_tools(("nginx",))["nginx"]
    services = Services()
    run_dir = Path(tempfile.mkdtemp(prefix="switchyard-tracing-cost-"))
    try:
        base_url = start_nginx(services, nginx, run_dir)
        runner: Callable[..., Any] = asyncio.run
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        runs = []
        for number in range(args.runs):
            print(f"run {number + 1}/{args.runs}", flush=True)
            runs.append(runner(measure(base_url, args.requests, args.rounds, args.warmup)))
    finally:
        services.stop_all()
    section = render(runs)
    print(section)
    if not args.no_write:
        write_section(OUTPUT, SECTION, section)
        print(f"wrote the {SECTION} section of {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

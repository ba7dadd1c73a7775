"""CPU per request, in process: the gateway with every feature on, driven through its ASGI callable.

``python -m bench.inproc [--requests 20000] [--runs 5] [--concurrency 1] [--label NAME] [--write]``
``python -m bench.inproc --callgrind 400``  (instructions per request, under valgrind)

Wall-clock load tests mean little on a shared machine; CPU time and instruction counts of the
gateway's own process do not depend on what else runs. This harness builds the real app
(``gateway.app.create_app``) from the config ``python -m bench`` uses for its headline target
``switchyard+features+redis`` (:func:`bench.targets.switchyard_config`: a virtual key with a
budget created through the admin API, Redis admission, the batched SQLite ledger, a route over a
self-hosted and a hosted candidate with sensitivity and task rules), and sends it the bench's
small chat request through a minimal ASGI server stand-in (a ``receive`` that hands over the
body, then waits for the response to end as uvicorn's does, and a ``send`` that keeps the
status). Nothing of the gateway is replaced: the upstream is nginx answering a fixed completion
and Redis is a real ``redis-server``, each in its own process, so only the gateway's work (and
this small driver's) is counted.

Measures, per app:

* ``switchyard``: the gateway as above;
* ``passthrough``: :mod:`bench.passthrough` (raw ASGI + aiohttp, no parsing) on the same driver
  and the same nginx: the floor a Python gateway on this stack cannot go below, and the
  in-process analogue of the bench's throughput ratio.

The figure is this process's CPU time (``time.process_time``: every thread, so the ledger's
writer thread counts) over the requests, run in interleaved blocks so that a busy neighbour
weighs on both apps alike; each run reports the median over its rounds. What is not in it:
the HTTP server (uvicorn + httptools parsing and writing the client's connection), which the
pass-through pays alike.

``--callgrind N`` re-runs the harness under ``valgrind --tool=callgrind`` with instrumentation
off until the apps are warm, then counts the instructions of N requests per app: a
load-independent figure (repeatable to a fraction of a percent whatever else the machine does).

Results go to ``bench/results/inproc.json`` (one entry per ``--label``, kept across runs) and,
with ``--write``, to the ``inproc-cpu`` section at the end of docs/benchmarks.md, which
``python -m bench`` re-creates from that file (or keeps as it is when the file is absent).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.procs import Services, ensure_tools
from bench.scenarios import QUESTION, SYSTEM
from bench.sections import write_section
from bench.targets import MASTER_KEY, start_redis, switchyard_config
from bench.upstreams import start_nginx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RESULT_FILE = RESULTS / "inproc.json"
OUTPUT = ROOT / "docs" / "benchmarks.md"
SECTION = "inproc-cpu"
BODY = orjson.dumps(
    {
        "model": "auto",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "max_tokens": 64,
        "temperature": 0.2,
    }
)
APPS = ("switchyard", "passthrough")
CALLGRIND_LEDGER_FLUSH_MS = 20_000
"""The ledger writer flushes every 200 ms or 200 rows. Under callgrind a request takes ~50x longer,
so a 200 ms flush would write batches of a few rows, each paying a whole INSERT's cost: the count
would then measure valgrind's slowness. The callgrind child flushes every 20 s instead, so batches
fill to their 200 rows as they do at full speed."""
BLOCKS = 10  # each round's requests, per app, in this many interleaved blocks

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4000),
        "state": {},
    }


async def call(app: App, method: str, path: str, body: bytes, token: str) -> tuple[int, bytes]:
    """One request through ``app`` as uvicorn makes it: the body in one message, then a
    ``receive`` that returns ``http.disconnect`` only once the response is complete."""
    done = asyncio.Event()
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    headers = [
        (b"host", b"127.0.0.1:4000"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await app(_scope(method, path, headers), receive, send)
    done.set()
    return status, b"".join(chunks)


async def drive(app: App, token: str, count: int, concurrency: int) -> None:
    """``count`` small chat requests, ``concurrency`` at a time; every answer must be a 200."""
    left = count

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status, answer = await call(app, "POST", "/v1/chat/completions", BODY, token)
            if status != 200:
                raise RuntimeError(f"the app answered {status}: {answer[:300]!r}")

    if concurrency == 1:
        await client()
    else:
        await asyncio.gather(*(client() for _ in range(concurrency)))


async def _lifespan(app: App, stack: AsyncExitStack) -> None:
    """Run ``app``'s ASGI lifespan: startup now, shutdown when ``stack`` closes."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        await replies.put(message)

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send))
    started = await replies.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"startup failed: {started}")

    async def shutdown() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await replies.get()
        await task

    stack.push_async_callback(shutdown)


async def build_apps(
    nginx_base: str, redis_url: str, run_dir: Path, stack: AsyncExitStack, ledger_flush_ms: int | None = None
) -> dict[str, tuple[App, str]]:
    """Both apps started, each with the token its requests carry (``ledger_flush_ms``: see
    :data:`CALLGRIND_LEDGER_FLUSH_MS`)."""
    from bench.passthrough import make_app
    from gateway.app import create_app
    from gateway.config import parse_config

    data = switchyard_config(run_dir, nginx_base, nginx_base, redis_url=redis_url)
    if ledger_flush_ms is not None:
        data["ledger"]["flush_interval_ms"] = ledger_flush_ms
    config = parse_config(yaml.safe_dump(data), source="bench.inproc")
    gateway = create_app(config, watch=False)
    await _lifespan(gateway, stack)
    # As bench.targets.create_virtual_key: the project and a key through the admin API.
    status, answer = await call(gateway, "POST", "/admin/projects", orjson.dumps({"name": "bench"}), MASTER_KEY)
    if status not in (200, 201, 409):
        raise RuntimeError(f"POST /admin/projects answered {status}: {answer[:300]!r}")
    status, answer = await call(
        gateway, "POST", "/admin/keys", orjson.dumps({"project": "bench", "name": "bench-load"}), MASTER_KEY
    )
    if status not in (200, 201):
        raise RuntimeError(f"POST /admin/keys answered {status}: {answer[:300]!r}")
    key = orjson.loads(answer)["key"]
    passthrough = make_app(nginx_base.removesuffix("/v1"))
    await _lifespan(passthrough, stack)
    return {"switchyard": (gateway, key), "passthrough": (passthrough, "-")}


_CALLGRIND_C = r"""
#include <valgrind/callgrind.h>
void bench_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void bench_stop(void) { CALLGRIND_DUMP_STATS_AT("measured"); CALLGRIND_STOP_INSTRUMENTATION; }
"""


def _callgrind_switch(run_dir: Path) -> Any:
    """A tiny C library whose two calls are callgrind's client requests (instrumentation on and
    zeroed; dump and off): outside valgrind they do nothing."""
    import ctypes

    source, library = run_dir / "switch.c", run_dir / "switch.so"
    source.write_text(_CALLGRIND_C)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return ctypes.CDLL(str(library))


async def measure(
    nginx_base: str,
    redis_url: str,
    run_dir: Path,
    requests: int,
    rounds: int,
    warmup: int,
    concurrency: int,
    apps: tuple[str, ...],
) -> dict[str, Any]:
    """One run: fresh apps, ``rounds`` rounds of ``requests`` per app in interleaved blocks."""
    samples: dict[str, list[float]] = {name: [] for name in apps}
    async with AsyncExitStack() as stack:
        built = await build_apps(nginx_base, redis_url, run_dir, stack)
        for name in apps:
            app, token = built[name]
            await drive(app, token, warmup, concurrency)
        for number in range(rounds):
            shift = number % len(apps)
            order = apps[shift:] + apps[:shift]
            spent = dict.fromkeys(apps, 0.0)
            for _ in range(BLOCKS):
                for name in order:
                    app, token = built[name]
                    block = requests // BLOCKS
                    started = time.process_time()
                    await drive(app, token, block, concurrency)
                    spent[name] += time.process_time() - started
            for name in apps:
                samples[name].append(spent[name] / (requests // BLOCKS * BLOCKS) * 1e6)
            print(f"  round {number + 1}/{rounds}: " + ", ".join(f"{n} {samples[n][-1]:.1f} µs" for n in apps), flush=True)
    return {name: statistics.median(values) for name, values in samples.items()} | {"samples": samples}


async def count_instructions(nginx_base: str, redis_url: str, run_dir: Path, requests: int, warmup: int, app_name: str) -> None:
    """Under callgrind: warm up with instrumentation off, then instrument ``requests`` requests."""
    async with AsyncExitStack() as stack:
        built = await build_apps(nginx_base, redis_url, run_dir, stack, ledger_flush_ms=CALLGRIND_LEDGER_FLUSH_MS)
        app, token = built[app_name]
        await drive(app, token, warmup, 1)
        switch = _callgrind_switch(run_dir)
        switch.bench_start()
        await drive(app, token, requests, 1)
        switch.bench_stop()


def _runner() -> Callable[..., Any]:
    try:
        import uvloop

        return uvloop.run  # as `switchyard serve` runs
    except ImportError:
        return asyncio.run


def callgrind(nginx_base: str, redis_url: str, run_dir: Path, requests: int, app_name: str) -> float:
    """Instructions per request of ``app_name``, counted by callgrind in a child process."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install -y valgrind)")
    out = run_dir / f"callgrind-{app_name}.out"
    argv = [
        valgrind,
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.inproc",
        "--child-callgrind",
        app_name,
        "--nginx",
        nginx_base,
        "--redis",
        redis_url,
        "--run-dir",
        str(run_dir),
        "--requests",
        str(requests),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(argv, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    total = 0
    for path in run_dir.glob(f"callgrind-{app_name}.out*"):
        text = path.read_text(errors="replace")
        if "Client Request: measured" not in text:
            continue  # the dump at exit: nothing was instrumented after the measured one
        for line in text.splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    if total == 0:
        raise RuntimeError(f"callgrind wrote no counts for {app_name}; see {run_dir}")
    return total / requests


def _revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() + ("+" if dirty.stdout.strip() else "")
    except OSError:
        return "?"


def load_results() -> list[dict[str, Any]]:
    if not RESULT_FILE.exists():
        return []
    try:
        data = json.loads(RESULT_FILE.read_text())
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def save_result(entry: dict[str, Any]) -> None:
    """Add ``entry`` to bench/results/inproc.json, replacing an earlier one with the same label."""
    entries = [e for e in load_results() if e.get("label") != entry["label"]]
    entries.append(entry)
    RESULTS.mkdir(exist_ok=True)
    RESULT_FILE.write_text(json.dumps(entries, indent=1))


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def render(entries: list[dict[str, Any]]) -> str:
    """The docs section: one row per labelled measurement, in the order they were taken."""
    lines = [
        "## CPU per request, in-process (bench/inproc.py)",
        "",
        (
            "Hand-run, not part of `python -m bench`'s load run: `python -m bench.inproc --label NAME --write` "
            "(and `--callgrind N` for instruction counts). The gateway with every feature on (a virtual key with "
            "a budget, Redis admission, the SQLite ledger, sensitivity routing over two candidates: the config "
            "of the `switchyard+features+redis` target) is driven through its ASGI callable by a minimal "
            "server stand-in in the same process, one request at a time unless noted, to nginx and a "
            "`redis-server` in their own processes. CPU is this process's (`time.process_time`, all threads: "
            "the ledger writer's included) per request, the median of each run's median over its rounds, "
            "then the median over runs; instructions are callgrind's count over N requests after warm-up "
            "(the ledger flushing by size, as at full speed: see `CALLGRIND_LEDGER_FLUSH_MS`). "
            "The bare pass-through (bench/passthrough.py) runs on the same driver as the floor. Neither "
            "includes the HTTP server's own parsing and writing (uvicorn + httptools), which both pay alike "
            "under load."
        ),
        "",
        "| change | revision | Switchyard CPU µs/req | pass-through CPU µs/req | ratio | Switchyard instructions/req | pass-through instructions/req | requests x rounds x runs, concurrency | when |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        cpu, floor = e.get("cpu_us", {}), e.get("passthrough_cpu_us")
        sy = cpu.get("median")
        ratio = f"{sy / floor:.2f}x" if sy and floor else "-"
        ins = e.get("instructions", {})
        shape = f"{e.get('requests', '-')} x {e.get('rounds', '-')} x {e.get('runs', '-')}, c={e.get('concurrency', 1)}"
        each = "/".join(f"{v:.0f}" for v in cpu.get("runs", []))
        lines.append(
            f"| {e['label']} | {e.get('revision', '?')} | {_fmt(sy)} ({each}) | {_fmt(floor)} | {ratio} | "
            f"{_fmt(ins.get('switchyard'))} | {_fmt(ins.get('passthrough'))} | {shape} | {e.get('when', '-')} |"
        )
    for e in entries:  # what a measurement's author wrote about it (bench/results/inproc.json "note")
        if e.get("note"):
            lines += ["", f"*{e['label']}*: {e['note']}"]
    profiled = [e for e in entries if e.get("profile")]
    if profiled:  # the latest profile: [share %, what] rows, and how it was taken
        last = profiled[-1]
        lines += ["", f"Where the CPU goes ({last['label']}): {last.get('profile_how', '')}", ""]
        lines += ["| share | where |", "|---|---|"]
        lines += [f"| {share:.1f}% | {what} |" for share, what in last["profile"]]
    return "\n".join(lines)


def write_docs(entries: list[dict[str, Any]], path: Path = OUTPUT) -> None:
    write_section(path, SECTION, render(entries))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="independent runs (fresh apps each)")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--callgrind", type=int, default=0, metavar="N", help="also count instructions over N requests")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU-time runs (with --callgrind)")
    parser.add_argument("--label", default="", help="name of this measurement in bench/results/inproc.json")
    parser.add_argument("--write", action="store_true", help=f"write the {SECTION} section of docs/benchmarks.md")
    parser.add_argument("--apps", default=",".join(APPS), help="which apps to measure (comma-separated)")
    # the callgrind child
    parser.add_argument("--child-callgrind", default="", help=argparse.SUPPRESS)
    parser.add_argument("--nginx", default="", help=argparse.SUPPRESS)
    parser.add_argument("--redis", default="", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop nginx and Redis on the way out
    if args.child_callgrind:
        _runner()(
            count_instructions(args.nginx, args.redis, Path(args.run_dir), args.requests, args.warmup, args.child_callgrind)
        )
        return 0
    apps = tuple(a for a in args.apps.split(",") if a)
    nginx = ensure_tools(("nginx",))["nginx"]
    services = Services()
    run_dir = Path(tempfile.mkdtemp(prefix="switchyard-inproc-"))
    entry: dict[str, Any] = {
        "label": args.label or "unlabelled",
        "revision": _revision(),
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "requests": args.requests,
        "rounds": args.rounds,
        "runs": args.runs,
        "concurrency": args.concurrency,
    }
    try:
        nginx_base = start_nginx(services, nginx, run_dir)
        redis_url = start_redis(services, run_dir)
        if not args.no_cpu:
            runs = []
            for number in range(args.runs):
                print(f"run {number + 1}/{args.runs}", flush=True)
                run_path = run_dir / f"run{number}"
                run_path.mkdir()
                runs.append(
                    _runner()(
                        measure(nginx_base, redis_url, run_path, args.requests, args.rounds, args.warmup, args.concurrency, apps)
                    )
                )
            if "switchyard" in apps:
                each = [r["switchyard"] for r in runs]
                entry["cpu_us"] = {"median": statistics.median(each), "runs": each}
            if "passthrough" in apps:
                entry["passthrough_cpu_us"] = statistics.median(r["passthrough"] for r in runs)
            entry["samples"] = [r["samples"] for r in runs]
        if args.callgrind:
            entry["instructions"] = {}
            for name in apps:
                run_path = run_dir / f"callgrind-{name}"
                run_path.mkdir()
                print(f"callgrind: {args.callgrind} requests of {name} ...", flush=True)
                entry["instructions"][name] = callgrind(nginx_base, redis_url, run_path, args.callgrind, name)
            entry["callgrind_requests"] = args.callgrind
        entry["load_end"] = round(os.getloadavg()[0], 2)
    finally:
        services.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps({k: v for k, v in entry.items() if k != "samples"}, indent=1))
    if args.label:
        save_result(entry)
    if args.write:
        write_docs(load_results())
        print(f"wrote the {SECTION} section of {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

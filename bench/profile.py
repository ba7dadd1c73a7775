"""Profile a proxy under load with py-spy and summarise where the time goes.

``python -m bench.profile [--duration 10] [--connections 50] [--target switchyard|passthrough]``
starts nginx and the target, drives small chat requests with wrk, samples the worker with
``py-spy record --format raw`` and prints: own time by package, inclusive time of the request
path's functions, and the hottest functions by own time. The raw collapsed stacks are kept in
``bench/results/profile-<target>.txt`` (feed them to flamegraph.pl or speedscope).

py-spy is in the ``dev`` extra (``pip install -e '.[dev]'``); as non-root it may need
``--cap-add SYS_PTRACE`` in a container.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Own time is charged to the innermost frame from one of these packages (so a stdlib call such as
# uuid4 or asyncio.timeout counts for the package that made it). py-spy names files relative to
# sys.path ("gateway/proxy.py", "aiohttp/client.py", "asyncio/tasks.py").
BUCKETS = [
    ("gateway/ (Switchyard service)", ("gateway/",)),
    ("routing/ (classification, planning)", ("routing/",)),
    ("providers/ (upstream adapters)", ("providers/",)),
    ("aiohttp (upstream client)", ("aiohttp/", "yarl/", "multidict/")),
    ("starlette / fastapi (routing, requests, responses)", ("starlette/", "fastapi/", "anyio/")),
    ("uvicorn (HTTP server, httptools)", ("uvicorn/", "httptools/")),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("bench/ (pass-through)", ("bench/",)),
]
LOOP = "event loop (uvloop internals, socket I/O)"


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _short(file: str) -> str:
    file = re.sub(r":\d+$", "", file)
    for marker in ("site-packages/", "/lib/python3.11/", "/lib/python3.12/", "/lib/python3.13/"):
        if marker in file:
            return file.split(marker, 1)[1]
    for marker in ("/gateway/", "/routing/", "/providers/", "/bench/"):
        if marker in file:
            return marker.strip("/") + "/" + file.split(marker, 1)[1]
    return file


def _parse(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if not match:
        return frame, ""
    return match.group("func"), match.group("file") or ""


def _bucket(frames: list[tuple[str, str]]) -> str:
    if frames and frames[-1][0] == "Runner.run":
        return LOOP
    for _, file in reversed(frames):
        for label, prefixes in BUCKETS:
            if file.startswith(prefixes) or any(f"/{p}" in file for p in prefixes):
                return label
    return "other (stdlib at top level)"


def summarise(raw: str, rate: int, duration_s: float) -> dict[str, Any]:
    """Shares of the event-loop thread's samples (own time by package, inclusive time of the
    request path, hottest functions) and each other thread's CPU, from py-spy's raw output
    recorded with ``--threads`` (without ``--idle``: a sample is a moment the thread was running)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = "MainThread"
        if parts and parts[0].startswith("thread ("):
            thread = re.sub(r"[-_]?\d+", "", parts[0].split(": ", 1)[-1]) or "?"
        frames = [_parse(f) for f in parts if not f.startswith(("process ", "thread ("))]
        threads[thread] += count
        if thread != "MainThread" or not frames:
            continue
        names = [f"{func} ({_short(file)})" for func, file in frames]
        total += count
        own[names[-1]] += count
        buckets[_bucket(frames)] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        raise RuntimeError("py-spy recorded no samples of the event-loop thread")
    pct = 100.0 / total
    path_funcs = [
        (n, c)
        for n, c in inclusive.most_common()
        if any(f"({p}/" in n for p in ("gateway", "routing", "providers")) and "gateway/cli.py" not in n
    ]
    expected = rate * duration_s
    return {
        "samples": total,
        "loop_busy_pct": min(100.0, total / expected * 100) if expected else 0.0,
        "threads": [(name, c / expected * 100) for name, c in threads.most_common() if name != "MainThread"],
        "areas": [(label, c * pct) for label, c in buckets.most_common()],
        "request_path": [(n, c * pct) for n, c in path_funcs[:16]],
        "top": [(n, c * pct, inclusive[n] * pct) for n, c in own.most_common(20)],
    }


def record(pid: int, duration_s: float, out: Path, rate: int = 200) -> str:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[dev]' or pip install py-spy)")
    argv = [exe, "record", "-p", str(pid), "-d", str(int(duration_s)), "-r", str(rate), "-f", "raw", "-o", str(out), "--threads"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
    return out.read_text()


def profile_under_load(pid: int, load: Any, duration_s: float, name: str, rate: int = 200) -> dict[str, Any]:
    """Run ``load()`` (a blocking wrk run slightly longer than ``duration_s``) while py-spy samples ``pid``."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-{name}.txt"
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            load()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        import time

        time.sleep(1.0)  # let the load reach steady state
        raw = record(pid, duration_s, out, rate)
    finally:
        thread.join()
    if errors:
        raise RuntimeError(f"load during profiling failed: {errors[0]}")
    summary = summarise(raw, rate, duration_s)
    summary.update({"tool": f"{rate} Hz, raw stacks in bench/results/{out.name}", "duration_s": duration_s})
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\n{summary['samples']} samples of the event-loop thread, busy {summary['loop_busy_pct']:.0f}% of the time")
    for name, busy in summary["threads"]:
        print(f"  other thread {name}: busy {busy:.0f}% of the time")
    print("\nown time by package:")
    for label, p in summary["areas"]:
        print(f"  {p:5.1f}%  {label}")
    print("\ninclusive time, request path:")
    for name, p in summary["request_path"]:
        print(f"  {p:5.1f}%  {name}")
    print("\nhottest functions (own %, inclusive %):")
    for name, own, inc in summary["top"]:
        print(f"  {own:5.1f}% {inc:5.1f}%  {name}")


def main() -> None:
    from bench.procs import Services, ensure_tools, raise_fd_limit
    from bench.scenarios import Bench, Plan
    from bench.targets import start_passthrough, start_switchyard
    from bench.upstreams import start_nginx, start_stream_upstream

    parser = argparse.ArgumentParser(description="profile a proxy under wrk load with py-spy")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--target", choices=["switchyard", "passthrough"], default="switchyard")
    parser.add_argument("--prompt-kb", type=int, default=0, help="a prompt of this many KB instead of a short question")
    args = parser.parse_args()
    tools = ensure_tools()
    raise_fd_limit()
    services = Services()
    run_dir = Path(tempfile.mkdtemp(prefix="switchyard-profile-"))
    try:
        nginx = start_nginx(services, tools["nginx"], run_dir)
        stream = start_stream_upstream(services, run_dir, tokens=20, interval_ms=5, first_token_ms=0)
        target = (start_switchyard if args.target == "switchyard" else start_passthrough)(services, run_dir, nginx, stream)
        bench = Bench(tools["wrk"], run_dir, Plan(), [target], stream)
        from bench.scenarios import QUESTION, big_prompt_text

        body = bench.chat_body(target, big_prompt_text(args.prompt_kb * 1024) if args.prompt_kb else QUESTION)
        bench.wrk_run(target, target.chat_url, body, args.connections, 3)  # warm-up
        assert target.service is not None
        summary = profile_under_load(
            target.service.pid,
            lambda: bench.wrk_run(target, target.chat_url, body, args.connections, args.duration + 3),
            args.duration,
            args.target,
            args.rate,
        )
        print_summary(summary)
    finally:
        services.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

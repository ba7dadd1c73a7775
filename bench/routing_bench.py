"""Classification + planning latency of the router, by prompt size.

Run: ``.venv/bin/python -m bench.routing_bench [--quick]``. Prints a markdown table and writes it
to ``docs/benchmarks-routing.md``. Each sample is one ``Router.plan`` call -- content extraction,
every sensitivity detector, the task heuristic, token estimate, rule matching and ranking -- over
a chat request whose user message is realistic prose, code and numbers with planted entities.

The detectors remember what they scanned (by content hash), so three cases are measured:
*cold* -- every sample's text is new (a unique prefix), the cost of a first sight; *repeat* --
the same request again; *new turn* -- a chat whose earlier turns (64 KB) were classified
before, plus a new user turn of the given size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import random
import time
from pathlib import Path

from bench.sections import carry_sections
from routing.router import Router
from routing.spec import Route, RoutingDefaults, Rule, SensitivityPolicy
from routing.types import DeploymentProfile, Prices, RoutingRequest

SIZES_KB = (1, 4, 64, 256)
TARGET_P99_MS_AT_4KB = 0.1  # issue 12
TARGET_US_PER_KB_BEYOND = 5.0
HISTORY_TURNS = 16  # x 4 KB of earlier turns in the "new turn" case
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-routing.md"

_PROSE = (
    "The quarterly review covered the migration of the billing service to the new cluster.",
    "Latency at the 99th percentile dropped from 340 ms to 120 ms after the cache was warmed.",
    "Please make sure the release notes mention the breaking change in version 2.4.1 of the SDK.",
    "Order 20231107-5531 shipped on 2023-11-07 and the invoice total was $1,249.99 including tax.",
    "We agreed to revisit the retention policy once legal has reviewed the draft in January.",
    "The ISBN of the reference book is 978-0-306-40615-7 and it costs 45 EUR in the shop.",
    "Commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed the race in the connection pool.",
    "Request a4c3e0b2-7d1f-4e8a-9b6c-2f1e0d3c4b5a timed out at 14:32:05 on the second retry.",
    "Customers in the pilot asked for exports in CSV as well as the dashboard view of spend.",
    "Run the job with 8 workers and a batch size of 256; the whole backfill takes about 3 hours.",
)
_CODE = (
    "```python\ndef settle(reservation, usage):\n    cost = usage.prompt * price.input + usage.completion * price.output\n"
    "    return reservation.release(cost)\n```"
)
_PLANTED = (
    "Contact jane.doe@example.com or call +44 20 7946 0958 about it.",
    "The staging host is 10.20.30.40 behind the VPN.",
    "Card on file: 4111 1111 1111 1111, expiry 12/27.",
)


def realistic_text(size: int, seed: int = 7) -> str:
    """About ``size`` bytes of prose, code blocks and numbers, with every planted entity once."""
    rng = random.Random(seed)
    budget = size - sum(len(p) + 1 for p in _PLANTED)
    parts: list[str] = []
    length = 0
    while length < budget:
        piece = _CODE if rng.random() < 0.08 else rng.choice(_PROSE)
        parts.append(piece)
        length += len(piece) + 1
    for i, planted in enumerate(_PLANTED, start=1):
        parts.insert(len(parts) * i // (len(_PLANTED) + 1), planted)
    return " ".join(parts)[:size]


def bench_router() -> Router:
    deployments = [
        DeploymentProfile("local-small", "llamacpp", "smollm2", "self_hosted", frozenset({"chat", "completions"}), 8192, 1),
        DeploymentProfile(
            "vllm-8b",
            "openai_compatible",
            "llama-8b",
            "self_hosted",
            frozenset({"chat", "completions", "tools", "json_schema"}),
            131072,
            3,
            Prices(0.28, 0.28),
            400,
        ),
        DeploymentProfile(
            "gpt-4o-mini",
            "litellm",
            "openai/gpt-4o-mini",
            "hosted",
            frozenset({"chat", "tools", "vision", "json_schema"}),
            128000,
            4,
            Prices(0.15, 0.6),
            600,
        ),
        DeploymentProfile(
            "claude-haiku",
            "litellm",
            "anthropic/claude-3-5-haiku",
            "hosted",
            frozenset({"chat", "tools", "vision"}),
            200000,
            4,
            Prices(0.8, 4.0),
            700,
        ),
    ]
    route = Route(
        name="auto",
        objective="cheapest",
        candidates=[d.name for d in deployments],
        rules=[
            Rule(
                name="keep-private-data-home",
                when={"sensitivity": ["confidential", "restricted"]},
                allow={"locality": ["self_hosted"]},
            ),
            Rule(name="code-to-coder", when={"task": ["code"]}, prefer=["vllm-8b"]),
        ],
    )
    policy = SensitivityPolicy(detectors=[{"name": "project-names", "level": "internal", "keywords": ["falcon", "bluebird"]}])
    return Router([route], deployments, policy, RoutingDefaults())


def bench_request(size_kb: int, tag: int | None = None, history: list[dict] | None = None) -> RoutingRequest:
    text = realistic_text(size_kb * 1024)
    if tag is not None:
        text = f"[{tag}] {text}"
    return RoutingRequest(
        "auto",
        "chat",
        {
            "messages": [
                {"role": "system", "content": "You are a careful assistant for the platform team."},
                *(history or []),
                {"role": "user", "content": text},
            ],
            "max_tokens": 512,
        },
    )


def history() -> list[dict]:
    turns = []
    for i in range(HISTORY_TURNS):
        turns.append({"role": "user", "content": realistic_text(4096, seed=100 + i)})
        turns.append({"role": "assistant", "content": realistic_text(512, seed=200 + i)})
    return turns


HEALTH = {"local-small": True, "vllm-8b": True, "gpt-4o-mini": True, "claude-haiku": False}


def measure(router: Router, size_kb: int, samples: int, mode: str = "cold", rounds: int = 5) -> list[list[float]]:
    """Milliseconds per ``plan`` call, in ``rounds`` separate rounds of ``samples // rounds`` calls."""
    health = HEALTH
    earlier = history() if mode == "new turn" else None
    if mode == "repeat":
        requests = [bench_request(size_kb)] * samples
    else:  # every sample's user turn is new text
        offset = {"cold": 0, "new turn": 1_000_000}[mode] + size_kb * 10_000  # never a text seen before
        requests = [bench_request(size_kb, tag=offset + i, history=earlier) for i in range(samples)]
    warm = bench_request(size_kb, tag=-1, history=earlier)
    for _ in range(max(5, samples // 20)):
        router.plan(warm if mode != "repeat" else requests[0], health)
    results = []
    position = 0
    for _ in range(rounds):
        gc.collect()
        timings = []
        for _ in range(samples // rounds):
            request = requests[position]
            position += 1
            start = time.perf_counter_ns()
            router.plan(request, health)
            timings.append((time.perf_counter_ns() - start) / 1e6)
        results.append(timings)
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def _rows(router: Router, samples: dict[int, int], mode: str) -> list[tuple]:
    rows = []
    for size in SIZES_KB:
        rounds = measure(router, size, samples[size], mode)
        timings = [t for r in rounds for t in r]
        p50, p99 = percentile(timings, 0.50), percentile(timings, 0.99)
        best_p99 = min(percentile(r, 0.99) for r in rounds)
        rows.append((size, len(timings), p50, p99, best_p99, p50 * 1000 / size))
    return rows


def _table(rows: list[tuple]) -> list[str]:
    return [
        "| prompt | samples | p50 (ms) | p99 (ms) | p99, quietest round (ms) | p50 per KB (µs) |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {size} KB | {n} | {p50:.3f} | {p99:.3f} | {best:.3f} | {per_kb:.1f} |" for size, n, p50, p99, best, per_kb in rows),
    ]


def run(quick: bool = False) -> str:
    router = bench_router()
    samples = {1: 3000, 4: 3000, 64: 300, 256: 100}
    if quick:
        samples = {k: max(20, v // 10) for k, v in samples.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cold = _rows(router, samples, "cold")
    repeat = _rows(router, samples, "repeat")
    turn = _rows(router, samples, "new turn")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    p99_4kb = next(r[3] for r in cold if r[0] == 4)
    per_kb_beyond = (cold[-1][2] - next(r[2] for r in cold if r[0] == 4)) * 1000 / (SIZES_KB[-1] - 4)
    sample = router.plan(bench_request(4), HEALTH)
    found = ", ".join(f"{h.entity} x{h.count}" for h in sample.signals.detections) or "nothing"
    verdict = "meets" if p99_4kb <= TARGET_P99_MS_AT_4KB else "misses"
    verdict_kb = "meets" if per_kb_beyond <= TARGET_US_PER_KB_BEYOND else "misses"
    lines = [
        "# Routing benchmark: classification + planning",
        "",
        "Generated by `python -m bench.routing_bench`; do not edit by hand.",
        "",
        f"- date: {now}",
        f"- machine: {machine()}",
        f"- python: {platform.python_implementation()} {platform.python_version()}",
        f"- load average (1 min) when the run started: {load:.2f} -- the machine is shared",
        "- one sample = one `Router.plan` call: content extraction, all built-in detectors plus one admin",
        "  keyword detector, task heuristic, token estimate, rule matching, ranking (4 deployments, 2 rules)",
        "- prompt: prose, code blocks, dates, prices, ISBNs, git SHAs, UUIDs, with planted email, phone,",
        "  IP and card numbers",
        f"- the 4 KB request is classified {sample.signals.sensitivity.label} / {sample.signals.task} ({found})",
        f"  and planned onto {', '.join(sample.deployments)}",
        "",
        "## Cold: every sample's text is new to the scan cache",
        "",
        *_table(cold),
        "",
        "## Repeat: the same request again (scan cache hits)",
        "",
        *_table(repeat),
        "",
        f"## New turn: {HISTORY_TURNS} earlier turns (about 72 KB) classified before, plus a new user turn of this size",
        "",
        *_table(turn),
        "",
        f"Target (issue 12): p99 <= {TARGET_P99_MS_AT_4KB} ms at 4 KB cold -- this run {verdict} it ({p99_4kb:.3f} ms);",
        f"<= {TARGET_US_PER_KB_BEYOND:g} µs per KB beyond 4 KB cold -- this run {verdict_kb} it ({per_kb_beyond:.1f} µs/KB).",
        "",
        "p50 and p99 are over all samples; each size is measured in 5 rounds, and the quietest round's p99",
        "shows how much of the tail is other processes on the machine rather than the router.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the samples (smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ untouched")
    args = parser.parse_args()
    table = run(quick=args.quick)
    print(table)
    if not args.no_write:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        old = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        OUTPUT.write_text(carry_sections(old, table), encoding="utf-8")  # hand-run sections stay


if __name__ == "__main__":
    main()

"""Render one run's results (``bench/results/last-run.json``) as docs/benchmarks.md."""

from __future__ import annotations

import math
from typing import Any

# Issue 12's targets, judged on HEADLINE (every feature on) in the same run as the peers.
TARGETS = {
    "vs_passthrough": 0.5,  # req/s at 50 connections, at least this share of the bare pass-through
    "vs_litellm": 25.0,  # ... at least this many times the LiteLLM proxy's
    "vs_portkey": 2.0,  # ... at least this many times Portkey's
    "cpu_us_per_req": 250.0,  # CPU time of the gateway process per request at 50 connections
    "added_p50_ms_1": 0.3,  # added latency over direct at 1 connection (no queueing)
    "added_p99_ms_1": 1.0,
    "ttft_overhead_ms": 1.0,  # one stream alone, p50, over direct
    "workers_2x": 1.8,  # --workers 2 over one worker
    "routing_p99_ms_4kb": 0.1,  # classification + plan, bench/routing_bench.py, cold
    "routing_us_per_kb": 5.0,  # ... per KB beyond 4 KB
    "rss_growth_pct": 10.0,  # "flat" over 200,000 requests
}
HEADLINE = "switchyard+features+redis"  # virtual key with a budget, Redis admission, SQLite ledger, routing
PEERS = ("litellm", "portkey")


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _get(results: dict[str, Any], section: str, target: str, key: str) -> Any:
    return results.get(section, {}).get(target, {}).get(key)


def _diff(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    return a - b


def _ratio(a: Any, b: Any) -> float | None:
    if not a or not b:
        return None
    return a / b


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def switchyard_names(results: dict[str, Any]) -> list[str]:
    return [t for t in results["targets"] if t.startswith("switchyard")]


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def target_rows(results: dict[str, Any], name: str = HEADLINE) -> list[tuple[str, str, str, bool | None]]:
    """(target, goal, measured, met) for every issue-12 target; met is None when not judged."""
    T = TARGETS
    rows: list[tuple[str, str, str, bool | None]] = []
    rps = _get(results, "chat_50", name, "rps")
    for peer, key, label, fmt in (
        ("passthrough", "vs_passthrough", "the bare pass-through", "{:.2f}"),
        ("litellm", "vs_litellm", "LiteLLM proxy", "{:.1f}x"),
        ("portkey", "vs_portkey", "Portkey", "{:.2f}x"),
    ):
        other = _get(results, "chat_50", peer, "rps")
        r = _ratio(rps, other)
        goal = f">= {T[key]:g}" if peer == "passthrough" else f">= {T[key]:g}x"
        measured = f"{fmt.format(r)} ({_num(rps, 0)} vs {_num(other, 0)} req/s)" if r else "-"
        rows.append((f"throughput at 50 connections vs {label}", goal, measured, None if r is None else r >= T[key]))
    cpu = _get(results, "chat_50", name, "cpu_us_per_req")
    rows.append(
        (
            "CPU per request (50 connections)",
            f"<= {T['cpu_us_per_req']:g} µs",
            f"{_num(cpu, 0)} µs" if cpu else "-",
            None if cpu is None else cpu <= T["cpu_us_per_req"],
        )
    )
    for q, key in (("p50", "added_p50_ms_1"), ("p99", "added_p99_ms_1")):
        d = _diff(_get(results, "chat_1", name, f"{q}_ms"), _get(results, "chat_1", "direct", f"{q}_ms"))
        rows.append(
            (
                f"added latency at 1 connection, {q}",
                f"<= {T[key]:g} ms",
                f"{_num(d, 3)} ms" if d is not None else "-",
                None if d is None else d <= T[key],
            )
        )
    ttft = _diff(_get(results, "stream", name, "ttft1_p50_ms"), _get(results, "stream", "direct", "ttft1_p50_ms"))
    rows.append(
        (
            "TTFT overhead, one stream alone (p50)",
            f"<= {T['ttft_overhead_ms']:g} ms",
            f"{_num(ttft, 2)} ms" if ttft is not None else "-",
            None if ttft is None else ttft <= T["ttft_overhead_ms"],
        )
    )
    w = results.get("workers") or {}
    ratio = _ratio(w.get("rps"), (w.get("single") or {}).get("rps")) if "failed" not in w else None
    judged = ratio is not None and w.get("variant") == name and w.get("workers") == 2
    rows.append(
        (
            "`--workers 2` vs one worker",
            f">= {T['workers_2x']:g}x",
            f"{ratio:.2f}x ({_num(w.get('rps'), 0)} vs {_num((w.get('single') or {}).get('rps'), 0)} req/s)" if ratio else "-",
            (ratio >= T["workers_2x"]) if judged and ratio is not None else None,
        )
    )
    routing = results.get("routing") or {}
    p99 = routing.get("p99_ms_at_4kb")
    rows.append(
        (
            "routing: classification + plan p99 at 4 KB",
            f"<= {T['routing_p99_ms_4kb']:g} ms",
            f"{p99:.3f} ms" if p99 is not None else "-",
            None if p99 is None else p99 <= T["routing_p99_ms_4kb"],
        )
    )
    per_kb = routing.get("us_per_kb_beyond_4kb")
    rows.append(
        (
            "routing: cost per KB beyond 4 KB",
            f"<= {T['routing_us_per_kb']:g} µs/KB",
            f"{per_kb:.1f} µs/KB" if per_kb is not None else "-",
            None if per_kb is None else per_kb <= T["routing_us_per_kb"],
        )
    )
    n = results["plan"]["many_streams"]
    many = results.get("streams_many", {}).get(name)
    if many:
        rows.append(
            (
                f"{n} concurrent streams",
                "0 errors",
                f"{many['completed']}/{n} completed, {many['errors']} errors",
                many["errors"] == 0 and many["completed"] == n,
            )
        )
    else:
        rows.append((f"{n} concurrent streams", "0 errors", "-", None))
    mem = results.get("memory")
    if mem and mem.get("target") == name:
        growth = mem.get("growth_pct")
        full = mem["requests"] >= 200_000
        rows.append(
            (
                "RSS over 200,000 requests",
                f"flat (< {T['rss_growth_pct']:g}% growth)",
                f"{_num(growth)}% over {mem['requests']:,} requests ({_num(mem['rss_before_mb'], 1)} -> "
                f"{_num(mem['rss_after_mb'], 1)} MB)",
                (growth < T["rss_growth_pct"]) if full and growth is not None else None,
            )
        )
    else:
        rows.append(("RSS over 200,000 requests", f"flat (< {T['rss_growth_pct']:g}% growth)", "-", None))
    return rows


def load_line(load: dict[str, Any] | None) -> str:
    """Others' CPU in one line: ``median 3% of a core, p90 8%, max 40% (12 samples); busiest: ...``."""
    if not load or not load.get("samples"):
        return "not sampled"
    busiest = ", ".join(f"{n} {p:.0f}%" for n, p in load.get("busiest", [])) or "nothing over 5%"
    return (
        f"median {_num(load['median_pct'], 0)}% of one core, p90 {_num(load['p90_pct'], 0)}%, max "
        f"{_num(load['max_pct'], 0)}% ({load['samples']} samples); busiest: {busiest}"
    )


def machine_quiet(m: dict[str, Any]) -> bool | None:
    before, during = m.get("others_before"), m.get("others_during")
    verdicts = [x["quiet"] for x in (before, during) if x and x.get("samples")]
    return all(verdicts) if verdicts else None


def summary_lines(results: dict[str, Any]) -> list[str]:
    name = HEADLINE if HEADLINE in results["targets"] else next(iter(switchyard_names(results)), None)
    if name is None:
        return ["Switchyard was not measured in this run."]
    rps = _get(results, "chat_50", name, "rps")
    parts = []
    for peer, label in (
        ("passthrough", "the bare pass-through"),
        ("litellm", "the LiteLLM proxy"),
        ("portkey", "Portkey's gateway"),
    ):
        other = _get(results, "chat_50", peer, "rps")
        r = _ratio(rps, other)
        if r is not None:
            parts.append(f"{r:.2f}x {label} ({_num(other, 0)} req/s)")
        else:
            parts.append(f"{label}: not measured")
    rows = target_rows(results, name) if name == HEADLINE else []
    met = sum(1 for *_, ok in rows if ok)
    judged = sum(1 for *_, ok in rows if ok is not None)
    out = [
        f"With every feature on (`{name}`), Switchyard served **{_num(rps, 0)} req/s** at 50 connections on one "
        f"worker: {'; '.join(parts)}. CPU per request: {_num(_get(results, 'chat_50', name, 'cpu_us_per_req'), 0)} µs "
        f"(LiteLLM {_num(_get(results, 'chat_50', 'litellm', 'cpu_us_per_req'), 0)} µs, Portkey "
        f"{_num(_get(results, 'chat_50', 'portkey', 'cpu_us_per_req'), 0)} µs)."
    ]
    if rows:
        out.append("")
        out.append(f"Issue 12's targets: **{met} of {judged} judged met** ({len(rows) - judged} not judged in this run).")
    return out


def render(results: dict[str, Any]) -> str:
    m = results["meta"]
    plan = results["plan"]
    targets = list(results["targets"])
    quiet = machine_quiet(m)
    L: list[str] = []
    L.append("# Switchyard benchmarks")
    L.append("")
    L.append(
        f"Generated by `{m['command']}` on {m['date']}; every figure below comes from that one run "
        "(`bench/results/last-run.json` holds the raw per-round data). Do not edit by hand: rerun "
        "`make bench` to refresh it. Sections between `<!-- name:start/end -->` markers are written by other "
        "benchmarks and kept as they are."
    )
    if quiet is False:
        L.append("")
        L.append(
            f"> **Taken on a busy machine.** Other processes used {load_line(m.get('others_during'))} while it "
            f"ran (before it: {load_line(m.get('others_before'))}). Under load from others the ratios between "
            "targets swung 2x in round 1: do not judge the targets from this run; rerun on a quiet machine "
            "(`python -m bench --require-quiet`)."
        )
    if m.get("quick"):
        L.append("")
        L.append(
            "> **Quick run** (`--quick`): shorter measurements and fewer requests; use it to smoke-test the "
            "harness, not to judge the targets."
        )
    L.append("")
    L.append("## Summary")
    L.append("")
    L += summary_lines(results)
    L.append("")
    L.append(
        "Machine: "
        + ("**quiet**" if quiet else "**busy**" if quiet is False else "not checked")
        + f" (other processes' CPU before the run: {load_line(m.get('others_before'))}; during it: "
        f"{load_line(m.get('others_during'))}; quiet means a median of at most "
        f"{m.get('quiet_rule', {}).get('median_pct', '-')}% of one core and a 90th percentile of at most "
        f"{m.get('quiet_rule', {}).get('p90_pct', '-')}%)."
    )
    L.append("")

    # ------------------------------------------------------------ targets
    L.append("## Targets (issue 12)")
    L.append("")
    if HEADLINE not in targets:
        L.append(f"`{HEADLINE}` was not measured in this run, so no target is judged.")
    else:
        L.append(
            f"Judged on `{HEADLINE}` (a virtual key with a budget, Redis admission, the SQLite ledger, "
            "sensitivity routing over two candidates), one worker, in this run beside the peers."
        )
        L.append("")
        L += _table(
            ["target", "goal", "measured", "met"],
            [[t, g, v, _mark(ok).strip() or "not judged"] for t, g, v, ok in target_rows(results)],
        )
        L.append("")
        L.append(
            "✅ met, ❌ not met; *not judged*: not measured in this run (or a `--quick` run too short for the memory "
            "target). Routing figures come from `python -m bench.routing_bench`, run inside this run; its *cold* "
            "table when it has one."
        )
    L.append("")
    for name, reason in results.get("unavailable", {}).items():
        L.append(f"- **{name}** not measured: {reason}")
    for name, reasons in results.get("skipped", {}).items():
        for scenario, reason in reasons.items():
            L.append(f"- **{name}** left out of *{scenario}*: {reason}")
    if results.get("unavailable") or results.get("skipped"):
        L.append("")

    # ------------------------------------------------------------ machine
    L.append("## Machine")
    L.append("")
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    rows = [
        ["CPU", f"{m['cpu']}, {m['cores']} cores"],
        ["RAM", f"{m['ram_gb']} GB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["packages", pk],
        ["load tools", f"{m['wrk'].split(' Copyright')[0]}; {m['nginx']}"],
        ["LiteLLM", m.get("litellm") or "not measured"],
        ["Portkey", m.get("portkey") or "not measured"],
        ["revision", m["revision"]],
        ["other processes, before", load_line(m.get("others_before"))],
        ["other processes, during", load_line(m.get("others_during"))],
        ["load average", f"{m['load_start']} at start, {m['load_end']} at end (includes this run's own load)"],
        ["wall time", f"{m['wall_s'] / 60:.1f} min"],
    ]
    L += _table(["", ""], rows)
    L.append("")
    L.append(
        "Everything runs on this one machine at once: the load driver, nginx, the stream upstream and the "
        "proxy under test share the cores, so absolute figures are lower than on a dedicated box and "
        "every comparison is between targets measured in the same run, interleaved round by round. "
        "*Other processes* is the CPU of every process that is not part of this run, sampled every 2 s."
    )
    L.append("")

    # ------------------------------------------------------------ setup
    L.append("## Setup")
    L.append("")
    L.append(
        f"- **Upstreams** (shared by every target): nginx `return 200` with a fixed chat completion "
        f"({results['upstream']['chat_bytes']} bytes) and a fixed 384-dim embedding ({results['upstream']['embed_bytes']} bytes); "
        "`bench/stream_upstream.py` (aiohttp + uvloop) for streams, one SSE event per token on an absolute schedule."
    )
    L.append(
        f"- **Load**: wrk, 1 thread, a Lua script POSTing the body (keep-alive); {plan['duration_s']:.0f} s per "
        f"measurement after a {plan['warmup_s']:.0f} s warm-up; headline figures are the median of "
        f"{plan['rounds']} interleaved rounds. Streams: `bench/streams.py` (aiohttp)."
    )
    L.append("- **Targets**, one worker each:")
    for name, note in results["targets"].items():
        L.append(f"  - `{name}`: {note}")
    L.append(
        "- Switchyard's bench config (`bench/targets.py: switchyard_config`) routes `auto` over a self-hosted and "
        "a hosted deployment of the same upstream, with the two rules of `config.example.yaml`, a project budget "
        "and limits, and `max_connections: 1024` per deployment: with the default 256, streams beyond 256 per "
        "deployment wait for a free upstream connection (they are not refused), which would hide the 500-stream "
        "result behind that queue."
    )
    L.append(
        "- *1 connection* is the per-request service time with no queueing: the *added latency* target. "
        "*10 connections* is closed-loop (wrk sends the next request as soon as one returns), so latency there "
        "includes queueing inside a saturated single-worker proxy; it is shown for information only."
    )
    L.append(
        "- Peers get the same upstreams: the LiteLLM proxy through its config file, Portkey through its "
        "`x-portkey-provider: openai` and `x-portkey-custom-host` request headers."
    )
    L.append("")

    # ------------------------------------------------------------ chat
    L.append("## Small non-stream chat")
    L.append("")
    rows = []
    for t in targets:
        rps = _get(results, "chat_50", t, "rps")
        spread = f"{_num(_get(results, 'chat_50', t, 'rps_min'), 0)}-{_num(_get(results, 'chat_50', t, 'rps_max'), 0)}"
        rows.append(
            [
                f"`{t}`",
                _num(rps, 0),
                spread,
                _num(_get(results, "chat_50", t, "cpu_us_per_req"), 0),
                _num(_get(results, "chat_1", t, "p50_ms"), 3),
                _num(_get(results, "chat_1", t, "p99_ms"), 3),
                _num(_diff(_get(results, "chat_1", t, "p50_ms"), _get(results, "chat_1", "direct", "p50_ms")), 3),
                _num(_diff(_get(results, "chat_1", t, "p99_ms"), _get(results, "chat_1", "direct", "p99_ms")), 3),
                _num(_get(results, "chat_10", t, "p50_ms")),
                _num(_get(results, "chat_10", t, "p99_ms")),
                _num(sum(_get(results, s, t, "errors") or 0 for s in ("chat_50", "chat_10", "chat_1"))),
            ]
        )
    L += _table(
        [
            "target",
            "req/s @50",
            "range",
            "CPU µs/req",
            "p50 ms @1",
            "p99 ms @1",
            "added p50 @1",
            "added p99 @1",
            "p50 ms @10 (info)",
            "p99 ms @10 (info)",
            "errors",
        ],
        rows,
    )
    L.append("")
    L.append(
        "*CPU µs/req* is the proxy process's own CPU time per request during the 50-connection runs: the cost "
        "of the proxy itself, much less sensitive to other load than req/s. *Added @1* is over `direct` at one "
        "connection."
    )
    L.append("")

    # ------------------------------------------------------------ embeddings
    L.append("## Embeddings")
    L.append("")
    L.append(
        "Embeddings and the 64 KB prompt go through the same code path in every Switchyard variant, so only "
        "`switchyard` is measured there."
    )
    L.append("")
    rows = []
    for t in targets:
        if t not in results.get("embed_50", {}):
            continue
        rows.append(
            [
                f"`{t}`",
                _num(_get(results, "embed_50", t, "rps"), 0),
                _num(_get(results, "embed_50", t, "cpu_us_per_req"), 0),
                _num(_get(results, "embed_10", t, "p50_ms")),
                _num(_get(results, "embed_10", t, "p99_ms")),
                _num(_diff(_get(results, "embed_10", t, "p50_ms"), _get(results, "embed_10", "direct", "p50_ms"))),
                _num((_get(results, "embed_50", t, "errors") or 0) + (_get(results, "embed_10", t, "errors") or 0)),
            ]
        )
    L += _table(["target", "req/s @50", "CPU µs/req", "p50 ms @10", "p99 ms @10", "added p50", "errors"], rows)
    L.append("")

    # ------------------------------------------------------------ stream
    L.append(f"## Stream of {plan['stream_tokens']} tokens")
    L.append("")
    L.append(
        f"Upstream: first token after {plan['first_token_ms']:.0f} ms, then one token every "
        f"{plan['stream_interval_ms']} ms; {plan['stream_count']} streams per target, {plan['stream_concurrency']} at a time "
        f"(*@{plan['stream_concurrency']}* columns), and {plan.get('stream_solo_count', '-')} short streams one at a time "
        "for the time to first token with nothing else in flight (*alone*). "
        "*Coalesced* is the share of inter-token gaps under a quarter of the upstream interval: events that a "
        "buffering proxy delivered together (near 0 means each token is forwarded as it arrives)."
    )
    L.append("")
    rows = []
    direct = results.get("stream", {}).get("direct", {})
    for t in targets:
        s = results.get("stream", {}).get(t)
        if not s:
            continue
        rows.append(
            [
                f"`{t}`",
                _num(s.get("ttft1_p50_ms")),
                _num(_diff(s.get("ttft1_p50_ms"), direct.get("ttft1_p50_ms"))),
                _num(s["ttft_p50_ms"]),
                _num(s["ttft_p99_ms"]),
                _num(_diff(s["ttft_p50_ms"], direct.get("ttft_p50_ms"))),
                _num(s["gap_p50_ms"], 3),
                _num(s["gap_p99_ms"], 3),
                _num(_diff(s["gap_p50_ms"], direct.get("gap_p50_ms")), 3),
                _num(_diff(s["gap_p99_ms"], direct.get("gap_p99_ms")), 3),
                f"{_num(s['burst_pct'], 1)}%",
                _num(s["tokens_mean"], 1),
                f"{s['errors'] + s.get('solo_errors', 0)}",
            ]
        )
    L += _table(
        [
            "target",
            "TTFT p50 ms, alone",
            "TTFT overhead, alone",
            f"TTFT p50 ms @{plan['stream_concurrency']}",
            f"TTFT p99 ms @{plan['stream_concurrency']}",
            f"TTFT overhead @{plan['stream_concurrency']}",
            "gap p50 ms",
            "gap p99 ms",
            "inter-token overhead p50",
            "overhead p99",
            "coalesced",
            "tokens/stream",
            "errors",
        ],
        rows,
    )
    L.append("")

    # ------------------------------------------------------------ many streams
    L.append(f"## {plan['many_streams']} concurrent streams")
    L.append("")
    L.append(
        f"All {plan['many_streams']} streams start at once; each carries {plan['many_tokens']} tokens, one every "
        f"{plan['many_interval_ms']:.0f} ms (~{plan['many_tokens'] * plan['many_interval_ms'] / 1000:.0f} s held). "
        "*Peak open* counts streams whose headers had arrived and that had not finished, at the client and at "
        "the upstream: both at the full count means the proxy held them all at once."
    )
    L.append("")
    rows = []
    for t in targets:
        s = results.get("streams_many", {}).get(t)
        if not s:
            continue
        rows.append(
            [
                f"`{t}`",
                f"{s['completed']}/{s['streams']}",
                str(s["errors"]),
                str(s["peak_open"]),
                str(s.get("upstream_peak_open", "-")),
                _num(s["ttft_p50_ms"]),
                _num(s["ttft_p99_ms"]),
                _num(s["gap_p99_ms"]),
                _num(s["wall_s"], 1),
                _num(s.get("rss_mb"), 1),
                (s.get("server_error") or (s["error_samples"][0][:100] if s["error_samples"] else "")).replace("|", "/"),
            ]
        )
    L += _table(
        [
            "target",
            "completed",
            "errors",
            "peak open (client)",
            "peak open (upstream)",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "gap p99 ms",
            "wall s",
            "RSS MB",
            "errors: why",
        ],
        rows,
    )
    L.append("")

    # ------------------------------------------------------------ 64 KB
    L.append("## 64 KB prompt (routing classification cost)")
    L.append("")
    rows = []
    for t in targets:
        if t not in results.get("prompt64_1", {}):
            continue
        p1 = _get(results, "prompt64_1", t, "p50_ms")
        rows.append(
            [
                f"`{t}`",
                _num(p1, 3),
                _num(_diff(p1, _get(results, "prompt64_1", "direct", "p50_ms")), 3),
                _num(_diff(p1, _get(results, "chat_1", t, "p50_ms")), 3),
                _num(_get(results, "prompt64_10", t, "rps"), 0),
                _num(_get(results, "prompt64_10", t, "p50_ms")),
                _num(_get(results, "prompt64_10", t, "p99_ms")),
                _num(_get(results, "prompt64_10", t, "cpu_us_per_req"), 0),
                _num((_get(results, "prompt64_1", t, "errors") or 0) + (_get(results, "prompt64_10", t, "errors") or 0)),
            ]
        )
    L += _table(
        [
            "target",
            "p50 ms @1",
            "added vs direct",
            "extra vs small prompt",
            "req/s @10",
            "p50 ms @10",
            "p99 ms @10",
            "CPU µs/req",
            "errors",
        ],
        rows,
    )
    L.append("")
    cls = results.get("classification", {})
    if "failed" in cls:
        L.append(f"In-process classification timing failed: {cls['failed']}")
    elif cls:
        L.append(
            "In-process, the same config's router (`orjson.loads` of the body, then `Router.plan`: detectors, "
            "task heuristic, token estimate, rules, ranking):"
        )
        L.append("")
        L += _table(
            ["body", "bytes", "parse µs p50", "plan µs p50", "plan µs p99"],
            [
                [k, _num(v["bytes"]), _num(v["parse_us_p50"], 1), _num(v["plan_us_p50"], 1), _num(v["plan_us_p99"], 1)]
                for k, v in cls.items()
            ],
        )
    L.append("")

    # ------------------------------------------------------------ memory
    mem = results.get("memory")
    L.append("## Memory over a long run")
    L.append("")
    if mem:
        L.append(
            f"`{mem['target']}` after every scenario above (so warmed up), then {mem['requests']:,} more small chat "
            "requests at 50 connections, in wrk runs of up to 30 s; RSS of the whole process tree before, after "
            "each run and at the end."
        )
        L.append("")
        L += _table(
            ["requests", "errors", "req/s", "p50 ms", "p99 ms", "RSS at start", "RSS before", "RSS peak", "RSS after", "growth"],
            [
                [
                    _num(mem["requests"]),
                    _num(mem["errors"]),
                    _num(mem["rps"], 0),
                    _num(mem["p50_ms"]),
                    _num(mem["p99_ms"]),
                    f"{_num(mem['rss_cold_mb'], 1)} MB",
                    f"{_num(mem['rss_before_mb'], 1)} MB",
                    f"{_num(mem['rss_peak_mb'], 1)} MB",
                    f"{_num(mem['rss_after_mb'], 1)} MB",
                    f"{_num(mem['growth_pct'])}%",
                ]
            ],
        )
        L.append("")
        L.append("RSS after each run (MB): " + ", ".join(_num(v, 1) for v in mem.get("rss_curve_mb", [])))
        if mem.get("ledger_queue"):
            L.append("")
            L.append(
                "Ledger rows queued in memory, waiting for the database (`switchyard_ledger_queue_depth` "
                "from `/metrics`, before, after each run, and 1 s after the last): "
                + ", ".join(_num(v) for v in mem["ledger_queue"])
            )
    else:
        L.append("Not measured in this run.")
    L.append("")

    # ------------------------------------------------------------ workers
    w = results.get("workers")
    L.append("## `--workers N`")
    L.append("")
    if w and "failed" not in w:
        one = w.get("single") or {}
        ratio = _ratio(w.get("rps"), one.get("rps"))
        L.append(
            f"`{w.get('variant', 'switchyard')}` (several workers need `redis_url`, so budgets and limits are shared), "
            "one worker and then several, alternating, small chat at 50 connections:"
        )
        L.append("")
        L += _table(
            ["workers", "req/s @50", "vs 1 worker", "CPU µs/req", "p50 ms", "p99 ms", "RSS MB"],
            [
                [
                    "1",
                    _num(one.get("rps"), 0),
                    "1.00x" if one else "-",
                    _num(one.get("cpu_us_per_req"), 0),
                    _num(one.get("p50_ms")),
                    _num(one.get("p99_ms")),
                    _num(one.get("rss_mb"), 1),
                ],
                [
                    str(w["workers"]),
                    _num(w.get("rps"), 0),
                    f"{_num(ratio)}x" if ratio else "-",
                    _num(w.get("cpu_us_per_req"), 0),
                    _num(w.get("p50_ms")),
                    _num(w.get("p99_ms")),
                    _num(w.get("rss_mb"), 1),
                ],
            ],
        )
        L.append("")
        L.append(
            f"On this {m['cores']}-core machine the load driver, nginx and Redis take CPU too, so a second worker "
            "can only use what they leave. Recommended: one worker per core the gateway may use on a "
            "dedicated host (`--workers $(nproc)`, with `redis_url`), or one worker per container/pod with "
            "replicas scaled horizontally behind a load balancer."
        )
    elif w:
        L.append(f"Not measured: {w['failed']}")
    else:
        L.append("Not measured in this run.")
    L.append("")

    # ------------------------------------------------------------ regression
    L.append("## Regression check")
    L.append("")
    from bench.regression import DEFAULT_THRESHOLD

    runs = {
        t: [r["rps"] for r in results.get("chat_50", {}).get(t, {}).get("runs", []) if "rps" in r]
        for t in ("switchyard", "passthrough")
    }
    if runs["switchyard"] and runs["passthrough"]:
        ratio = max(runs["switchyard"]) / max(runs["passthrough"])
        L.append(
            f"`python -m bench.regression` (and `tests/bench/test_regression.py`, marked slow, ~1 min: the gateway as it "
            "is must pass, and slowed down 2x with `--slowdown 2` must fail) compares "
            "Switchyard's best 2 s round with the bare pass-through's, alternating, at 50 connections, and fails "
            f"under {DEFAULT_THRESHOLD:.2f}. In this run the same ratio (best round of each) is **{ratio:.3f}**: "
            f"{ratio / DEFAULT_THRESHOLD:.2f}x the threshold, and a 2x slowdown would bring it to {ratio / 2:.3f}"
            f" ({'caught' if ratio / 2 < DEFAULT_THRESHOLD else 'NOT caught: raise the threshold'})."
        )
    else:
        L.append("Not computed: Switchyard or the pass-through was not measured.")
    L.append("")

    # ------------------------------------------------------------ profile
    prof = results.get("profile")
    L.append("## Where Switchyard spends its time")
    L.append("")
    if prof and "failed" not in prof:
        threads = "; ".join(f"{n} {b:.0f}%" for n, b in prof.get("threads", [])) or "none"
        L.append(
            f"py-spy ({prof['tool']}) sampling the `{prof.get('target', 'switchyard')}` process for {prof['duration_s']:.0f} s under the "
            f"small-chat load at 50 connections. The event-loop thread was running {prof.get('loop_busy_pct', 0):.0f}% of "
            f"the time ({prof['samples']:,} samples); other threads seen running: {threads} (upper bounds: py-spy "
            "counts a thread waiting inside C code, e.g. on a queue, as running). For the event-loop thread: own "
            "time by package (a stdlib call counts for the package that made it), inclusive time of the request "
            "path's functions, and the hottest functions by own time:"
        )
        L.append("")
        L += _table(["package", "own %"], [[a, f"{p:.1f}"] for a, p in prof["areas"]])
        L.append("")
        L += _table(["request path (inclusive)", "%"], [[f"`{f}`", f"{p:.1f}"] for f, p in prof.get("request_path", [])])
        L.append("")
        L += _table(
            ["function (file)", "own %", "inclusive %"], [[f"`{f}`", f"{own:.1f}", f"{inc:.1f}"] for f, own, inc in prof["top"]]
        )
    elif prof:
        L.append(f"Not profiled: {prof['failed']}")
    else:
        L.append("Not profiled in this run (`python -m bench --profile`, needs py-spy).")
    L.append("")
    L += _routing_section(results.get("routing"))
    L += task_section()
    return "\n".join(L)


def task_section(path: Any = None) -> list[str]:
    """The task classifiers' accuracy and latency, hand-run by ``python -m bench.task_eval`` (it is
    not part of this run): rendered from bench/results/task-eval.json between the same markers
    that command writes, or nothing, so the section already in docs/benchmarks.md is carried over."""
    import json
    from pathlib import Path

    from bench.sections import markers
    from bench.task_eval import RESULTS, SECTION, render_section

    source = Path(path) if path is not None else RESULTS
    if not source.exists():
        return []
    start, end = markers(SECTION)
    return ["", start, render_section(json.loads(source.read_text(encoding="utf-8"))).rstrip(), end, ""]


def _routing_section(routing: dict[str, Any] | None) -> list[str]:
    """The router's micro-benchmark (``python -m bench.routing_bench``) as run inside this run; the
    last standalone run's file (docs/benchmarks-routing.md) when this run has none."""
    lines = ["## Routing: classification + planning", ""]
    if routing and "failed" in routing:
        return [*lines, f"Not measured: {routing['failed']}", ""]
    if routing and routing.get("markdown"):
        body = routing["markdown"].splitlines()
        source = f"`python -m bench.routing_bench`, run inside this run ({routing.get('python') or 'same interpreter'})"
    else:
        from pathlib import Path

        path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-routing.md"
        if not path.exists():
            return [*lines, "Not measured yet: run `python -m bench.routing_bench`.", ""]
        body = path.read_text(encoding="utf-8").splitlines()
        stamp = next((ln for ln in body if ln.startswith("- date:")), "")
        source = f"docs/benchmarks-routing.md ({stamp.removeprefix('- date: ') or 'date unknown'}), not this run"
    table: list[str] = []
    heading = ""
    for ln in body:  # the first table: cold requests, when the benchmark measures several cases
        if ln.startswith("## ") and not table:
            heading = ln.removeprefix("## ")
        if ln.startswith("|"):
            table.append(ln)
        elif table:
            break
    lines.append(
        f"From {source}" + (f"; *{heading}*" if heading else "") + ". Details: docs/benchmarks-routing.md "
        "(`python -m bench.routing_bench` writes it when run alone)."
    )
    lines += ["", *table, ""]
    return lines

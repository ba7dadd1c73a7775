"""docs/benchmarks.md as rendered from one run's results: issue 12's targets judged from the figures,
the peers beside each other, the machine's load stated, and other benchmarks' sections kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.__main__ import _write
from bench.report import HEADLINE, render, target_rows
from bench.sections import carry_sections, keep_sections, replace_section, write_section

QUIET = {"samples": 30, "median_pct": 2.0, "p90_pct": 6.0, "max_pct": 14.0, "quiet": True, "busiest": []}
BUSY = {"samples": 30, "median_pct": 150.0, "p90_pct": 190.0, "max_pct": 199.0, "quiet": False, "busiest": [["python", 180.0]]}


def chat(rps: float, cpu: float | None = None) -> dict[str, Any]:
    return {
        "rps": rps,
        "rps_min": rps,
        "rps_max": rps,
        "p50_ms": 5.0,
        "p99_ms": 9.0,
        "errors": 0,
        "runs": [{"rps": rps}],
        **({"cpu_us_per_req": cpu} if cpu is not None else {}),
    }


def stream(ttft1: float) -> dict[str, Any]:
    return {
        "ttft1_p50_ms": ttft1,
        "ttft_p50_ms": ttft1 + 1,
        "ttft_p99_ms": ttft1 + 3,
        "gap_p50_ms": 5.1,
        "gap_p99_ms": 6.0,
        "burst_pct": 0.0,
        "tokens_mean": 200,
        "errors": 0,
        "solo_errors": 0,
    }


def many(completed: int) -> dict[str, Any]:
    return {
        "completed": completed,
        "streams": 500,
        "errors": 500 - completed,
        "peak_open": completed,
        "upstream_peak_open": completed,
        "ttft_p50_ms": 300.0,
        "ttft_p99_ms": 400.0,
        "gap_p99_ms": 110.0,
        "wall_s": 5.5,
        "rss_mb": 170.0,
        "error_samples": [],
    }


def results(*, others: dict[str, Any] = QUIET, sy_rps: float = 6000.0, portkey_rps: float = 2000.0) -> dict[str, Any]:
    names = ["direct", "passthrough", "switchyard", HEADLINE, "litellm", "portkey"]
    return {
        "plan": {
            "duration_s": 5.0,
            "warmup_s": 2.0,
            "rounds": 2,
            "stream_count": 24,
            "stream_concurrency": 4,
            "stream_solo_count": 20,
            "stream_tokens": 200,
            "stream_interval_ms": 5.0,
            "first_token_ms": 20.0,
            "many_streams": 500,
            "many_tokens": 50,
            "many_interval_ms": 100.0,
            "long_requests": 200_000,
            "workers": 2,
        },
        "meta": {
            "command": "python -m bench",
            "date": "2026-12-01 10:00 UTC",
            "quick": False,
            "cpu": "x86",
            "cores": 2,
            "ram_gb": 8,
            "os": "Linux",
            "python": "3.11.7",
            "packages": {"uvicorn": "0.1"},
            "wrk": "wrk 4",
            "nginx": "nginx",
            "litellm": "litellm 1",
            "portkey": "@portkey-ai/gateway 1.15.2",
            "revision": "abc",
            "load_start": 0.1,
            "load_end": 2.0,
            "wall_s": 600.0,
            "busy_start": [],
            "others_before": QUIET,
            "others_during": others,
            "quiet_rule": {"median_pct": 10.0, "p90_pct": 25.0},
        },
        "targets": {n: f"{n} note" for n in names},
        "upstream": {"chat_bytes": 388, "embed_bytes": 2587},
        "chat_50": {
            "direct": chat(200_000),
            "passthrough": chat(10_000, 110),
            "switchyard": chat(6500, 200),
            HEADLINE: chat(sy_rps, 240),
            "litellm": chat(200, 8000),
            "portkey": chat(portkey_rps, 900),
        },
        "chat_1": {
            "direct": {"p50_ms": 0.07, "p99_ms": 0.20},
            HEADLINE: {"p50_ms": 0.30, "p99_ms": 1.50},
            "portkey": {"p50_ms": 0.9, "p99_ms": 2.0},
        },
        "stream": {"direct": stream(20.9), HEADLINE: stream(21.5), "portkey": stream(46.0)},
        "streams_many": {HEADLINE: many(500), "portkey": many(500)},
        "workers": {"workers": 2, "variant": HEADLINE, "rps": 11_000.0, "single": {"rps": 6000.0}},
        "routing": {
            "p99_ms_at_4kb": 0.09,
            "us_per_kb_beyond_4kb": 7.5,
            "markdown": "## Cold\n\n| 4 KB | 1 | 0.05 | 0.09 | 0.08 | 12.0 |\n",
        },
        "memory": {
            "target": HEADLINE,
            "requests": 201_000,
            "growth_pct": 3.0,
            "rss_before_mb": 100.0,
            "rss_after_mb": 103.0,
            "errors": 0,
            "rps": 6000.0,
            "p50_ms": 8.0,
            "p99_ms": 20.0,
            "rss_cold_mb": 90.0,
            "rss_peak_mb": 104.0,
            "rss_curve_mb": [100.0, 103.0],
        },
        "unavailable": {},
        "skipped": {"litellm": {"stream": "HTTP 500"}},
    }


def verdicts(res: dict[str, Any]) -> dict[str, bool | None]:
    return {target: ok for target, _, _, ok in target_rows(res)}


def test_each_target_is_judged_from_the_headline_variant_against_its_goal() -> None:
    v = verdicts(results())
    assert v["throughput at 50 connections vs the bare pass-through"] is True  # 0.60 >= 0.5
    assert v["throughput at 50 connections vs LiteLLM proxy"] is True  # 30x >= 25x
    assert v["throughput at 50 connections vs Portkey"] is True  # 3x >= 2x
    assert v["CPU per request (50 connections)"] is True  # 240 <= 250
    assert v["added latency at 1 connection, p50"] is True  # 0.23 ms
    assert v["added latency at 1 connection, p99"] is False  # 1.30 ms > 1 ms
    assert v["TTFT overhead, one stream alone (p50)"] is True  # 0.6 ms
    assert v["`--workers 2` vs one worker"] is True  # 1.83x
    assert v["routing: classification + plan p99 at 4 KB"] is True
    assert v["routing: cost per KB beyond 4 KB"] is False  # 7.5 > 5
    assert v["500 concurrent streams"] is True
    assert v["RSS over 200,000 requests"] is True


def test_a_slower_gateway_misses_the_peer_ratios_and_a_missing_figure_is_not_judged() -> None:
    res = results(sy_rps=3000.0, portkey_rps=2000.0)
    del res["chat_50"]["litellm"]
    v = verdicts(res)
    assert v["throughput at 50 connections vs the bare pass-through"] is False  # 0.30
    assert v["throughput at 50 connections vs Portkey"] is False  # 1.5x
    assert v["throughput at 50 connections vs LiteLLM proxy"] is None


def test_the_report_puts_the_targets_first_and_portkey_beside_litellm() -> None:
    text = render(results())
    assert text.index("## Summary") < text.index("## Targets (issue 12)") < text.index("## Machine")
    assert "Goals (issue 5)" not in text
    assert "3.00x Portkey's gateway" in text
    assert "30.00x the LiteLLM proxy" in text
    chat_table = text.split("## Small non-stream chat", 1)[1].split("##", 1)[0]
    lines = [ln for ln in chat_table.splitlines() if ln.startswith("| `")]
    assert [ln.split("`")[1] for ln in lines][-2:] == ["litellm", "portkey"]
    assert "10 of 12 judged met" in text
    assert "**litellm** left out of *stream*: HTTP 500" in text


def test_a_busy_machine_is_said_at_the_top_and_a_quiet_one_is_not_flagged() -> None:
    busy = render(results(others=BUSY))
    head = busy.split("## Summary", 1)[0]
    assert "Taken on a busy machine" in head
    assert "median 150% of one core" in head
    assert "python 180%" in head
    quiet = render(results())
    assert "busy machine" not in quiet
    assert "Machine: **quiet**" in quiet


def test_re_rendering_the_file_keeps_the_sections_other_benchmarks_own(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# old report\n\nold figures\n")
    write_section(out, "detector-bench", "## Detectors\n\nworst case 826 µs/KB\n")
    write_section(out, "server-experiments", "## Servers\n\ngranian 1.1x\n")
    _write(out, render(results()))
    text = out.read_text()
    assert "old figures" not in text
    assert "## Targets (issue 12)" in text
    assert text.count("<!-- detector-bench:start -->") == 1
    assert "worst case 826 µs/KB" in text
    assert text.count("<!-- server-experiments:start -->") == 1
    assert "granian 1.1x" in text
    _write(out, render(results()))
    assert out.read_text() == text  # idempotent


def test_the_in_process_cpu_section_is_re_created_from_its_results_and_kept_without_them(tmp_path: Path) -> None:
    from bench.inproc import render as render_inproc

    entries = [
        {
            "label": "before",
            "revision": "aaa",
            "cpu_us": {"median": 812.5, "runs": [800.0, 812.5, 830.0]},
            "passthrough_cpu_us": 160.0,
        },
        {
            "label": "after",
            "revision": "bbb",
            "cpu_us": {"median": 701.0, "runs": [701.0]},
            "instructions": {"switchyard": 2.5e6},
        },
    ]
    out = tmp_path / "benchmarks.md"
    _write(out, render(results()), inproc=entries)
    text = out.read_text()
    assert text.count("<!-- inproc-cpu:start -->") == 1
    assert "## CPU per request, in-process (bench/inproc.py)" in text
    assert "| before | aaa | 812 (800/812/830) | 160 | 5.08x |" in text
    assert "| after | bbb | 701 (701) | - | - | 2,500,000 |" in text
    assert text.rstrip().endswith("<!-- inproc-cpu:end -->")  # the last section of the file
    assert render_inproc(entries) in text
    _write(out, render(results()), inproc=[])  # no results file: the section stays as it was
    assert out.read_text() == text


def test_a_section_is_replaced_in_place_and_both_helper_names_agree() -> None:
    once = replace_section("# Report\n\nbody\n", "tracing-cost", "cost 1")
    twice = replace_section(once + "\nafter\n", "tracing-cost", "cost 2")
    assert "cost 1" not in twice
    assert "cost 2" in twice
    assert twice.endswith("after\n")
    assert keep_sections(twice, "# New\n") == carry_sections(twice, "# New\n")

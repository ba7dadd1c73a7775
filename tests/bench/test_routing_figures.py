"""The routing targets are read from either layout of bench/routing_bench.py's output."""

from __future__ import annotations

import pytest

from bench.routing_figures import parse

HEADER = (
    "| prompt | samples | p50 (ms) | p99 (ms) | p99, quietest round (ms) | p50 per KB (µs) |\n|---:|---:|---:|---:|---:|---:|\n"
)
ONE_TABLE = (
    "# Routing benchmark: classification + planning\n\n- python: CPython 3.11.7\n\n"
    + HEADER
    + "| 1 KB | 3000 | 0.126 | 0.189 | 0.183 | 126.5 |\n| 4 KB | 3000 | 0.207 | 0.271 | 0.263 | 51.6 |\n"
    "| 64 KB | 300 | 1.522 | 1.740 | 1.651 | 23.8 |\n| 256 KB | 100 | 5.775 | 6.728 | 6.316 | 22.6 |\n\n"
    "Target: p99 < 0.3 ms at 4 KB -- this run meets it (0.271 ms over all samples).\n"
)
SECTIONS = (
    "# Routing benchmark\n\n## Cold: every sample's text is new to the scan cache\n\n"
    + HEADER
    + "| 1 KB | 300 | 0.152 | 2.643 | 0.340 | 152.4 |\n| 4 KB | 300 | 0.060 | 0.090 | 0.080 | 15.0 |\n"
    "| 256 KB | 20 | 1.068 | 1.300 | 1.100 | 4.2 |\n\n## Repeat: the same request again (scan cache hits)\n\n"
    + HEADER
    + "| 4 KB | 300 | 0.010 | 0.020 | 0.015 | 2.5 |\n| 256 KB | 20 | 0.011 | 0.030 | 0.020 | 0.1 |\n"
)


def test_one_table_gives_the_4kb_p99_and_the_slope_beyond_4kb() -> None:
    figures = parse(ONE_TABLE)
    assert figures["p99_ms_at_4kb"] == 0.271
    assert figures["us_per_kb_beyond_4kb"] == pytest.approx((5.775 - 0.207) * 1000 / 252, abs=0.01)
    assert figures["largest_kb"] == 256
    assert figures["python"] == "CPython 3.11.7"
    assert [r["kb"] for r in figures["rows"]] == [1, 4, 64, 256]


def test_with_several_cases_the_cold_table_is_the_one_judged() -> None:
    figures = parse(SECTIONS)
    assert figures["table"].startswith("Cold")
    assert figures["p99_ms_at_4kb"] == 0.090  # not the repeat table's 0.020
    assert figures["us_per_kb_beyond_4kb"] == pytest.approx((1.068 - 0.060) * 1000 / 252, abs=0.01)
    assert len(figures["rows"]) == 3


def test_output_without_a_size_table_is_refused() -> None:
    with pytest.raises(ValueError, match="no table"):
        parse("# Routing benchmark\n\nnothing measured\n")

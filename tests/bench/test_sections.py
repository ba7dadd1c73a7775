"""Sections of docs/benchmarks.md that one benchmark owns survive the others rewriting the file."""

from __future__ import annotations

from bench.sections import carry_sections, replace_section

REPORT = "# Benchmarks\n\nThe main report.\n"


def test_a_section_is_appended_then_replaced_in_place_leaving_the_rest() -> None:
    once = replace_section(REPORT, "tracing-cost", "## Cost\n\n| a | 1 |")
    assert once.startswith(REPORT.rstrip("\n")) and "<!-- tracing-cost:start -->\n## Cost\n\n| a | 1 |\n<!-- tracing-cost:end -->" in once
    edited = once + "\nA note after it.\n"
    twice = replace_section(edited, "tracing-cost", "## Cost\n\n| a | 2 |")
    assert "| a | 2 |" in twice and "| a | 1 |" not in twice
    assert twice.count("<!-- tracing-cost:start -->") == 1 and twice.endswith("A note after it.\n")


def test_regenerating_the_report_keeps_every_marked_section() -> None:
    old = replace_section(replace_section(REPORT, "tracing-cost", "cost table"), "other", "other table")
    regenerated = carry_sections(old, "# Benchmarks\n\nA new main report.\n")
    assert "A new main report." in regenerated and "The main report." not in regenerated
    assert "cost table" in regenerated and "other table" in regenerated
    assert carry_sections(old, old) == old  # sections already there are not doubled

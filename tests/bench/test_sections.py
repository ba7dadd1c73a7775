"""Marked sections of docs/benchmarks.md: one generator rewrites its own, and never the rest."""

from __future__ import annotations

from pathlib import Path

from bench.sections import keep_sections, write_section


def test_a_section_is_replaced_in_place_and_everything_else_is_kept(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written intro\n")
    write_section(doc, "reports-bench", "## Reports\n\nfirst run\n")
    write_section(doc, "other", "other section\n")
    write_section(doc, "reports-bench", "## Reports\n\nsecond run\n")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written intro\n")
    assert "first run" not in text and text.count("second run") == 1 and "other section" in text
    assert text.index("second run") < text.index("other section")  # replaced where it was


def test_a_full_re_render_keeps_the_other_generators_sections(tmp_path: Path) -> None:
    old = "# Old\n\n<!-- reports-bench:start -->\nreport figures\n<!-- reports-bench:end -->\n"
    new = keep_sections(old, "# New render\n\nfresh load-test figures\n")
    assert new.startswith("# New render") and "report figures" in new and "Old" not in new
    assert keep_sections(old, new) == new  # idempotent

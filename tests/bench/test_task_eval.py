"""The task-classification report: generated from the measurement, and the same section in
docs/task-classification.md's summary, docs/benchmarks.md and a full ``python -m bench`` render."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bench.report import task_section
from bench.sections import replace_section, section_names
from bench.task_eval import SECTION, choose_default, render_doc, render_section
from bench.task_sets import TEXT_TASKS, Score


def _measured(accuracy: float, p99_ms: float) -> dict:
    score = Score()
    for task in TEXT_TASKS:
        for j in range(10):
            _one(score, task, task if j < round(accuracy * 10) else "chat", p99_ms)
    return score.as_json()


def _one(score: Score, task: str, got: str, p99_ms: float) -> None:
    score.total += 1
    score.correct += got == task
    score.confusion.setdefault(task, Counter())[got] += 1
    score.by_lang.setdefault("en", [0, 0])
    score.latencies_ms.append(p99_ms)


def _results(heuristic: tuple[float, float], embedded: tuple[float, float]) -> dict:
    results = {
        "machine": {"date": "2026-11-29 11:00 UTC", "commit": "abc123", "cpus": 2, "load_avg_1m_start": 1.0, "python": "3.11"},
        "eval_items": 70,
        "train_items": 60,
        "eval_labels": dict.fromkeys(TEXT_TASKS, 10),
        "eval_langs": {"en": 70},
        "heuristic": _measured(*heuristic),
        "embedded": {
            **_measured(*embedded),
            "model_load_s": 1.0,
            "window_tokens": [36, 12],
            "system_chars": 0,
            "pooling": "mean",
            "head": {"train_items": 60, "l2": 0.1},
            "budget_ms": 250.0,
            "over_budget_share": 0.5,
        },
    }
    results["default"], results["default_reason"] = choose_default(results)
    return results


def test_the_default_is_the_more_accurate_unless_the_hot_path_cannot_pay_for_it() -> None:
    assert choose_default(_results((0.8, 0.01), (0.7, 50.0)))[0] == "heuristic"
    slow_but_better = choose_default(_results((0.7, 0.01), (0.9, 50.0)))
    assert slow_but_better[0] == "heuristic" and "hot path" in slow_but_better[1]
    assert choose_default(_results((0.7, 0.01), (0.9, 1.0)))[0] == "embedded"


def test_the_benchmarks_section_is_rendered_from_the_json_between_the_commands_markers(tmp_path: Path) -> None:
    results = _results((0.8, 0.01), (0.7, 50.0))
    path = tmp_path / "task-eval.json"
    path.write_text(json.dumps(results))
    lines = task_section(path)
    text = "\n".join(lines)
    assert section_names(text) == [SECTION]
    assert "## Task classification" in text and "| heuristic (default) | 82.9% |" in text and "| embedded | 74.3% |" in text
    # the hand-run command writes the same body into docs/benchmarks.md
    assert render_section(results).strip() in replace_section("# Benchmarks\n", SECTION, render_section(results))
    assert task_section(tmp_path / "missing.json") == []  # not measured: the old section is carried over


def test_the_page_has_both_confusion_matrices_and_the_decision() -> None:
    doc = render_doc(_results((0.8, 0.01), (0.7, 50.0)))
    assert doc.count("| gold \\ predicted |") == 2
    assert "**Default: `heuristic`**" in doc and "do not edit by hand" in doc
    assert "| code | 2 | **8** |" in doc  # 8 of 10 right, 2 answered chat


def test_docs_hold_the_measured_figures() -> None:
    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "task-classification.md").read_text(encoding="utf-8")
    bench = (root / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "## Confusion matrix: heuristic" in page and "## Confusion matrix: embedded" in page
    assert SECTION in section_names(bench)
    section = bench.split(f"<!-- {SECTION}:start -->")[1].split(f"<!-- {SECTION}:end -->")[0]
    assert "| heuristic" in section and "| embedded" in section and "p99" in section

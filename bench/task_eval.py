"""``python -m bench.task_eval``: accuracy, confusion and latency of both task classifiers on the
held-out set (tests/data/tasks/eval.jsonl).

Writes bench/results/task-eval.json, docs/task-classification.md (generated: do not edit) and the
``task-classification`` section of docs/benchmarks.md (bench/report.py renders the same section
from the JSON when the whole benchmark is re-run).

Each request is classified as the router does it (:func:`bench.task_sets.score`: content
extraction, hints, structure, the classifier, the 0.5 confidence floor). The heuristic's latency
is the median of three passes per request; the embedded classifier's is one pass (a second would
hit its cache) with an unbounded budget, so its accuracy is the model's, not the fallback's; the
share of requests that would have fallen back to the heuristic at the default budget is reported
beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

from bench.sections import write_section
from bench.task_sets import EVAL, ROOT, TEXT_TASKS, TRAIN, Item, Score, load, score, stratified

RESULTS = ROOT / "bench" / "results" / "task-eval.json"
DOC = ROOT / "docs" / "task-classification.md"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
SECTION = "task-classification"


def _machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def measure_heuristic(items: list[Item]) -> dict[str, Any]:
    from routing.task import HeuristicTaskClassifier

    classifier = HeuristicTaskClassifier()
    score(classifier, items[:20])  # warm: imports, regex caches
    passes = [score(classifier, items) for _ in range(3)]
    first = passes[0]
    first.latencies_ms = [sorted(p.latencies_ms[i] for p in passes)[1] for i in range(len(items))]
    return first.as_json()


def measure_embedded(items: list[Item], budget_ms: float) -> dict[str, Any]:
    from gateway.task_classifier import EmbeddedTaskClassifier
    from providers.llamacpp import resolve_model_path
    from providers.task_embedding import MODEL, TaskEmbedder, TaskHead

    head = TaskHead.load()
    classifier = EmbeddedTaskClassifier(TaskEmbedder(resolve_model_path(MODEL), head), budget_s=3600.0)
    started = time.perf_counter()
    classifier.start().result()
    load_s = time.perf_counter() - started
    try:
        score(classifier, items[:3])  # page the weights in
        classifier._cache.clear()
        result: Score = score(classifier, items)
    finally:
        classifier.close()
    data = result.as_json()
    over = sum(1 for ms in result.latencies_ms if ms > budget_ms)
    data.update(
        {
            "model_load_s": round(load_s, 2),
            "window_tokens": [head.head_tokens, head.tail_tokens],
            "system_chars": head.system_chars,
            "pooling": head.pooling,
            "head": head.meta,
            "budget_ms": budget_ms,
            "over_budget_share": round(over / len(items), 4) if items else 0.0,
        }
    )
    return data


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _ms(x: float) -> str:
    return f"{x:.3f} ms" if x < 1 else f"{x:.1f} ms"


def _confusion(data: dict[str, Any]) -> list[str]:
    header = "| gold \\ predicted | " + " | ".join(TEXT_TASKS) + " | recall |"
    lines = [header, "|---" * (len(TEXT_TASKS) + 2) + "|"]
    for gold in TEXT_TASKS:
        row = data["confusion"].get(gold, {})
        cells = [f"**{row.get(p, 0)}**" if p == gold else str(row.get(p, 0) or "·") for p in TEXT_TASKS]
        lines.append(f"| {gold} | " + " | ".join(cells) + f" | {_pct(data['per_class'][gold]['recall'])} |")
    precision = [_pct(data["per_class"][p]["precision"]) for p in TEXT_TASKS]
    lines.append("| *precision* | " + " | ".join(precision) + " | |")
    return lines


def choose_default(results: dict[str, Any]) -> tuple[str, str]:
    """The classifier to ship as the default, and why: the more accurate one, unless its p99 is
    more than the hot path can pay (a few milliseconds beside a sub-millisecond gateway overhead)."""
    heuristic, embedded = results["heuristic"], results.get("embedded")
    if not embedded or "accuracy" not in embedded:
        return "heuristic", "the embedded classifier was not measured"
    gain = embedded["accuracy"] - heuristic["accuracy"]
    if gain <= 0:
        return "heuristic", (
            f"it is the more accurate ({_pct(heuristic['accuracy'])} against {_pct(embedded['accuracy'])}) and "
            f"{embedded['p99_ms'] / max(heuristic['p99_ms'], 1e-6):,.0f}x cheaper at p99"
        )
    if embedded["p99_ms"] > 5.0:
        return "heuristic", (
            f"the embedded classifier is {gain * 100:.1f} points more accurate but costs {_ms(embedded['p99_ms'])} "
            f"at p99 on this machine against {_ms(heuristic['p99_ms'])}, far more than the hot path can pay"
        )
    return "embedded", f"it is {gain * 100:.1f} points more accurate at a p99 of {_ms(embedded['p99_ms'])}"


def render_section(results: dict[str, Any]) -> str:
    """The docs/benchmarks.md section (also rendered by bench/report.py from the JSON)."""
    m = results["machine"]
    lines = [
        "## Task classification",
        "",
        f"`python -m bench.task_eval` on {m['date']} (commit {m['commit'] or '?'}, {m['cpus']} CPUs, "
        f"load {m['load_avg_1m_start']} at the start); {results['eval_items']} held-out requests "
        f"(tests/data/tasks/eval.jsonl), classified as the router does it. Details, confusion matrices "
        "and the decision: docs/task-classification.md.",
        "",
        "| classifier | accuracy | p50 | p99 |",
        "|---|---|---|---|",
    ]
    for name in ("heuristic", "embedded"):
        data = results.get(name)
        if not data:
            continue
        if "accuracy" not in data:
            lines.append(f"| {name} | not measured: {data.get('skipped', '?')} | | |")
            continue
        mark = " (default)" if results["default"] == name else ""
        lines.append(f"| {name}{mark} | {_pct(data['accuracy'])} | {_ms(data['p50_ms'])} | {_ms(data['p99_ms'])} |")
    lines += ["", f"Default: `{results['default']}`, because {results['default_reason']}.", ""]
    return "\n".join(lines)


def render_doc(results: dict[str, Any]) -> str:
    m = results["machine"]
    h, e = results["heuristic"], results.get("embedded") or {}
    lines = [
        "# Task classification, measured",
        "",
        "<!-- Generated by `python -m bench.task_eval` from bench/results/task-eval.json; do not edit by hand. -->",
        "",
        "The router reads a request's task (`chat`, `code`, `reasoning`, `summarize`, `extract`, `classify`, "
        "`translate`) from a caller hint, then from the request's structure (the embeddings endpoint is `embed`, "
        "tools make it `tool_use`, a `json_schema` response format `extract`), and only then from its text, with "
        "the classifier that `routing.task_classifier` names. This page measures the two text classifiers.",
        "",
        "## The sets",
        "",
        f"- **eval** (tests/data/tasks/eval.jsonl): {results['eval_items']} requests, "
        + ", ".join(f"{k} {v}" for k, v in results["eval_labels"].items())
        + "; languages "
        + ", ".join(f"{k} {v}" for k, v in results["eval_langs"].items())
        + ".",
        f"- **train** (tests/data/tasks/train.jsonl): {results['train_items']} different requests (other "
        "documents, other prompts, no paraphrases; tests/routing/test_task_sets.py checks there is no exact or "
        "near duplicate across the sets).",
        "",
        "Both were written for the tests: one-liners, polite requests, bare imperatives and questions; system "
        "prompts that carry the task or do not; completion prompts; multi-paragraph pastes of e-mails, chat logs, "
        "meeting notes, JSON, code and abstracts; English mostly, French, German, Spanish, Japanese and Chinese "
        "too; and hard cases (a translation request around code, the summary of a chat log, extraction from "
        "JSON, a code question about JSON, chat that mentions translation or code). General questions, "
        "creative writing and rewriting are labelled `chat`, the catch-all the router falls back on.",
        "",
        "The heuristic's weights (routing/task_words.py) were tuned on the training set only; the embedded "
        "classifier's head was fitted on it (`python -m bench.task_train`, L2 chosen by 5-fold "
        "cross-validation on the training set). The eval set was used for nothing but these figures.",
        "",
        "## Results",
        "",
        f"Measured {m['date']}, commit {m['commit'] or '?'}, Python {m['python']}, {m['cpus']} CPUs shared with "
        f"other work (1-minute load {m['load_avg_1m_start']} at the start). Latency is per request, through "
        "`detect_task` (content extraction included), on the calling thread.",
        "",
        "| classifier | accuracy | p50 | p99 | notes |",
        "|---|---|---|---|---|",
        f"| heuristic | {_pct(h['accuracy'])} ({h['items']} requests) | {_ms(h['p50_ms'])} | {_ms(h['p99_ms'])} | "
        "median of 3 passes per request |",
    ]
    if "accuracy" in e:
        lines.append(
            f"| embedded | {_pct(e['accuracy'])} ({e['items']} requests) | {_ms(e['p50_ms'])} | {_ms(e['p99_ms'])} | "
            f"{e['pooling']} pooling over the first {e['window_tokens'][0]} + last {e['window_tokens'][1]} tokens; "
            f"{_pct(e['over_budget_share'])} over the default {e['budget_ms']:g} ms budget; model load "
            f"{e['model_load_s']} s |"
        )
    elif e:
        lines.append(f"| embedded | not measured: {e.get('skipped')} | | | |")
    lines += [
        "",
        f"**Default: `{results['default']}`**, because {results['default_reason']}.",
        "",
        "### What the embedded classifier costs on the hot path",
        "",
        "An embedding is a forward pass of SmolLM2-135M over the window (about 0.2 GFLOP per token), on one "
        "thread, one request at a time: its latency is milliseconds to hundreds of milliseconds, and grows with "
        "the load on the machine. The gateway therefore never runs it on the event loop: with "
        "`routing.task_classifier: embedded`, requests are planned on a small pool of plan threads, each waits "
        "at most `routing.task_classifier_budget_ms` (250 ms by default) for the embedding, and when the "
        "embedder is busy (more than two requests waiting) or late, the heuristic answers and the reason "
        "(`x-switchyard-task` stays a task; explain and the ledger's reason say *took over 250 ms, so "
        "heuristic: ...*) says so. Only the window is embedded, so the cost does not grow with the prompt.",
        "",
    ]
    for name, data in (("heuristic", h), ("embedded", e)):
        if "accuracy" not in data:
            continue
        lines += [f"## Confusion matrix: {name}", "", *_confusion(data), ""]
        langs = ", ".join(f"{lang} {v['correct']}/{v['items']}" for lang, v in data["by_lang"].items())
        lines += [f"By language of the instruction: {langs}.", ""]
    if "head" in e:
        head = e["head"]
        lines += [
            "## The embedded classifier's head",
            "",
            f"providers/data/task_head.json: a multinomial logistic regression over standardised "
            f"{e['pooling']}-pooled embeddings, fitted on {head.get('train_items')} training requests with L2 "
            f"{head.get('l2')} (5-fold cross-validated accuracy on train by L2: {head.get('cv_accuracy')}; "
            f"accuracy on train itself {head.get('train_accuracy')}). Retrain with `python -m bench.task_train`.",
            "",
        ]
    lines += [
        "## Reproduce",
        "",
        "```",
        "python -m bench.task_train --heuristic   # the heuristic on the training set (the tuning loop)",
        "python -m bench.task_train               # refit the embedded head on the training set",
        "python -m bench.task_eval                # this page, the JSON and the docs/benchmarks.md section",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.task_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--no-embedded", action="store_true", help="measure the heuristic only")
    parser.add_argument("--per-class", type=int, help="a fixed stratified subset: the first N requests of each label")
    parser.add_argument("--no-write", action="store_true", help="print, write nothing")
    args = parser.parse_args(argv)
    from routing.spec import RoutingDefaults

    items = load(EVAL)
    if args.per_class:
        items = stratified(items, args.per_class)
    results: dict[str, Any] = {
        "machine": _machine(),
        "eval_items": len(items),
        "train_items": len(load(TRAIN)),
        "eval_labels": {t: sum(1 for i in items if i.label == t) for t in TEXT_TASKS},
        "eval_langs": dict(sorted({i.lang: sum(1 for j in items if j.lang == i.lang) for i in items}.items())),
    }
    results["heuristic"] = measure_heuristic(items)
    print(f"heuristic: {results['heuristic']['accuracy']:.3f}, p99 {results['heuristic']['p99_ms']} ms", flush=True)
    if args.no_embedded:
        results["embedded"] = {"skipped": "--no-embedded"}
    else:
        from providers.task_embedding import unavailable_reason

        reason = unavailable_reason()
        if reason:
            results["embedded"] = {"skipped": reason}
        else:
            results["embedded"] = measure_embedded(items, RoutingDefaults().task_classifier_budget_ms)
            print(f"embedded: {results['embedded']['accuracy']:.3f}, p99 {results['embedded']['p99_ms']} ms", flush=True)
    results["default"], results["default_reason"] = choose_default(results)
    results["configured_default"] = RoutingDefaults().task_classifier
    section = render_section(results)
    print(section)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        DOC.write_text(render_doc(results), encoding="utf-8")
        write_section(BENCHMARKS, SECTION, section)
        print(
            f"wrote {RESULTS.relative_to(ROOT)}, {DOC.relative_to(ROOT)} and the {SECTION} section of {BENCHMARKS.relative_to(ROOT)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

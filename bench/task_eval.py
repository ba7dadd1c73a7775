"""``python -m bench.task_eval``: accuracy, confusion and latency of both task classifiers on the
held-out set (tests/data/tasks/eval.jsonl).

Writes bench/results/task-eval.json, docs/task-classification.md (generated: do not edit) and the
``task-classification`` section of docs/benchmarks.md (bench/report.py renders the same section
from the JSON when the whole benchmark is re-run).

Each request is classified as the router does it (:func:`bench.task_sets.score`: content
extraction, hints, structure, the classifier, the 0.5 confidence floor). The heuristic's latency
is the median of three passes per request. The embedded classifier's is the embedding, timed
through the real model thread one request at a time (kept in bench/results/task-eval-embeddings.npz
and reused by a rerun with the same set and head settings, ``--fresh`` to re-embed), plus the
router's path over the head; with no budget, so its accuracy is the model's, not the fallback's;
the share of requests that would have fallen back to the heuristic at the default budget is
reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
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


EMBED_CACHE = ROOT / "bench" / "results" / "task-eval-embeddings.npz"


class _Precomputed:
    """A stand-in :class:`~providers.task_embedding.TaskEmbedder` that hands back vectors already
    computed (and timed) by the real one, so the head and the router's path are timed apart."""

    blocking = False

    def __init__(self, head: Any, vectors: dict[tuple[str, str], Any]) -> None:
        import concurrent.futures

        self.head, self.vectors = head, vectors
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.ready.set_result(None)

    def start(self) -> Any:
        import concurrent.futures

        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.set_result(None)
        return future

    def submit(self, user: str, system: str) -> Any:
        import concurrent.futures

        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(self.vectors[(user, system)])
        return future

    def close(self) -> None:
        pass


def measure_embedded(items: list[Item], budget_ms: float, cache: Path | None = EMBED_CACHE) -> dict[str, Any]:
    """Each request's embedding through the real model thread (timed; kept in ``cache`` for a
    rerun with the same set and head settings), then the router's path over the head (timed):
    a request's latency is the sum."""
    from bench.task_train import cached_embeddings, head_settings
    from gateway.task_classifier import EmbeddedTaskClassifier
    from providers.task_embedding import TaskHead
    from routing.content import extract_content

    head = TaskHead.load()
    contents = [extract_content(i.endpoint, i.body) for i in items]  # type: ignore[arg-type]
    started = time.perf_counter()
    x, seconds = cached_embeddings(items, head, head_settings(head), cache, source=EVAL)
    embed_wall_s = time.perf_counter() - started
    vectors = {(c.last_user_text, c.system_text): v for c, v in zip(contents, x, strict=True)}
    classifier = EmbeddedTaskClassifier(_Precomputed(head, vectors), budget_s=3600.0)  # type: ignore[arg-type]
    try:
        result: Score = score(classifier, items)
    finally:
        classifier.close()
    result.latencies_ms = [ms + s * 1000 for ms, s in zip(result.latencies_ms, seconds, strict=True)]
    data = result.as_json()
    over = sum(1 for ms in result.latencies_ms if ms > budget_ms)
    data.update(
        {
            "embed_wall_s": round(embed_wall_s, 1),
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
            f"{e['pooling']} pooling over the first {e['window_tokens'][0]} + last {e['window_tokens'][1]} tokens"
            f"{' and ' + str(e['system_chars']) + ' system-prompt characters' if e.get('system_chars') else ''}; "
            f"{_pct(e['over_budget_share'])} over the default {e['budget_ms']:g} ms budget |"
        )
    elif e:
        lines.append(f"| embedded | not measured: {e.get('skipped')} | | | |")
    lines += [
        "",
        f"**Default: `{results['default']}`**, because {results['default_reason']}.",
        "",
        "### What the embedded classifier costs on the hot path",
        "",
        "The classifier runs on every request whose task no hint or structure decides, before admission, so "
        "its cost is added to the gateway's own (well under a millisecond). Two ways of embedding were tried:",
        "",
        "- **A forward pass** of SmolLM2-135M over the instruction (llama.cpp `embedding=True`, mean pooling): "
        "about 0.2 GFLOP per token. On this 2-CPU machine, shared with other work (load 10-12), one embedding of "
        "a 32-64-token window took 2-3 s on one thread (`Llama.embed`, measured by hand on 2026-11-29), and the "
        "training set could not even be embedded in the time available: out of the question per request. "
        "The code keeps this mode (`python -m bench.task_train --pooling mean`): its model runs on its own "
        "thread, requests are then planned on a small pool of plan threads (never on the event loop), each "
        "waits at most `routing.task_classifier_budget_ms` (250 ms by default), and when the model is busy (two "
        "requests waiting) or late the heuristic answers, and the reason says so (*the embedded classifier "
        "took over 250 ms, so heuristic: ...*).",
        "- **The model's token embeddings** (its input embedding table, read from the GGUF once at start, "
        "57 MB as float16), mean-pooled over the first 64 and last 32 tokens of the last user message and the "
        "first 200 characters of the system prompt: no forward pass, a tokenisation of the message's ends and "
        "a table lookup. This is the shipped head (`pooling: tokens`); it is planned on the event loop like "
        "the heuristic. Its figures are the ones above.",
        "",
        "Until the table is loaded (seconds, in a thread, awaited before the gateway takes traffic), and if it "
        "cannot be, requests get the heuristic's answer and the reason says why.",
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
            f"embeddings ({e['pooling']} pooling), fitted on {head.get('train_items')} training requests with L2 "
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
    parser.add_argument("--fresh", action="store_true", help="re-embed the eval set even when the cache matches")
    parser.add_argument(
        "--embed-only", action="store_true", help="fill the eval embedding cache with bench.task_train's settings"
    )
    args = parser.parse_args(argv)
    from routing.spec import RoutingDefaults

    items = load(EVAL)
    if args.embed_only:
        from bench.task_train import DEFAULTS, cached_embeddings, head_shape

        cached_embeddings(items, head_shape(DEFAULTS), DEFAULTS, EMBED_CACHE, source=EVAL)
        print(f"embedded {len(items)} requests into {EMBED_CACHE.relative_to(ROOT)}")
        return 0
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
            cache = None if args.per_class else EMBED_CACHE
            if args.fresh and cache is not None:
                cache.unlink(missing_ok=True)
            results["embedded"] = measure_embedded(items, RoutingDefaults().task_classifier_budget_ms, cache)
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

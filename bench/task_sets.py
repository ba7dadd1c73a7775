"""The labelled task sets (tests/data/tasks/{train,eval}.jsonl) and how a classifier is scored on them.

Each line is one request as a client sends it -- ``messages`` (chat) or ``prompt`` (completions)
-- with its ``label`` (a text task of :data:`TEXT_TASKS`), the ``lang`` of its instruction and,
for the hard cases, a ``note``. The two sets were written separately: different documents,
different prompts, no paraphrases (tests/routing/test_task_sets.py checks they do not overlap).

A classifier is scored the way the router uses it: :func:`routing.task.detect_task` over the
request (so a low-confidence guess counts as ``chat``, as it does in production), never the raw
classifier output.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.content import extract_content
from routing.task import TaskClassifier, detect_task
from routing.types import RoutingRequest

ROOT = Path(__file__).resolve().parent.parent
SETS = ROOT / "tests" / "data" / "tasks"
EVAL = SETS / "eval.jsonl"
TRAIN = SETS / "train.jsonl"
# The tasks a classifier reads from text. ``embed`` (the endpoint) and ``tool_use`` (a request
# with tools) are decided by the request's structure before any classifier runs.
TEXT_TASKS = ("chat", "code", "reasoning", "summarize", "extract", "classify", "translate")


@dataclass(frozen=True, slots=True)
class Item:
    """One labelled request."""

    id: str
    label: str
    lang: str
    body: dict[str, Any]
    note: str = ""

    @property
    def endpoint(self) -> str:
        return "completions" if "prompt" in self.body else "chat"

    @property
    def text(self) -> str:
        """The text a task classifier reads first: the last user message, or the prompt."""
        if "prompt" in self.body:
            return str(self.body["prompt"])
        return next(str(m["content"]) for m in reversed(self.body["messages"]) if m["role"] == "user")

    def request(self) -> RoutingRequest:
        return RoutingRequest(model="auto", endpoint=self.endpoint, body=self.body)  # type: ignore[arg-type]


def load(path: Path) -> list[Item]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        body = {"prompt": row["prompt"]} if "prompt" in row else {"messages": row["messages"]}
        items.append(Item(row["id"], row["label"], row.get("lang", "en"), {"model": "auto", **body}, row.get("note", "")))
    return items


@dataclass
class Score:
    """Accuracy, confusion matrix (gold -> predicted -> count) and per-request latency."""

    total: int = 0
    correct: int = 0
    confusion: dict[str, Counter[str]] = field(default_factory=dict)
    by_lang: dict[str, list[int]] = field(default_factory=dict)  # lang -> [correct, total]
    latencies_ms: list[float] = field(default_factory=list)
    misses: list[tuple[str, str, str]] = field(default_factory=list)  # (id, gold, predicted)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def per_class(self) -> dict[str, dict[str, float]]:
        """Precision and recall per gold label."""
        out = {}
        predicted = Counter[str]()
        for row in self.confusion.values():
            predicted.update(row)
        for gold in TEXT_TASKS:
            row = self.confusion.get(gold, Counter())
            hit, support = row.get(gold, 0), sum(row.values())
            out[gold] = {
                "support": support,
                "recall": round(hit / support, 3) if support else 0.0,
                "precision": round(hit / predicted[gold], 3) if predicted[gold] else 0.0,
            }
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "items": self.total,
            "accuracy": round(self.accuracy, 4),
            "p50_ms": round(self.percentile_ms(0.50), 4),
            "p99_ms": round(self.percentile_ms(0.99), 4),
            "confusion": {gold: dict(self.confusion.get(gold, {})) for gold in TEXT_TASKS},
            "per_class": self.per_class(),
            "by_lang": {lang: {"correct": c, "items": t} for lang, (c, t) in sorted(self.by_lang.items())},
            "misses": [list(m) for m in self.misses],
        }


def predict(classifier: TaskClassifier, item: Item) -> str:
    request = item.request()
    return detect_task(request, extract_content(request.endpoint, request.body), classifier).task


def score(classifier: TaskClassifier, items: list[Item]) -> Score:
    """Classify every item as the router does, timing each decision (content extraction included)."""
    result = Score()
    for item in items:
        started = time.perf_counter()
        got = predict(classifier, item)
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.total += 1
        result.correct += got == item.label
        result.confusion.setdefault(item.label, Counter())[got] += 1
        lang = result.by_lang.setdefault(item.lang, [0, 0])
        lang[0] += got == item.label
        lang[1] += 1
        if got != item.label:
            result.misses.append((item.id, item.label, got))
    return result


def stratified(items: list[Item], per_class: int) -> list[Item]:
    """The first ``per_class`` items of each label, in file order (a fixed subset)."""
    taken: Counter[str] = Counter()
    out = []
    for item in items:
        if taken[item.label] < per_class:
            taken[item.label] += 1
            out.append(item)
    return out

"""The task signal: what kind of work a request asks for.

Decided in this order, first answer wins: an explicit hint (``x-switchyard-task`` /
``metadata["x-switchyard-task"]``); the endpoint (embeddings -> ``embed``); the request's structure (``tools``
-> ``tool_use``, a ``json_schema`` response format -> ``extract``); then a :class:`TaskClassifier`
over the text -- by default :class:`HeuristicTaskClassifier`, replaceable by a trained model.
A guess below ``min_confidence`` is reported as ``chat``. Every decision carries its reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from routing.content import RequestContent
from routing.hints import task_hint
from routing.types import TASKS, RoutingRequest


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class TaskGuess:
    """A classifier's answer: the task, its confidence in [0, 1], and why."""

    task: str
    confidence: float
    reason: str


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class TaskSignal:
    task: str
    reason: str


class TaskClassifier(Protocol):
    """Anything that can guess a task from a request's text (a heuristic, a small trained model)."""

    def classify(self, content: RequestContent) -> TaskGuess: ...


# word -> (task, weight); the weights of a task's evidence combine as a noisy-or
_WORDS: dict[str, tuple[str, float]] = {
    **dict.fromkeys(("translate", "translation", "translating", "translator"), ("translate", 0.9)),
    **dict.fromkeys(("summarize", "summarise", "summary", "summarization", "tldr", "recap", "condense"), ("summarize", 0.85)),
    **dict.fromkeys(("classify", "categorize", "categorise", "classification", "sentiment"), ("classify", 0.8)),
    **dict.fromkeys(("extract", "extraction"), ("extract", 0.8)),
    **dict.fromkeys(("parse", "json", "entities", "fields"), ("extract", 0.3)),
    **dict.fromkeys(("refactor", "debug", "traceback", "stacktrace", "compile", "compiler", "segfault"), ("code", 0.5)),
    **dict.fromkeys(("def", "import", "include", "println", "printf", "console", "const", "elif", "async"), ("code", 0.2)),
    **dict.fromkeys(
        (
            "function",
            "implement",
            "python",
            "javascript",
            "typescript",
            "rust",
            "golang",
            "java",
            "sql",
            "regex",
            "bug",
            "script",
            "code",
            "class",
            "method",
            "api",
            "bash",
        ),
        ("code", 0.3),
    ),
    **dict.fromkeys(
        ("prove", "proof", "theorem", "lemma", "derivative", "integral", "equation", "equations"), ("reasoning", 0.5)
    ),
    **dict.fromkeys(("solve", "probability", "calculate", "compute", "puzzle", "riddle", "logic"), ("reasoning", 0.35)),
}
# substring -> (task, weight, label): syntax and phrases that single words miss; read from the
# same narrow window as words, except the code fence and a traceback, looked for more widely
_MARKERS: tuple[tuple[str, str, float, str], ...] = (
    ("=>", "code", 0.25, "'=>'"),
    ("();", "code", 0.35, "'();'"),
    ("tl;dr", "summarize", 0.85, "'tl;dr'"),
    ("key points", "summarize", 0.6, "'key points'"),
    ("translate into", "translate", 0.95, "'translate into'"),
    ("which category", "classify", 0.7, "'which category'"),
    ("step by step", "reasoning", 0.4, "'step by step'"),
    ("\\frac", "reasoning", 0.45, "LaTeX maths"),
    ("∑", "reasoning", 0.4, "maths notation"),
    ("∫", "reasoning", 0.4, "maths notation"),
    ("√", "reasoning", 0.4, "maths notation"),
    ("≤", "reasoning", 0.3, "maths notation"),
    ("≥", "reasoning", 0.3, "maths notation"),
)
_ASCII_MARKERS = tuple(m for m in _MARKERS if m[0].isascii())
# arithmetic ("17 * 23", "3x + 7 = 22", "x^2"); "-" and "/" are left out: dates use them. The
# search starts at the operator (rare) rather than at a digit (common), then looks left.
_OPERATOR_THEN_DIGIT = re.compile(r"[+*×÷=^] ?\(?-?[0-9]")


def _has_arithmetic(text: str) -> bool:
    for match in _OPERATOR_THEN_DIGIT.finditer(text):
        at = match.start()
        if text[at] == "^" or text[at - 2 : at].rstrip()[-1:].isdigit():
            return True
    return False


_WIDE_MARKERS: tuple[tuple[str, str, float, str], ...] = (
    ("```", "code", 0.6, "code fence"),
    ("traceback (most recent call last)", "code", 0.7, "a Python traceback"),
)
_VOCABULARY = frozenset(_WORDS)
_PUNCTUATION = str.maketrans({c: " " for c in "!\"#$%&'()*+,./:;<=>?@[\\]^`{|}~\n\t\r"})
_PRIORITY = ("translate", "summarize", "classify", "extract", "code", "reasoning")  # breaks ties
# Instructions sit at the ends of a long message: words are read from the first and last
# _WORD_WINDOW characters, the cheaper substring markers from the first and last _MARKER_WINDOW.
_WORD_WINDOW = 400
_MARKER_WINDOW = 4000


def _ends(text: str, width: int) -> str:
    return text if len(text) <= 2 * width else text[:width] + "\n" + text[-width:]


class HeuristicTaskClassifier:
    """Keyword and syntax evidence from the ends of the last user message.

    Each word or marker found adds evidence for one task with a weight; a task's confidence is the
    noisy-or of its evidence, the best task wins, and the reason names the evidence used.
    """

    def classify(self, content: RequestContent) -> TaskGuess:
        wide = _ends(content.last_user_text, _MARKER_WINDOW).lower()
        narrow = _ends(wide, _WORD_WINDOW)
        evidence: dict[str, list[tuple[str, float]]] = {}
        for word in sorted(_VOCABULARY.intersection(narrow.translate(_PUNCTUATION).split())):
            task, weight = _WORDS[word]
            evidence.setdefault(task, []).append((f"'{word}'", weight))
        narrow_markers = _ASCII_MARKERS if narrow.isascii() else _MARKERS
        for window, markers in ((narrow, narrow_markers), (wide, _WIDE_MARKERS)):
            for marker, task, weight, label in markers:
                if marker in window:
                    evidence.setdefault(task, []).append((label, weight))
        if _has_arithmetic(narrow):
            evidence.setdefault("reasoning", []).append(("arithmetic", 0.35))
        if not evidence:
            return TaskGuess("chat", 0.0, "no task evidence in the last user message")
        scores = {task: _noisy_or(w for _, w in items) for task, items in evidence.items()}
        best = max(scores, key=lambda task: (scores[task], -_PRIORITY.index(task)))
        labels = ", ".join(label for label, _ in sorted(evidence[best], key=lambda e: -e[1])[:4])
        return TaskGuess(best, scores[best], f"heuristic: {best} ({scores[best]:.2f}) from {labels}")


def _noisy_or(weights: Any) -> float:
    miss = 1.0
    for weight in weights:
        miss *= 1.0 - weight
    return round(1.0 - miss, 4)


def _structural_task(request: RoutingRequest) -> TaskSignal | None:
    body = request.body
    if request.endpoint == "embeddings":
        return TaskSignal("embed", "endpoint is embeddings")
    tools = body.get("tools") or body.get("functions")
    if isinstance(tools, list) and tools and body.get("tool_choice") != "none":
        return TaskSignal("tool_use", f"request defines {len(tools)} tool(s)")
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        return TaskSignal("extract", "response_format is json_schema")
    return None


def detect_task(
    request: RoutingRequest,
    content: RequestContent,
    classifier: TaskClassifier,
    min_confidence: float = 0.5,
) -> TaskSignal:
    """The task of ``request``; raises :class:`~routing.errors.InvalidHint` for an unknown hint."""
    hinted = task_hint(request)
    if hinted is not None:
        source, task = hinted
        return TaskSignal(task, f"caller {source}: {task}")
    structural = _structural_task(request)
    if structural is not None:
        return structural
    guess = classifier.classify(content)
    if guess.task not in TASKS:
        return TaskSignal("chat", f"classifier answered unknown task {guess.task!r}, so chat")
    if guess.task != "chat" and guess.confidence < min_confidence:
        return TaskSignal("chat", f"{guess.reason}; below {min_confidence:.2f} confidence, so chat")
    return TaskSignal(guess.task, guess.reason)

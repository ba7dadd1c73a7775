"""The task signal: what kind of work a request asks for.

Decided in this order, first answer wins: an explicit hint (``x-switchyard-task`` /
``metadata["x-switchyard-task"]``); the endpoint (embeddings -> ``embed``); the request's structure (``tools``
-> ``tool_use``, a ``json_schema`` response format -> ``extract``); then a :class:`TaskClassifier`
over the text -- by default :class:`HeuristicTaskClassifier`, replaceable by a trained model.
A guess below ``min_confidence`` is reported as ``chat``. Every decision carries its reason.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from routing.content import RequestContent
from routing.hints import task_hint
from routing.task_words import LANGUAGE_PHRASES, LANGUAGES, PHRASES, SCRIPT_MARKERS, WORDS
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


# The evidence tables live in routing.task_words; the narrow window reads words and phrases, the
# wide one the code fence and a traceback.
# A phrase of letters and spaces (once stripped) must match whole words ("in german" is not in
# "in germany"): it is looked for, space-padded, in the text with punctuation blanked, and only
# when its first word is in the text. Other markers are substrings, looked for only when the
# text holds their first punctuation character (most texts hold few of them).
_WORDY = re.compile(r"[^\W\d_]+(?: [^\W\d_]+)*")
_WORD_PHRASES: dict[tuple[str, str], list[tuple[str, str, float, str]]] = {}  # keyed by the first two words
_SYNTAX: dict[str, list[tuple[str, str, float, str]]] = {}
_ONE_WORDS: dict[str, tuple[str, float, str]] = {}
for _marker, _task, _weight, _label in PHRASES:
    if _WORDY.fullmatch(_marker.strip()) and " " in _marker.strip():
        _phrase = _marker.strip()
        _first, _second = _phrase.split()[:2]
        _WORD_PHRASES.setdefault((_first, _second), []).append((f" {_phrase} ", _task, _weight, _label))
    elif _WORDY.fullmatch(_marker.strip()):  # "func ", "\ndef ": one word, matched as a word
        _ONE_WORDS[_marker.strip()] = (_task, _weight, _label)
    else:
        _gate = next(c for c in _marker if not (c.isalnum() or c == " "))
        _SYNTAX.setdefault(_gate, []).append((_marker, _task, _weight, _label))
_PHRASE_PAIRS = frozenset(_WORD_PHRASES)
_ONE_WORD_KEYS = frozenset(_ONE_WORDS)
_LANGUAGES = frozenset(LANGUAGES)
_LANGUAGE_PHRASES = {
    lang: tuple(
        (f" {phrase.format(lang)} ", task, weight, f"'{phrase.format(lang)}'") for phrase, task, weight in LANGUAGE_PHRASES
    )
    for lang in LANGUAGES
}
_PHRASE_STARTS = frozenset(first for first, _ in _WORD_PHRASES)
_ASCII_GATES = tuple((gate, markers) for gate, markers in _SYNTAX.items() if gate.isascii())
_OTHER_GATES = tuple((gate, markers) for gate, markers in _SYNTAX.items() if not gate.isascii())
# "a, b or c": the answer options of a classification question
_SLASHED_CHOICES = re.compile(r"\w+/\w+/\w+")
# two or more numbers and a question mark: a word problem
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
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
_VOCABULARY = frozenset(WORDS)
_PUNCTUATION = str.maketrans({c: " " for c in "!\"#$%&'()*+,./:;<=>?@[\\]^`{|}~\n\t\r«»¿¡“”„‘’「」。、，：？！"})
_PRIORITY = ("translate", "summarize", "classify", "extract", "code", "reasoning")  # breaks ties
# Instructions sit at the ends of a long message: words are read from the first and last
# _WORD_WINDOW characters, the cheaper substring markers from the first and last _MARKER_WINDOW.
_WORD_WINDOW = 400
_MARKER_WINDOW = 4000
# A system prompt often states the task ("You are a translator..."); its evidence counts for less
# than the user's own words (only its strongest piece per task, scaled down), and only its first
# _WORD_WINDOW characters are read.
_SYSTEM_WEIGHT = 0.8


def _ends(text: str, width: int) -> str:
    return text if len(text) <= 2 * width else text[:width] + "\n" + text[-width:]


def _evidence(narrow: str, evidence: dict[str, list[tuple[str, float]]], scale: float = 1.0, prefix: str = "") -> None:
    words = narrow.translate(_PUNCTUATION).split()
    for word in sorted(_VOCABULARY.intersection(words)):
        task, weight = WORDS[word]
        evidence.setdefault(task, []).append((f"{prefix}'{word}'", weight * scale))
    for word in sorted(_ONE_WORD_KEYS.intersection(words)):
        task, weight, label = _ONE_WORDS[word]
        evidence.setdefault(task, []).append((prefix + label, weight * scale))
    candidates: list[tuple[str, str, float, str]] = []
    if _PHRASE_STARTS.intersection(words):
        for start in sorted(_PHRASE_PAIRS.intersection(itertools.pairwise(words))):
            candidates += _WORD_PHRASES[start]
    for lang in sorted(_LANGUAGES.intersection(words)):
        candidates += _LANGUAGE_PHRASES[lang]
    if candidates:
        spaced = f" {' '.join(words)} "
        for marker, task, weight, label in candidates:
            if marker in spaced:
                evidence.setdefault(task, []).append((prefix + label, weight * scale))
    ascii_only = narrow.isascii()
    for gate, markers in _ASCII_GATES if ascii_only else _ASCII_GATES + _OTHER_GATES:
        if gate in narrow:
            for marker, task, weight, label in markers:
                if marker in narrow:
                    evidence.setdefault(task, []).append((prefix + label, weight * scale))
    if not ascii_only:
        for marker, task, weight, label in SCRIPT_MARKERS:
            if marker in narrow:
                evidence.setdefault(task, []).append((prefix + label, weight * scale))
    if _has_choices(narrow):
        evidence.setdefault("classify", []).append((prefix + "answer options", 0.4 * scale))


def _has_choices(text: str) -> bool:
    """'a, b or c' (a comma shortly before an ' or ') or 'a/b/c': a question's answer options."""
    at = text.find(" or ")
    while at != -1:
        if text.rfind(", ", max(0, at - 40), at) != -1:
            return True
        at = text.find(" or ", at + 4)
    return text.count("/") >= 2 and _SLASHED_CHOICES.search(text) is not None


class HeuristicTaskClassifier:
    """Keyword and syntax evidence from the ends of the last user message (and the system prompt).

    Each word or marker found adds evidence for one task with a weight; a task's confidence is the
    noisy-or of its evidence, the best task wins, and the reason names the evidence used.
    """

    def classify(self, content: RequestContent) -> TaskGuess:
        wide = _ends(content.last_user_text, _MARKER_WINDOW).lower()
        narrow = _ends(wide, _WORD_WINDOW)
        evidence: dict[str, list[tuple[str, float]]] = {}
        _evidence(narrow, evidence)
        for marker, task, weight, label in _WIDE_MARKERS:
            if marker in wide:
                evidence.setdefault(task, []).append((label, weight))
        if _has_arithmetic(narrow):
            evidence.setdefault("reasoning", []).append(("arithmetic", 0.35))
        if "?" in narrow and len(_NUMBER.findall(narrow)) >= 2:
            evidence.setdefault("reasoning", []).append(("numbers in a question", 0.35))
        if content.system_text:  # one piece of evidence per task, its strongest, scaled down
            system: dict[str, list[tuple[str, float]]] = {}
            _evidence(content.system_text[:_WORD_WINDOW].lower(), system, _SYSTEM_WEIGHT, "system ")
            for task, items in system.items():
                evidence.setdefault(task, []).append(max(items, key=lambda e: e[1]))
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

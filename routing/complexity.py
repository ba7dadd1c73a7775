"""The complexity signal: is this a hard request (``high``) or an ordinary one (``low``)?

An explainable points count, never a model: each piece of evidence is one point, and a request
with ``routing.complexity.high_at`` points or more is ``high``. The evidence:

- a long prompt: at least ``long_prompt_tokens`` prompt tokens (the count routing already has);
- a demanding task: the task signal is one of ``tasks`` (default: reasoning);
- each marker found in the last user message: a reasoning phrase (``step by step``, ``prove``,
  ``derive`` ...), a code block (three backticks), maths notation (LaTeX commands, ``∑ ∫ √ ≤``),
  several questions at once (``multi_part_questions`` question marks or more). Words such as
  "equation" or "integral" are the task heuristic's evidence for ``reasoning``, not markers.

The reason names every point: ``high (3 points, high at 2): 2,400 prompt tokens, task reasoning,
markers: prove``. Cost is bounded: markers are read from the first and last 2,000 characters
of the last user message only (phrases from the first and last 400, where instructions sit), by
plain substring search (no regex, so no backtracking), one search per anchor and a word-boundary
check where an anchor occurs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from core.literals import Task
from core.strict import Strict

# (anchor, phrases): a phrase is looked for only where its anchor occurs, so the text is searched
# once per anchor rather than once per phrase (a search costs about 0.4 µs per KB). Words the task
# heuristic reads as reasoning ("theorem", "lemma", "equation" ...) count through the task.
_REASONING: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("step", ("step by step", "step-by-step")),
    ("prove", ("prove",)),
    ("proof", ("proof",)),
    ("deriv", ("derive", "derivation")),
    ("rigorous", ("rigorous", "rigorously")),
    (" through", ("think through", "reason through", "work through")),
    ("trade", ("trade-off", "trade-offs", "tradeoff", "tradeoffs")),
)
# maths: LaTeX commands (found through their backslash, which prose rarely has), and symbols
_LATEX = ("\\frac", "\\sum", "\\int", "\\sqrt", "\\begin{equation", "\\prod", "\\lim")
_MATHS_SYMBOLS = ("∑", "∫", "√", "∂", "≤", "≥", "≠", "∀", "∃")
_CODE_FENCE = "```"
_WINDOW = 2000  # characters read from each end of the last user message
_PHRASE_WINDOW = 400  # of which phrases are looked for in the first and last this many


class ComplexityPolicy(Strict):
    """Tuning of the complexity signal (``routing.complexity``): each piece of evidence is a point."""

    high_at: int = Field(default=2, ge=1)  # points from which a request is "high"
    long_prompt_tokens: int = Field(default=2000, ge=1)  # a prompt this long is a point
    tasks: list[Task] = Field(default_factory=lambda: list[Task](["reasoning"]))  # these tasks are a point
    multi_part_questions: int = Field(default=3, ge=2)  # this many question marks are a point
    # reasoning phrases, replacing the built-in list (step by step, prove, proof, derive, rigorous,
    # think/reason/work through, trade-offs) when given; matched on word boundaries,
    # case-insensitively, each one found a point. Each costs a search of the message's ends.
    phrases: list[str] | None = Field(default=None, min_length=1)


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class Complexity:
    level: str  # "low" | "high"
    points: int
    reason: str


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _has_word(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` with no letter or digit glued to either end."""
    at = text.find(phrase)
    end = len(phrase)
    while at >= 0:
        before = text[at - 1] if at else " "
        after = text[at + end : at + end + 1] or " "
        if not _is_word_char(before) and not _is_word_char(after):
            return True
        at = text.find(phrase, at + 1)
    return False


class ComplexityEstimator:
    """A :class:`ComplexityPolicy` compiled once per config; :meth:`estimate` is pure CPU."""

    def __init__(self, policy: ComplexityPolicy | None = None) -> None:
        policy = policy or ComplexityPolicy()
        self.policy = policy
        self.high_at = policy.high_at
        self.long_prompt = policy.long_prompt_tokens
        self.tasks = frozenset(policy.tasks)
        self.questions = policy.multi_part_questions
        self._no_evidence = f"low (0 points, high at {self.high_at})"
        if policy.phrases is None:
            self.phrases = _REASONING
        else:
            own = dict.fromkeys(p.strip().lower() for p in policy.phrases if p.strip())
            self.phrases = tuple((phrase, (phrase,)) for phrase in own)

    def estimate(self, last_user_text: str, prompt_tokens: int, task: str) -> Complexity:
        """The level and its reason from the prompt's size, the task and the last user message."""
        evidence: list[str] = []
        if prompt_tokens >= self.long_prompt:
            evidence.append(f"{prompt_tokens:,} prompt tokens")
        if task in self.tasks:
            evidence.append(f"task {task}")
        markers = self.markers(last_user_text)
        points = len(evidence) + len(markers)
        if markers:
            evidence.append("markers: " + ", ".join(markers))
        if not points:
            return Complexity("low", 0, self._no_evidence)
        level = "high" if points >= self.high_at else "low"
        counted = "1 point" if points == 1 else f"{points} points"
        return Complexity(level, points, f"{level} ({counted}, high at {self.high_at}): {', '.join(evidence)}")

    def markers(self, text: str) -> list[str]:
        """The markers found in the ends of ``text``, each named once."""
        if len(text) > 2 * _WINDOW:
            text = text[:_WINDOW] + "\n" + text[-_WINDOW:]
        # phrases are instructions, which sit at the ends of a long message (as the task
        # heuristic's words): only the narrow ends are lowercased and read for them; code fences,
        # LaTeX, symbols and question marks have no case
        narrow = (text if len(text) <= 2 * _PHRASE_WINDOW else text[:_PHRASE_WINDOW] + "\n" + text[-_PHRASE_WINDOW:]).lower()
        found: list[str] = []
        for anchor, phrases in self.phrases:
            if anchor in narrow:
                found.extend(phrase for phrase in phrases if _has_word(narrow, phrase))
        if "`" in text and _CODE_FENCE in text:
            found.append("code block")
        if ("\\" in text and any(m in text for m in _LATEX)) or (not text.isascii() and any(m in text for m in _MATHS_SYMBOLS)):
            found.append("maths")
        if "?" in text:
            questions = text.count("?")
            if questions >= self.questions:
                found.append(f"{questions} questions")
        return found

"""The task signal: hints, structure, then the explainable heuristic (or a pluggable classifier)."""

from __future__ import annotations

import pytest

from routing.content import RequestContent, extract_content
from routing.errors import InvalidHint
from routing.task import HeuristicTaskClassifier, TaskGuess, detect_task
from routing.types import RoutingRequest

HEURISTIC = HeuristicTaskClassifier()


def task_of(body: dict, endpoint: str = "chat", hints: dict | None = None, classifier=HEURISTIC):
    req = RoutingRequest(model="auto", endpoint=endpoint, body=body, hints=hints or {})  # type: ignore[arg-type]
    return detect_task(req, extract_content(req.endpoint, body), classifier)


def ask(text: str, **body: object):
    return task_of({"messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": text}], **body})


@pytest.mark.parametrize(
    "text,task",
    [
        ("Write a Python function that parses ISO dates.", "code"),
        ("Why does this fail?\n```js\nconst x = await fetch(url);\nconsole.log(x)\n```", "code"),
        ("Traceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 'x'", "code"),
        ("Summarize the following meeting notes in three bullet points: ...", "summarize"),
        ("tl;dr of this article please", "summarize"),
        ("Translate into French: the invoice is overdue.", "translate"),
        ("Can you translate this paragraph to German?", "translate"),
        ("Classify the sentiment of this review as positive or negative.", "classify"),
        ("Which category does this ticket belong to: billing, outage or other?", "classify"),
        ("Extract all the dates and amounts from this invoice.", "extract"),
        ("Prove that the square root of 2 is irrational.", "reasoning"),
        ("Solve the equation x^2 - 5x + 6 = 0 step by step.", "reasoning"),
        ("Solve for x: 3x + 7 = 22", "reasoning"),
        ("Calculate 17 * 23 + 4", "reasoning"),
        ("The meeting moved from 2023-11-07 to 12/01, see you then", "chat"),
        ("Hi! How was your weekend?", "chat"),
        ("What is the capital of France?", "chat"),
    ],
)
def test_heuristic_tasks_from_the_last_user_message(text: str, task: str) -> None:
    signal = ask(text)
    assert signal.task == task, signal.reason


def test_reason_names_the_evidence() -> None:
    signal = ask("Summarize this report please")
    assert signal.reason.startswith("heuristic: summarize") and "'summarize'" in signal.reason


def test_earlier_turns_do_not_decide_the_task() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Translate this into Spanish: hello"},
            {"role": "assistant", "content": "hola"},
            {"role": "user", "content": "thanks, and how are you today?"},
        ]
    }
    assert task_of(body).task == "chat"


def test_hint_wins_over_everything() -> None:
    signal = task_of(
        {"messages": [{"role": "user", "content": "Write a function"}], "tools": [{"type": "function"}]},
        hints={"task": "summarize"},
    )
    assert (signal.task, signal.reason) == ("summarize", "caller hint: summarize")
    assert task_of({"messages": [], "metadata": {"x-switchyard-task": "Classify"}}).task == "classify"


def test_invalid_task_hint_raises() -> None:
    with pytest.raises(InvalidHint, match="x-switchyard-task"):
        task_of({"messages": []}, hints={"task": "poetry"})


def test_structure_decides_before_the_text() -> None:
    assert task_of({"input": "Write a Python function"}, "embeddings").task == "embed"
    assert ask("Summarize this", tools=[{"type": "function", "function": {"name": "f"}}]).task == "tool_use"
    assert ask("Summarize this", tools=[{"type": "function"}], tool_choice="none").task == "summarize"
    assert ask("Summarize this", response_format={"type": "json_schema", "json_schema": {}}).task == "extract"
    assert ask("Summarize this", response_format={"type": "json_object"}).task == "summarize"


def test_long_messages_are_read_at_their_ends_in_bounded_time() -> None:
    filler = "lorem ipsum dolor sit amet " * 20000
    assert ask("Please summarize the following document.\n" + filler).task == "summarize"
    assert ask(filler + "\nNow translate the above into Italian.").task == "translate"


class FixedClassifier:
    def __init__(self, guess: TaskGuess) -> None:
        self.guess = guess

    def classify(self, content: RequestContent) -> TaskGuess:
        return self.guess


def test_a_pluggable_classifier_replaces_the_heuristic() -> None:
    signal = task_of(
        {"messages": [{"role": "user", "content": "hi"}]}, classifier=FixedClassifier(TaskGuess("code", 0.9, "model says code"))
    )
    assert (signal.task, signal.reason) == ("code", "model says code")


def test_low_confidence_falls_back_to_chat_and_says_so() -> None:
    signal = task_of(
        {"messages": [{"role": "user", "content": "hi"}]}, classifier=FixedClassifier(TaskGuess("code", 0.3, "weak"))
    )
    assert signal.task == "chat" and "below 0.50 confidence" in signal.reason


def test_an_unknown_task_from_a_classifier_is_chat() -> None:
    signal = task_of(
        {"messages": [{"role": "user", "content": "hi"}]}, classifier=FixedClassifier(TaskGuess("poetry", 0.99, "?"))
    )
    assert signal.task == "chat"

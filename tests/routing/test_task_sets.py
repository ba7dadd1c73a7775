"""The labelled task sets: big and varied enough to measure with, separate from each other, and the
heuristic's accuracy on the held-out set (docs/task-classification.md) holds."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import pytest

from bench.task_sets import EVAL, TEXT_TASKS, TRAIN, Item, load, score
from core.literals import TASKS
from routing.task import HeuristicTaskClassifier

EVAL_ITEMS = load(EVAL)
TRAIN_ITEMS = load(TRAIN)
# Measured 0.791 on the 344 eval requests (python -m bench.task_eval); the floor leaves room for
# nothing but a deliberate change of the weights, which must re-measure and lower it openly.
HEURISTIC_EVAL_FLOOR = 0.78


def _tokens(text: str) -> set[str]:
    """Lower-cased words, plus character pairs of scripts written without spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    words = set(re.findall(r"[^\W\d_]+|\d+", text))
    cjk = "".join(re.findall(r"[\u3040-\u30ff\u4e00-\u9fff]", text))
    return words | {cjk[i : i + 2] for i in range(len(cjk) - 1)}


def _normalised(item: Item) -> str:
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", item.text).lower()))


def test_the_text_tasks_are_the_literal_tasks_minus_the_structural_ones() -> None:
    # embed (the endpoint) and tool_use (tools in the request) never reach a text classifier;
    # a new task in core/literals.py must get labelled examples here.
    assert set(TEXT_TASKS) == set(TASKS) - {"embed", "tool_use"}


def test_the_eval_set_is_large_and_covers_every_text_task_in_every_shape() -> None:
    assert len(EVAL_ITEMS) >= 300
    labels = Counter(item.label for item in EVAL_ITEMS)
    assert set(labels) == set(TEXT_TASKS) and min(labels.values()) >= 40, labels
    langs = Counter(item.lang for item in EVAL_ITEMS)
    assert {"en", "fr", "de", "es", "ja", "zh"} <= set(langs) and min(langs.values()) >= 8, langs
    assert sum(1 for item in EVAL_ITEMS if item.note.startswith("hard:")) >= 10
    assert sum(1 for item in EVAL_ITEMS if item.endpoint == "completions") >= 5
    with_system = [i for i in EVAL_ITEMS if "messages" in i.body and i.body["messages"][0]["role"] == "system"]
    assert len(with_system) >= 30
    lengths = sorted(len(item.text) for item in EVAL_ITEMS)
    assert lengths[0] < 40 and lengths[-1] > 600  # one-liners to pasted documents


def test_the_training_set_is_its_own() -> None:
    assert len(TRAIN_ITEMS) >= 280
    labels = Counter(item.label for item in TRAIN_ITEMS)
    assert set(labels) == set(TEXT_TASKS) and min(labels.values()) >= 35, labels
    assert len({item.id for item in EVAL_ITEMS + TRAIN_ITEMS}) == len(EVAL_ITEMS) + len(TRAIN_ITEMS)


def test_no_request_is_in_both_sets_nor_a_near_copy() -> None:
    train_texts = {_normalised(item) for item in TRAIN_ITEMS}
    assert not [item.id for item in EVAL_ITEMS if _normalised(item) in train_texts]
    train_tokens = [(item.id, _tokens(item.text)) for item in TRAIN_ITEMS]
    near = []
    for item in EVAL_ITEMS:
        mine = _tokens(item.text)
        for other, theirs in train_tokens:
            jaccard = len(mine & theirs) / max(1, len(mine | theirs))
            if jaccard >= 0.6:
                near.append((item.id, other, round(jaccard, 2)))
    assert not near


def test_no_request_appears_twice_within_a_set() -> None:
    for items in (EVAL_ITEMS, TRAIN_ITEMS):
        texts = Counter(_normalised(item) for item in items)
        assert [t for t, n in texts.items() if n > 1] == []


def test_the_heuristic_holds_its_measured_accuracy_on_the_held_out_set() -> None:
    result = score(HeuristicTaskClassifier(), EVAL_ITEMS)
    assert result.accuracy >= HEURISTIC_EVAL_FLOOR, (result.accuracy, result.misses[:20])
    # and it is not right by answering chat: every task is recognised at least half the time
    # (measured: reasoning 0.54 is the weakest, word problems without a maths word)
    recalls = {task: row["recall"] for task, row in result.per_class().items()}
    assert min(recalls.values()) >= 0.5, recalls


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Traduis ce paragraphe en anglais : bonjour à tous", "translate"),
        ("この文を英語に翻訳してください：明日は雨です。", "translate"),
        ("请用三句话总结下面这篇文章：今天天气很好。", "summarize"),
        ("Extrahiere alle Beträge aus diesem Text: 12 Euro, 30 Euro", "extract"),
        ("Is this tweet toxic or not? 'nice work'", "classify"),
        ("Label this ticket: bug, feature or question? 'add dark mode'", "classify"),
        ("How many minutes does a train need for 120 km at 80 km/h?", "reasoning"),
        ("Is tipping expected in restaurants in Germany?", "chat"),  # 'in german' is not in 'in germany'
        ("Let's practise small talk in English, you start.", "chat"),
    ],
)
def test_heuristic_cues_in_other_languages_and_shapes(text: str, task: str) -> None:
    item = Item("t", task, "en", {"model": "auto", "messages": [{"role": "user", "content": text}]})
    assert score(HeuristicTaskClassifier(), [item]).correct == 1, text


def test_a_task_stated_in_the_system_prompt_counts_for_less_than_the_users_own_words() -> None:
    system = {"role": "system", "content": "You are a translator. Translate everything into German."}
    bare = Item("a", "translate", "en", {"model": "auto", "messages": [system, {"role": "user", "content": "Good morning."}]})
    assert score(HeuristicTaskClassifier(), [bare]).correct == 1
    asked = {"role": "user", "content": "Summarise this email in one line: the meeting moved to Friday."}
    overruled = Item("b", "summarize", "en", {"model": "auto", "messages": [system, asked]})
    assert score(HeuristicTaskClassifier(), [overruled]).correct == 1

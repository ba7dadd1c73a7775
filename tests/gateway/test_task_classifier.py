"""``routing.task_classifier``: the embedded classifier (real llama.cpp, the bundled SmolLM2 and the
shipped head) classifies, holds its measured accuracy, stays within its budget, and the config
switch decides which classifier routes a request through the gateway."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import httpx
import openai
import pytest
from sqlmodel import select

from bench.task_sets import EVAL, load, score
from gateway.config import ConfigError
from gateway.db.models import UsageRecord
from gateway.task_classifier import EmbeddedTaskClassifier, build_task_classifier, plan_executor, shared_classifier
from providers.llamacpp import resolve_model_path
from providers.task_embedding import MODEL, TaskEmbedder, TaskHead, TokenEmbedder, unavailable_reason
from routing.content import extract_content
from routing.spec import RoutingDefaults
from routing.task import HeuristicTaskClassifier, detect_task
from routing.types import RoutingRequest
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

BUDGET_MS = 10_000.0  # the most the config allows: the tests measure the model, not the load
# Measured 0.712 on the 344 eval requests (python -m bench.task_eval, docs/task-classification.md);
# the shipped head reads token embeddings, so the whole set takes well under a second here.
EMBEDDED_EVAL_FLOOR = 0.70


@pytest.fixture(scope="module")
def embedded() -> EmbeddedTaskClassifier:
    classifier = shared_classifier(BUDGET_MS / 1000)  # the instance the gateway's config below gets
    classifier.start().result(timeout=120)
    return classifier


def _task(classifier, text: str, system: str | None = None):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    request = RoutingRequest(model="auto", endpoint="chat", body={"model": "auto", "messages": messages})
    return detect_task(request, extract_content("chat", request.body), classifier)


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Write a Python function that returns the n-th Fibonacci number.", "code"),
        ("Translate into German: 'The train is late again.'", "translate"),
        ("Please summarise this article in two sentences: The council approved the new budget after a long debate.", "summarize"),
        ("Hi there! How has your day been?", "chat"),
    ],
)
def test_the_embedded_classifier_gets_clear_requests_right(embedded: EmbeddedTaskClassifier, text: str, task: str) -> None:
    signal = _task(embedded, text)
    assert signal.task == task, signal.reason
    assert signal.reason.startswith("embedded: ")


def test_the_embedded_classifier_holds_its_measured_accuracy(embedded: EmbeddedTaskClassifier) -> None:
    result = score(embedded, load(EVAL))
    assert result.total >= 300
    assert result.accuracy >= EMBEDDED_EVAL_FLOOR, (result.accuracy, result.misses[:20])


def test_a_forward_pass_embedder_over_its_budget_leaves_the_answer_to_the_heuristic() -> None:
    # The shipped head reads token embeddings (no forward pass); a head trained on the model's
    # forward pass (bench.task_train --pooling mean) waits for a model thread, within its budget.
    head = dataclasses.replace(TaskHead.load(), pooling="mean")
    slow = EmbeddedTaskClassifier(TaskEmbedder(resolve_model_path(MODEL), head), budget_s=0.000_001)
    try:
        assert slow.blocking and slow.executor is not None and plan_executor(slow) is slow.executor
        slow.start().result(timeout=120)
        signal = _task(slow, "Translate into French: good morning")
    finally:
        slow.close()
    assert signal.task == "translate"
    assert signal.reason.startswith("the embedded classifier took over 0 ms, so heuristic: translate"), signal.reason


def test_a_broken_model_leaves_routing_to_the_heuristic(tmp_path: Path) -> None:
    embedder = TokenEmbedder(tmp_path / "missing.gguf", TaskHead.load())
    broken = EmbeddedTaskClassifier(embedder, budget_s=30)
    assert _task(broken, "Summarize this: the meeting moved to Friday.").reason.startswith(
        "the embedded classifier is still loading, so heuristic: summarize"
    )
    assert embedder.start().exception(timeout=60) is not None
    signal = _task(broken, "Summarize this: the meeting moved to Friday.")
    assert signal.task == "summarize" and "the embedded classifier failed" in signal.reason and "heuristic" in signal.reason


def test_token_embeddings_are_planned_on_the_event_loop(embedded: EmbeddedTaskClassifier) -> None:
    assert build_task_classifier(RoutingDefaults()) is None  # the router's own heuristic
    assert plan_executor(None) is None and plan_executor(HeuristicTaskClassifier()) is None
    chosen = build_task_classifier(RoutingDefaults(task_classifier="embedded", task_classifier_budget_ms=BUDGET_MS))
    assert chosen is embedded and not embedded.blocking and plan_executor(chosen) is None


def test_embedded_is_refused_with_the_key_path_when_llama_cpp_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ConfigError) as refused:
        make_config({"deployments": [fake_deployment("a", "http://127.0.0.1:9/v1")], "routing": {"task_classifier": "embedded"}})
    message = str(refused.value)
    assert "routing.task_classifier: 'embedded' needs llama-cpp-python" in message and "heuristic" in message


def test_embedded_is_refused_without_its_head(tmp_path: Path) -> None:
    reason = unavailable_reason(tmp_path / "task_head.json")
    assert reason is not None and "python -m bench.task_train" in reason
    assert unavailable_reason() is None  # the shipped head, model and llama.cpp are all here


def test_an_unknown_classifier_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"routing\.task_classifier"):
        make_config({"deployments": [fake_deployment("a", "http://127.0.0.1:9/v1")], "routing": {"task_classifier": "bert"}})


# Requests without a keyword the heuristic knows; the embedded classifier reads them differently.
CANDIDATES = (
    "def add(a, b):\n    return a + b\n\nWhy does add('1', 2) blow up?",
    "Bonjour, comment allez-vous ? -> English",
    "Customer: my parcel never came. Agent: sorry, a refund is on its way. Customer: thanks. -- in two lines for the report",
    "Ana owes Ben 12 euros and Ben owes Carla 7 euros; who ends up paying whom, and how much?",
)


def _differing(embedded: EmbeddedTaskClassifier) -> tuple[str, str, str]:
    for text in CANDIDATES:
        heuristic, model = _task(HeuristicTaskClassifier(), text).task, _task(embedded, text).task
        if heuristic != model:
            return text, heuristic, model
    pytest.fail("every candidate is classified alike by both classifiers: add one they disagree on")


async def test_the_config_switch_decides_which_classifier_routes_the_request(
    embedded: EmbeddedTaskClassifier, upstream: FakeUpstream, tmp_path: Path
) -> None:
    text, heuristic_task, embedded_task = _differing(embedded)
    seen = {}
    for choice in ("heuristic", "embedded"):
        config = make_config(
            {
                "database_url": f"sqlite:///{tmp_path}/{choice}.db",
                "deployments": [fake_deployment("general", upstream.base_url), fake_deployment("special", upstream.base_url)],
                "routes": [
                    {
                        "name": "auto",
                        "candidates": ["general", "special"],
                        "rules": [{"name": "by-task", "when": {"task": [embedded_task]}, "allow": {"deployments": ["special"]}}],
                    }
                ],
                "routing": {"task_classifier": choice, "task_classifier_budget_ms": BUDGET_MS},
                "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / f"spool-{choice}")},
            }
        )
        body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
        async with app_client(config) as client:
            explained = (await client.post("/v1/route/explain", json=body)).json()
            async with httpx.AsyncClient(transport=client._transport, base_url="http://gateway/v1") as http:
                sdk = openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)
                raw = await sdk.chat.completions.with_raw_response.create(model="auto", messages=body["messages"])
            state = client.app.state.gateway
            await state.ledger.flush()
            async with state.db.session() as session:
                rows = list((await session.exec(select(UsageRecord))).all())
        assert len(rows) == 1
        seen[choice] = (raw.headers["x-switchyard-task"], raw.headers["x-switchyard-deployment"], rows[0].task, explained)
    h_header, h_deployment, h_row, h_explain = seen["heuristic"]
    e_header, e_deployment, e_row, e_explain = seen["embedded"]
    assert (h_header, h_row, h_deployment) == (heuristic_task, heuristic_task, "general")
    assert (e_header, e_row, e_deployment) == (embedded_task, embedded_task, "special")
    assert h_explain["signals"]["task_reason"].startswith(("heuristic:", "no task evidence"))
    assert e_explain["signals"]["task_reason"].startswith("embedded: ")


def test_the_head_ships_in_the_package() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "data/*.json" in package_data["providers"]
    assert (root / "providers" / "data" / "task_head.json").is_file()

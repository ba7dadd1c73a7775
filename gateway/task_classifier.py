"""The router's task classifier, as ``routing.task_classifier`` chooses it.

``heuristic`` is the router's own keyword classifier (routing/task.py): microseconds per request,
planned on the event loop. ``embedded`` is :class:`EmbeddedTaskClassifier`: the bundled model's
embeddings and a trained head (providers/task_embedding.py). It may wait for its model, at most
``routing.task_classifier_budget_ms``, so requests are then planned on its own threads
(:func:`plan_executor`), never on the event loop; when the model is busy or late the heuristic
answers and the reason says so. docs/task-classification.md compares the two.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import OrderedDict
from concurrent.futures import Executor
from pathlib import Path

from providers.task_embedding import MODEL, TaskEmbedder, TaskHead, TokenEmbedder, make_embedder, unavailable_reason
from routing.content import RequestContent
from routing.spec import RoutingDefaults
from routing.task import HeuristicTaskClassifier, TaskClassifier, TaskGuess

CACHE_SIZE = 512  # guesses kept for texts seen again (a fixed system prompt and a short question)
PLAN_THREADS = 4  # threads that plan requests while their classifier may wait


class EmbeddedTaskClassifier:
    """A :class:`~routing.task.TaskClassifier` over SmolLM2 embeddings and the shipped head.

    Waits at most ``budget_s`` for an embedding; otherwise answers with ``fallback`` (the
    heuristic) and says why in the reason."""

    def __init__(self, embedder: TaskEmbedder | TokenEmbedder, budget_s: float, fallback: TaskClassifier | None = None) -> None:
        self.embedder = embedder
        self.head = embedder.head
        self.budget_s = budget_s
        self.fallback = fallback or HeuristicTaskClassifier()
        # A forward-pass embedder may keep classify() waiting: plan on these threads, not on an
        # event loop. Token embeddings answer at once.
        self.blocking: bool = embedder.blocking
        self.executor = (
            concurrent.futures.ThreadPoolExecutor(PLAN_THREADS, thread_name_prefix="switchyard-plan") if self.blocking else None
        )
        self._cache: OrderedDict[tuple[str, str], TaskGuess] = OrderedDict()
        self._cache_lock = threading.Lock()

    def start(self) -> concurrent.futures.Future[None]:
        """Load the embedding model (in its own thread); the future settles when it is ready."""
        return self.embedder.start()

    def classify(self, content: RequestContent) -> TaskGuess:
        user, system = content.last_user_text, content.system_text[: self.head.system_chars]
        key = (user[:2000] + user[-500:] if len(user) > 2500 else user, system)
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        if not self.embedder.ready.done():
            self.embedder.start()
            return self._fall_back(content, "the embedded classifier is still loading")
        future = self.embedder.submit(user, system)
        if future is None:
            return self._fall_back(content, "the embedded classifier is busy")
        try:
            vector = future.result(timeout=self.budget_s)
        except concurrent.futures.TimeoutError:
            future.cancel()  # still queued: never embedded; already running: finishes unused
            return self._fall_back(content, f"the embedded classifier took over {self.budget_s * 1000:.0f} ms")
        except Exception as exc:  # noqa: BLE001 - a broken model must not break routing
            return self._fall_back(content, f"the embedded classifier failed ({type(exc).__name__}: {exc})")
        probabilities = self.head.probabilities(vector)
        order = probabilities.argsort()[::-1]
        best, second = self.head.labels[order[0]], self.head.labels[order[1]]
        guess = TaskGuess(
            best,
            round(float(probabilities[order[0]]), 4),
            f"embedded: {best} ({probabilities[order[0]]:.2f}), then {second} ({probabilities[order[1]]:.2f})",
        )
        with self._cache_lock:
            self._cache[key] = guess
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return guess

    def _fall_back(self, content: RequestContent, why: str) -> TaskGuess:
        guess = self.fallback.classify(content)
        return TaskGuess(guess.task, guess.confidence, f"{why}, so {guess.reason}")

    def close(self) -> None:
        """Stop the plan threads and the embedding model."""
        self.embedder.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False)


_EMBEDDERS: dict[str, TaskEmbedder | TokenEmbedder] = {}
_CLASSIFIERS: dict[tuple[str, float], EmbeddedTaskClassifier] = {}
_SHARED_LOCK = threading.Lock()


def shared_classifier(budget_s: float, head_path: Path | None = None) -> EmbeddedTaskClassifier:
    """The classifier for ``budget_s``; one embedding model per process, kept across config reloads."""
    from providers.llamacpp import resolve_model_path

    key = str(head_path or "")
    with _SHARED_LOCK:
        classifier = _CLASSIFIERS.get((key, budget_s))
        if classifier is None:
            embedder = _EMBEDDERS.get(key)
            if embedder is None:
                embedder = _EMBEDDERS[key] = make_embedder(resolve_model_path(MODEL), TaskHead.load(head_path))
            classifier = _CLASSIFIERS[(key, budget_s)] = EmbeddedTaskClassifier(embedder, budget_s)
        return classifier


def embedded_unavailable() -> str | None:
    """Why ``embedded`` cannot run in this process (llama-cpp-python, the model or the head
    missing), or None."""
    return unavailable_reason()


def build_task_classifier(routing: RoutingDefaults) -> TaskClassifier | None:
    """The classifier to hand the router; None means the router's default heuristic."""
    if routing.task_classifier != "embedded":
        return None
    return shared_classifier(routing.task_classifier_budget_ms / 1000)


def plan_executor(classifier: TaskClassifier | None) -> Executor | None:
    """Threads to plan on when ``classifier`` may block its caller; None: plan on the event loop."""
    if classifier is None or not getattr(classifier, "blocking", False):
        return None
    executor: Executor | None = getattr(classifier, "executor", None)
    return executor

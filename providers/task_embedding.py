"""The embedded task classifier's model half: the bundled SmolLM2's embedding of a request's
instruction, and the small linear head that reads it, trained on tests/data/tasks/train.jsonl
(``python -m bench.task_train``) and shipped as providers/data/task_head.json.

gateway/task_classifier.py wraps them as the router's :class:`routing.task.TaskClassifier`
(``routing.task_classifier: embedded``). Their cost decides how they run:

- An embedding is a forward pass of the 135M model over the text, about 0.2 GFLOP a token, so only
  a window of it is embedded: the first and last tokens of the last user message (the head's
  ``window``), after the first characters of the system prompt. Measured cost: docs/task-classification.md.
- One worker thread owns the embedding model (a llama.cpp context is not thread-safe) and takes
  one text at a time, with at most :data:`MAX_WAITING` more waiting; :meth:`TaskEmbedder.submit`
  refuses more at once. A caller waits for the future with its own budget; a late embedding still
  finishes (a llama.cpp decode cannot be interrupted), which is why the queue is short.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEAD_PATH = Path(__file__).resolve().parent / "data" / "task_head.json"
MODEL = "smollm2-135m-instruct"
MAX_WAITING = 2  # requests queued behind the one being embedded; more fall back at once


def unavailable_reason(head_path: Path | None = None) -> str | None:
    """Why ``routing.task_classifier: embedded`` cannot run here, or None when it can."""
    head_path = head_path or HEAD_PATH
    if importlib.util.find_spec("llama_cpp") is None:
        return "needs llama-cpp-python, which is not installed (pip install 'switchyard-gateway[local]')"
    from providers.llamacpp import ProviderSetupError, resolve_model_path

    try:
        resolve_model_path(MODEL)
    except ProviderSetupError as exc:
        return f"needs the bundled model: {exc}"
    if not head_path.is_file():
        return f"needs its trained head {head_path} (python -m bench.task_train)"
    return None


@dataclass(frozen=True)
class TaskHead:
    """A multinomial logistic regression over standardised embeddings, and how its input was made."""

    labels: tuple[str, ...]
    weights: Any  # numpy (labels, dims)
    bias: Any  # numpy (labels,)
    mean: Any  # numpy (dims,)
    scale: Any  # numpy (dims,)
    head_tokens: int  # tokens kept from the start of the last user message ...
    tail_tokens: int  # ... and from its end
    system_chars: int  # characters of the system prompt put before it
    pooling: str  # "tokens" (the input embedding table, no forward pass) | "mean" | "last" (a forward pass)
    template: str  # "{system}" (the system_template, or nothing) and "{user}" are replaced
    system_template: str  # "{system}" is replaced by the start of the system prompt
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: Path | None = None) -> TaskHead:
        import numpy as np

        data = json.loads((path or HEAD_PATH).read_text(encoding="utf-8"))
        return cls(
            labels=tuple(data["labels"]),
            weights=np.asarray(data["weights"], dtype=np.float32),
            bias=np.asarray(data["bias"], dtype=np.float32),
            mean=np.asarray(data["mean"], dtype=np.float32),
            scale=np.asarray(data["scale"], dtype=np.float32),
            head_tokens=int(data["head_tokens"]),
            tail_tokens=int(data["tail_tokens"]),
            system_chars=int(data["system_chars"]),
            pooling=str(data["pooling"]),
            template=str(data["template"]),
            system_template=str(data["system_template"]),
            meta=dict(data.get("meta", {})),
        )

    def save(self, path: Path = HEAD_PATH) -> None:
        data = {
            "labels": list(self.labels),
            "head_tokens": self.head_tokens,
            "tail_tokens": self.tail_tokens,
            "system_chars": self.system_chars,
            "pooling": self.pooling,
            "template": self.template,
            "system_template": self.system_template,
            "meta": self.meta,
            "bias": [round(float(x), 6) for x in self.bias],
            "mean": [round(float(x), 6) for x in self.mean],
            "scale": [round(float(x), 6) for x in self.scale],
            "weights": [[round(float(x), 5) for x in row] for row in self.weights],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")

    def probabilities(self, vector: Any) -> Any:
        import numpy as np

        logits = self.weights @ ((np.asarray(vector, dtype=np.float32) - self.mean) / self.scale) + self.bias
        logits = logits - logits.max()
        exp = np.exp(logits)
        return exp / exp.sum()


def embedding_text(
    tokenize: Callable[[str], list[int]], detokenize: Callable[[list[int]], str], head: TaskHead, user: str, system: str
) -> str:
    """The text the model embeds: the ends of ``user`` and the start of ``system`` in the head's template."""
    tokens = tokenize(user)
    if len(tokens) > head.head_tokens + head.tail_tokens:
        tokens = tokens[: head.head_tokens] + (tokens[-head.tail_tokens :] if head.tail_tokens else [])
    system = system[: head.system_chars].strip()
    prefix = head.system_template.replace("{system}", system) if system else ""
    return head.template.replace("{system}", prefix).replace("{user}", detokenize(tokens))


class TokenEmbedder:
    """The model's own token embeddings (its input embedding table), mean-pooled over the window:
    no forward pass, so microseconds a request and no worker thread. The table is read from the
    GGUF with the ``gguf`` package and kept as float16 (49,152 x 576: 57 MB); the tokenizer is
    llama.cpp's, loaded without weights (``vocab_only``)."""

    blocking = False  # classify() answers at once: plan on the event loop

    def __init__(self, model_path: Path, head: TaskHead) -> None:
        self.model_path = model_path
        self.head = head
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._lock = threading.Lock()
        self._started = False
        self._vocab: Any = None
        self._table: Any = None

    def start(self) -> concurrent.futures.Future[None]:
        """Load the tokenizer and the table in a thread (seconds); the future settles when done."""
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._load, name="switchyard-task-embeddings", daemon=True).start()
        return self.ready

    def _load(self) -> None:
        try:
            import gguf
            import llama_cpp
            import numpy as np

            reader = gguf.GGUFReader(str(self.model_path))
            tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
            self._table = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float16)
            self._vocab = llama_cpp.Llama(model_path=str(self.model_path), vocab_only=True, verbose=False)
        except BaseException as exc:  # noqa: BLE001 - reported through the future
            self.ready.set_exception(exc)
        else:
            self.ready.set_result(None)

    def _tokens(self, text: str) -> list[int]:
        with self._lock:  # llama.cpp's tokenizer is not documented as thread-safe
            return list(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def embed(self, user: str, system: str) -> Any:
        """The mean of the window's token vectors, L2-normalised."""
        import numpy as np

        head = self.head
        # tokenize only the ends: the window never needs more than a few characters a token
        edge = 8 * (head.head_tokens + head.tail_tokens)
        tokens = self._tokens(user if len(user) <= 2 * edge else user[:edge] + " " + user[-edge:])
        if len(tokens) > head.head_tokens + head.tail_tokens:
            tokens = tokens[: head.head_tokens] + (tokens[-head.tail_tokens :] if head.tail_tokens else [])
        if head.system_chars and system:
            tokens += self._tokens(system[: head.system_chars])
        if not tokens:
            return np.zeros(self._table.shape[1], dtype=np.float32)
        vector = self._table[tokens].astype(np.float32).mean(axis=0)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def submit(self, user: str, system: str) -> concurrent.futures.Future[Any] | None:
        """The embedding as a settled future (the same shape as :meth:`TaskEmbedder.submit`)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if not self.ready.done():
            self.start()
            future.set_exception(RuntimeError("the task embeddings are still loading"))
            return future
        if self.ready.exception() is not None:
            future.set_exception(RuntimeError(f"the task embeddings did not load: {self.ready.exception()}"))
            return future
        try:
            future.set_result(self.embed(user, system))
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            future.set_exception(exc)
        return future

    def close(self) -> None:
        pass


def make_embedder(model_path: Path, head: TaskHead) -> TokenEmbedder | TaskEmbedder:
    """The embedder the head was trained with: token embeddings, or a forward pass (mean/last pooling)."""
    return TokenEmbedder(model_path, head) if head.pooling == "tokens" else TaskEmbedder(model_path, head)


class TaskEmbedder:
    """One thread that loads the embedding model and embeds one text at a time (a forward pass)."""

    blocking = True  # a caller may wait up to its budget: never on an event loop

    def __init__(self, model_path: Path, head: TaskHead, threads: int = 1) -> None:
        self.model_path = model_path
        self.head = head
        self.threads = threads
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._jobs: queue.Queue[tuple[str, str, concurrent.futures.Future[Any]] | None] = queue.Queue(maxsize=MAX_WAITING)
        self._thread = threading.Thread(target=self._run, name="switchyard-task-embedder", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> concurrent.futures.Future[None]:
        """Load the model in the worker thread; the future settles when it is loaded (or failed)."""
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
        return self.ready

    def submit(self, user: str, system: str) -> concurrent.futures.Future[Any] | None:
        """A future of the embedding, or None when the worker already has its fill of waiting texts."""
        self.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._jobs.put_nowait((user, system, future))
        except queue.Full:
            return None
        return future

    def close(self) -> None:
        if self._started:
            try:
                self._jobs.put(None, timeout=1.0)
            except queue.Full:
                pass

    def _load(self) -> Any:
        import llama_cpp

        from providers.llamacpp_worker import load_llama

        pooling = {"mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}[self.head.pooling]
        wanted = self.head.head_tokens + self.head.tail_tokens + self.head.system_chars + 64  # template and system
        n_ctx = -(-wanted // 256) * 256  # llama.cpp's graphs want whole 256-token blocks (a GGML_ASSERT otherwise)
        return load_llama(
            model_path=str(self.model_path),
            embedding=True,
            pooling_type=pooling,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_threads=self.threads,
            verbose=False,
        )

    def _run(self) -> None:
        try:
            llama = self._load()
        except BaseException as exc:  # noqa: BLE001 - reported through every future
            self.ready.set_exception(exc)
            llama = None
        else:
            self.ready.set_result(None)

        def tokenize(text: str) -> list[int]:
            return list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

        def detokenize(tokens: list[int]) -> str:
            return bytes(llama.detokenize(tokens)).decode("utf-8", "replace")

        while (job := self._jobs.get()) is not None:
            user, system, future = job
            if not future.set_running_or_notify_cancel():
                continue
            if llama is None:
                future.set_exception(RuntimeError("the task embedding model did not load"))
                continue
            try:
                future.set_result(llama.embed(embedding_text(tokenize, detokenize, self.head, user, system), normalize=True))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
        if llama is not None:
            llama.close()

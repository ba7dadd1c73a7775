"""Worker threads that own llama-cpp-python models, fed by a bounded queue.

Each :class:`ModelWorker` thread loads one ``Llama`` instance and is the only thread that ever
touches it. A :class:`WorkerPool` shares one job queue between its workers; the event loop only
enqueues :class:`Job` objects and awaits their events, so nothing blocks the loop.

Per-token hooks (installed on each ``Llama`` instance by wrapping its ``generate`` and
``sample`` methods) do three things for the job being served:

* stop generation promptly when the job is cancelled (the check runs before every token),
* count prompt and generated tokens as they happen (usage of a cut stream stays exact),
* record the log-probabilities of sampled tokens when the request asked for ``logprobs``
  (llama-cpp-python's own ``logprobs`` needs ``logits_all=True``: n_ctx x n_vocab floats).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import UpstreamConnectionError, UpstreamStatus


class GenerationCancelled(Exception):
    """Raised inside the worker thread when the job's caller went away."""


class ModelLoadError(RuntimeError):
    """The worker could not load its model; every job it takes fails with this."""


@dataclass(slots=True)
class TokenRecord:
    token: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(slots=True)
class RunMeter:
    """One generation (one choice): prompt size and tokens sampled so far."""

    prompt_tokens: int
    counts_prompt: bool
    completion_tokens: int = 0
    records: list[TokenRecord] = field(default_factory=list)


class Job:
    """One request for a worker: ``fn(llama, job)`` runs in the worker thread.

    ``fn`` may call :meth:`emit` to hand items to the event loop as they are produced; its return
    value (or exception) ends the job. :meth:`cancel` asks the worker to stop at the next token.
    """

    def __init__(self, fn: Callable[[Any, Job], Any], loop: asyncio.AbstractEventLoop, top_logprobs: int | None) -> None:
        self.fn = fn
        self.loop = loop
        self.top_logprobs = top_logprobs  # None: no logprobs recorded
        self.count_prompt = True  # set by fn before each generation
        self.runs: list[RunMeter] = []
        self.started = False
        self.done = False
        self._cancelled = threading.Event()
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._finished = asyncio.Event()
        self._unread = 0  # records not yet taken by take_records()

    # --- worker thread side -------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, item: Any) -> None:
        self._post("item", item)

    def begin_run(self, prompt_tokens: int) -> None:
        self.runs.append(RunMeter(prompt_tokens, self.count_prompt))
        self._unread = 0

    def take_records(self) -> list[TokenRecord]:
        """Token records of the current run not yet taken (to attach to a stream chunk)."""
        if not self.runs:
            return []
        records = self.runs[-1].records
        taken = records[len(records) - self._unread :] if self._unread else []
        self._unread = 0
        return taken

    def finish(self, kind: str, value: Any = None) -> None:
        self.done = True
        self._post(kind, value, final=True)

    def _post(self, kind: str, value: Any, final: bool = False) -> None:
        def deliver() -> None:
            self._events.put_nowait((kind, value))
            if final:
                self._finished.set()

        try:
            self.loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._cancelled.set()
            if not final:
                raise GenerationCancelled() from None

    # --- event loop side ----------------------------------------------------------------
    def cancel(self) -> None:
        self._cancelled.set()

    async def next_event(self) -> tuple[str, Any]:
        return await self._events.get()

    async def wait_stopped(self, timeout: float = 5.0) -> None:
        """After :meth:`cancel`: wait until the worker has let go of the job (if it had it)."""
        if not self.started or self.done:
            return
        try:
            await asyncio.wait_for(self._finished.wait(), timeout)
        except TimeoutError:
            pass

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.runs if r.counts_prompt)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.runs)


def _install_hooks(llama: Any, worker: ModelWorker) -> None:
    """Wrap ``llama.generate`` / ``llama.sample`` (instance attributes shadow the methods)."""
    import llama_cpp

    original_generate = llama.generate
    original_sample = llama.sample
    vocab = llama._model.vocab
    n_vocab = llama.n_vocab()

    def generate(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        job = worker.job
        if job is not None:
            job.begin_run(len(tokens))
        return original_generate(tokens, *args, **kwargs)

    def sample(*args: Any, **kwargs: Any) -> int:
        job = worker.job
        if job is None:
            return int(original_sample(*args, **kwargs))
        if job.cancelled:
            raise GenerationCancelled()
        logprobs = None
        if job.top_logprobs is not None:
            idx = kwargs.get("idx")
            ridx = idx - llama.n_tokens if idx is not None else -1
            ptr = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, ridx)
            logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
            peak = logits.max()
            logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
        token = int(original_sample(*args, **kwargs))
        run = job.runs[-1] if job.runs else None
        if run is not None and not llama_cpp.llama_vocab_is_eog(vocab, token):
            run.completion_tokens += 1
            if logprobs is not None:
                top: list[tuple[int, float]] = []
                if job.top_logprobs:
                    ids = np.argpartition(-logprobs, job.top_logprobs)[: job.top_logprobs]
                    top = sorted(((int(i), float(logprobs[i])) for i in ids), key=lambda t: -t[1])
                run.records.append(TokenRecord(token, float(logprobs[token]), top))
                job._unread += 1
        return token

    llama.generate = generate
    llama.sample = sample


class ModelWorker(threading.Thread):
    """A thread that loads one model with ``factory`` and serves jobs from ``jobs``."""

    def __init__(self, name: str, factory: Callable[[], Any], jobs: queue.Queue[Job | None]) -> None:
        super().__init__(name=name, daemon=True)
        self.factory = factory
        self.jobs = jobs
        self.job: Job | None = None
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run(self) -> None:
        llama = None
        try:
            llama = self.factory()
            _install_hooks(llama, self)
            self.ready.set_result(None)
        except BaseException as exc:  # noqa: BLE001 - reported to every caller below
            error = ModelLoadError(f"cannot load the model: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self.ready.set_exception(error)
        try:
            while (job := self.jobs.get()) is not None:
                self._serve(job, llama)
        finally:
            if llama is not None:
                llama.close()

    def _serve(self, job: Job, llama: Any) -> None:
        if job.cancelled:
            job.finish("cancelled")
            return
        if llama is None:
            job.finish("error", self.ready.exception())
            return
        self.job = job
        job.started = True
        try:
            job.finish("done", job.fn(llama, job))
        except GenerationCancelled:
            job.finish("cancelled")
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            job.finish("error", exc)
        finally:
            self.job = None


class WorkerPool:
    """``size`` model workers behind one queue of at most ``max_queue`` waiting jobs."""

    def __init__(self, name: str, factory: Callable[[], Any], *, size: int, max_queue: int, deployment: str) -> None:
        self.name = name
        self.deployment = deployment
        self.max_queue = max_queue
        self._factory = factory
        self._size = size
        self._jobs: queue.Queue[Job | None] = queue.Queue()  # bounded by submit(), so stop() can always enqueue
        self._workers: list[ModelWorker] = []
        self._closed = False

    @property
    def started(self) -> bool:
        return bool(self._workers)

    @property
    def loaded(self) -> bool:
        return any(w.ready.done() and w.ready.exception() is None for w in self._workers)

    @property
    def failed(self) -> BaseException | None:
        done = [w.ready for w in self._workers if w.ready.done()]
        if self._workers and len(done) == len(self._workers) and all(f.exception() for f in done):
            return done[0].exception()
        return None

    def ensure_started(self) -> None:
        if not self._workers and not self._closed:
            self._workers = [ModelWorker(f"{self.name}-{i}", self._factory, self._jobs) for i in range(self._size)]
            for worker in self._workers:
                worker.start()

    async def start(self) -> None:
        """Start the threads and wait (off the loop) until every model is loaded."""
        self.ensure_started()
        await asyncio.gather(*(asyncio.wrap_future(w.ready) for w in self._workers))

    def submit(self, fn: Callable[[Any, Job], Any], *, top_logprobs: int | None = None) -> Job:
        if self._closed:
            raise UpstreamConnectionError(f"{self.deployment}: the embedded model is shut down", deployment=self.deployment)
        self.ensure_started()
        # Only the event loop thread submits, workers only take: check-then-put cannot overshoot.
        if self._jobs.qsize() >= self.max_queue:
            raise UpstreamStatus(
                f"{self.deployment}: the embedded model is overloaded ({self.max_queue} requests already waiting)",
                upstream_status=429,
                deployment=self.deployment,
                upstream_type="overloaded_error",
                retry_after=1.0,
            )
        job = Job(fn, asyncio.get_running_loop(), top_logprobs)
        self._jobs.put_nowait(job)
        return job

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel waiting and running jobs, stop the threads, free the models."""
        self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel()
                job.finish("error", UpstreamConnectionError(f"{self.deployment}: shutting down", deployment=self.deployment))
        for worker in self._workers:
            if worker.job is not None:
                worker.job.cancel()
            self._jobs.put_nowait(None)
        for worker in self._workers:
            await asyncio.to_thread(worker.join, timeout)
        self._workers = []


def default_threads(parallel: int) -> int:
    """Leave one core to the event loop; share the rest between the model instances."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, (cores - 1) // max(1, parallel))


_LOAD_LOCK = threading.Lock()


def _build_has_amx() -> bool:
    import llama_cpp

    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode("utf-8", "replace")


def _repack_enabled() -> bool:
    """llama.cpp's extra (repacking) weight buffers. Its AMX buffers crashed this project's CI
    VM (SIGSEGV in the first decode with a ``GGML_NATIVE`` build on an AMX CPU), so they are off
    when the build carries AMX code, unless ``SWITCHYARD_LLAMACPP_REPACK=1``; ``=0`` turns
    repacking off everywhere."""
    setting = os.environ.get("SWITCHYARD_LLAMACPP_REPACK", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    return not _build_has_amx()


def load_llama(**kwargs: Any) -> Any:
    """``llama_cpp.Llama(**kwargs)``, with repacking weight buffers disabled when unsafe."""
    import llama_cpp
    import llama_cpp.llama_cpp as lowlevel

    if _repack_enabled():
        return llama_cpp.Llama(**kwargs)
    # Llama.__init__ offers no switch for use_extra_bufts; patch the default-params factory it
    # calls, for the duration of this one construction only.
    with _LOAD_LOCK:
        original = lowlevel.llama_model_default_params

        def params_without_repack() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        lowlevel.llama_model_default_params = params_without_repack
        try:
            return llama_cpp.Llama(**kwargs)
        finally:
            lowlevel.llama_model_default_params = original

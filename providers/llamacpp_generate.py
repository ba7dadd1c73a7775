"""What a worker thread does for one chat or completion request: run llama-cpp-python and turn
its output into OpenAI choices (whole) or chunk choices (emitted one by one).

Everything here runs in the thread that owns the ``Llama`` instance (see llamacpp_worker.py).

A forced tool call (``req.tools``) is generated under its grammar and reported only when its
output is complete: in a stream its arguments arrive in one delta after generation, so a call cut
short by ``max_tokens`` ends with ``finish_reason: "length"`` and is never sent in part.
"""

from __future__ import annotations

from typing import Any

from providers import openai_shapes as shapes
from providers.llamacpp_logprobs import (
    LegacyLogprobs,
    chat_logprobs,
    generated_logprobs,
    prompt_logprobs,
)
from providers.llamacpp_requests import CompletionRequest, GenerationRequest
from providers.llamacpp_tools import ToolPlan
from providers.llamacpp_worker import Job

# --- chat -----------------------------------------------------------------------------------


def chat_choices(llama: Any, job: Job, req: GenerationRequest) -> list[dict[str, Any]]:
    req.check_vocabulary(llama.n_vocab())
    choices = []
    for i in range(req.n):
        job.count_prompt = i == 0
        result = llama.create_chat_completion(**req.kwargs_for(i))
        choice = result["choices"][0]
        logprobs = chat_logprobs(llama, job.runs[-1].records) if req.top_logprobs is not None and job.runs else None
        text, finish = choice["message"].get("content"), choice.get("finish_reason")
        if req.tools is None:
            choices.append(shapes.chat_choice(i, text, finish, logprobs=logprobs))
        else:
            choices.append(_called(i, req.tools, text or "", finish, logprobs))
    return choices


def _called(index: int, plan: ToolPlan, text: str, finish: str | None, logprobs: dict[str, Any] | None) -> dict[str, Any]:
    call = plan.call_from(text) if finish == "stop" else None
    if call is None:  # cut short (length) or not a whole call: no call, never broken arguments
        return shapes.chat_choice(index, None, finish, logprobs=logprobs)
    if plan.legacy:
        return shapes.chat_choice(index, None, plan.finish_reason, function_call=call["function"], logprobs=logprobs)
    return shapes.chat_choice(index, None, plan.finish_reason, tool_calls=[call], logprobs=logprobs)


def stream_chat(llama: Any, job: Job, req: GenerationRequest) -> None:
    req.check_vocabulary(llama.n_vocab())
    for i in range(req.n):
        job.count_prompt = i == 0
        chunks = llama.create_chat_completion(stream=True, **req.kwargs_for(i))
        if req.tools is None:
            _stream_text(llama, job, req, i, chunks)
        else:
            _stream_call(llama, job, req, req.tools, i, chunks)


def _stream_text(llama: Any, job: Job, req: GenerationRequest, index: int, chunks: Any) -> None:
    for chunk in chunks:
        choice = chunk["choices"][0]
        delta = {k: v for k, v in (choice.get("delta") or {}).items() if v is not None and k != "function_call"}
        if delta.get("role") == "assistant" and "content" not in delta:
            delta["content"] = ""  # OpenAI's first text chunk: {"role": "assistant", "content": ""}
        logprobs = None
        if req.top_logprobs is not None and delta.get("content"):
            records = job.take_records()
            logprobs = chat_logprobs(llama, records) if records else None
        job.emit(shapes.chunk_choice(index, delta, choice.get("finish_reason"), logprobs))


def _stream_call(llama: Any, job: Job, req: GenerationRequest, plan: ToolPlan, index: int, chunks: Any) -> None:
    parts: list[str] = []
    announced = False
    for chunk in chunks:
        choice = chunk["choices"][0]
        if not announced:  # OpenAI's first chunk of a tool call: no text content at all
            job.emit(shapes.chunk_choice(index, {"role": "assistant", "content": None}))
            announced = True
        content = (choice.get("delta") or {}).get("content")
        if content:
            parts.append(content)
        finish = choice.get("finish_reason")
        if finish is None:
            continue
        records = job.take_records() if req.top_logprobs is not None else []
        logprobs = chat_logprobs(llama, records) if records else None
        call = plan.call_from("".join(parts)) if finish == "stop" else None
        if call is None:
            job.emit(shapes.chunk_choice(index, {}, finish, logprobs))
            continue
        delta = {"function_call": call["function"]} if plan.legacy else {"tool_calls": [{"index": 0, **call}]}
        job.emit(shapes.chunk_choice(index, delta, None, logprobs))
        job.emit(shapes.chunk_choice(index, {}, plan.finish_reason))


# --- completions ----------------------------------------------------------------------------


def completion_choices(llama: Any, job: Job, req: CompletionRequest) -> list[dict[str, Any]]:
    req.check_vocabulary(llama.n_vocab())
    choices = []
    for p, prompt in enumerate(req.prompts):
        echoed = _echoed_logprobs(llama, req, prompt)
        for j in range(req.n):
            job.count_prompt = j == 0
            result = llama.create_completion(prompt=prompt, **req.kwargs_for(j))
            choice = result["choices"][0]
            logprobs = None
            if req.top_logprobs is not None:
                generated, _ = generated_logprobs(llama, job.runs[-1].records if job.runs else [], len(prompt))
                logprobs = LegacyLogprobs().extend(echoed).extend(generated) if echoed else generated
            text = prompt + choice["text"] if req.echo else choice["text"]
            choices.append(
                shapes.text_choice(p * req.n + j, text, choice.get("finish_reason"), logprobs.as_dict() if logprobs else None)
            )
    return choices


def stream_completion(llama: Any, job: Job, req: CompletionRequest) -> None:
    req.check_vocabulary(llama.n_vocab())
    for p, prompt in enumerate(req.prompts):
        echoed = _echoed_logprobs(llama, req, prompt)
        for j in range(req.n):
            index = p * req.n + j
            job.count_prompt = j == 0
            if req.echo:
                job.emit(shapes.text_choice(index, prompt, None, echoed.as_dict() if echoed else None))
            offset = len(prompt)  # text_offset counts from the start of the prompt, echoed or not
            for chunk in llama.create_completion(prompt=prompt, stream=True, **req.kwargs_for(j)):
                choice = chunk["choices"][0]
                logprobs = None
                if req.top_logprobs is not None:
                    records = job.take_records()
                    if records:
                        entries, offset = generated_logprobs(llama, records, offset)
                        logprobs = entries.as_dict()
                job.emit(shapes.text_choice(index, choice["text"], choice.get("finish_reason"), logprobs))


def _echoed_logprobs(llama: Any, req: CompletionRequest, prompt: str) -> LegacyLogprobs | None:
    if req.echo and req.top_logprobs is not None:
        return prompt_logprobs(llama, prompt, req.top_logprobs)
    return None

"""Log-probabilities of the embedded model in OpenAI's two shapes.

Generated tokens are recorded by the worker's sampling hook (:class:`TokenRecord`). Prompt tokens
(completions with ``echo``) are scored here by one extra decode of the prompt with logits for
every position, as OpenAI does: the first prompt token has no logprob (``null``). Offsets in the
legacy shape (``text_offset``) count characters from the start of the prompt, echoed or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from providers.llamacpp_worker import TokenRecord


def token_text(llama: Any, token: int) -> tuple[str, list[int]]:
    raw = llama.detokenize([token])
    return raw.decode("utf-8", errors="replace"), list(raw)


def chat_logprobs(llama: Any, records: list[TokenRecord]) -> dict[str, Any]:
    """Chat format: ``{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}``."""
    content = []
    for rec in records:
        text, raw = token_text(llama, rec.token)
        top = []
        for token, logprob in rec.top:
            alt_text, alt_raw = token_text(llama, token)
            top.append({"token": alt_text, "logprob": logprob, "bytes": alt_raw})
        content.append({"token": text, "logprob": rec.logprob, "bytes": raw, "top_logprobs": top})
    return {"content": content, "refusal": None}


@dataclass(slots=True)
class LegacyLogprobs:
    """Completions format: parallel lists, one entry per token."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def extend(self, other: LegacyLogprobs) -> LegacyLogprobs:
        self.tokens += other.tokens
        self.token_logprobs += other.token_logprobs
        self.top_logprobs += other.top_logprobs
        self.text_offset += other.text_offset
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


def generated_logprobs(llama: Any, records: list[TokenRecord], offset: int) -> tuple[LegacyLogprobs, int]:
    """Entries for generated tokens whose text starts at character ``offset``; and the offset after."""
    out = LegacyLogprobs()
    for rec in records:
        text, _ = token_text(llama, rec.token)
        out.tokens.append(text)
        out.token_logprobs.append(rec.logprob)
        out.top_logprobs.append({token_text(llama, t)[0]: lp for t, lp in rec.top})
        out.text_offset.append(offset)
        offset += len(text)
    return out, offset


def prompt_logprobs(llama: Any, prompt: str, top: int) -> LegacyLogprobs:
    """Entries for the prompt's own tokens (worker thread only: it decodes on the model).

    Leaves the model's state reset, so the next generation evaluates its prompt afresh.
    """
    import llama_cpp

    full = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    text_tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    lead = len(full) - len(text_tokens)  # a BOS token the model adds, if any
    scored = _score(llama, full, top, llama_cpp)
    out = LegacyLogprobs()
    seen = bytearray()
    for i, token in enumerate(text_tokens):
        text, raw = token_text(llama, token)
        out.tokens.append(text)
        out.text_offset.append(len(seen.decode("utf-8", errors="ignore")))
        seen += bytes(raw)
        entry = scored[lead + i] if i > 0 else None  # OpenAI: the first token has no logprob
        out.token_logprobs.append(entry.logprob if entry is not None else None)
        out.top_logprobs.append({token_text(llama, t)[0]: lp for t, lp in entry.top} if entry is not None else None)
    return out


def _score(llama: Any, tokens: list[int], top: int, llama_cpp: Any) -> list[TokenRecord | None]:
    """``result[i]``: token i's log-probability given tokens ``[0, i)`` (None for i = 0)."""
    n_vocab = llama.n_vocab()
    llama.reset()
    llama._ctx.kv_cache_clear()
    scored: list[TokenRecord | None] = [None]
    n_past = 0
    try:
        for start in range(0, len(tokens), llama.n_batch):
            chunk = tokens[start : start + llama.n_batch]
            llama._batch.set_batch(batch=chunk, n_past=n_past, logits_all=True)
            llama._ctx.decode(llama._batch)
            for j in range(len(chunk)):
                following = n_past + j + 1
                if following >= len(tokens):
                    break
                ptr = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, j)
                scored.append(record(np.ctypeslib.as_array(ptr, shape=(n_vocab,)), tokens[following], top))
            n_past += len(chunk)
    finally:
        llama.reset()
        llama._ctx.kv_cache_clear()
    return scored


def log_softmax(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    peak = values.max()
    result: np.ndarray = values - (peak + np.log(np.exp(values - peak).sum()))
    return result


def record(logits: np.ndarray, token: int, top: int) -> TokenRecord:
    """``token``'s log-probability under ``logits``, with the ``top`` most likely alternatives."""
    logprobs = log_softmax(logits)
    alternatives: list[tuple[int, float]] = []
    if top:
        ids = np.argpartition(-logprobs, top)[:top]
        alternatives = sorted(((int(i), float(logprobs[i])) for i in ids), key=lambda t: -t[1])
    return TokenRecord(token, float(logprobs[token]), alternatives)

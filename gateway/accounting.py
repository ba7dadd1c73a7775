"""Admission before a request, settlement and the ledger row after it.

* Before: RPM/TPM and a budget reservation of the worst case — prompt tokens plus the output
  cap, at the priciest deployment of the plan — for the key and its project, atomically.
* After: the actual usage (the upstream's, or counted with tiktoken when it gives none, incl.
  streams cut short), the cost in exact decimals, the reservation settled, one ledger row per
  attempt that reached a backend.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from core.errors import AdmissionUnavailable, Attempt, GatewayError
from gateway.admission import Admission, Subject, Ticket
from gateway.auth import Caller
from gateway.config import GatewayConfig
from gateway.runtime import Runtime
from gateway.settler import Settler
from providers.tokens import (
    count_prompt,
    count_text,
    max_output_tokens,
    prompt_token_bound,
)
from routing.types import Plan, Prices

log = logging.getLogger("switchyard.accounting")
_MTOK = Decimal(1_000_000)
_QUANTUM = Decimal("1e-10")


@dataclass(slots=True)
class Usage:
    """Tokens of one answered request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> Usage | None:
        if not isinstance(usage, dict) or usage.get("prompt_tokens") is None:
            return None
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return cls(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), int(cached or 0))


def _price(per_mtok: float | None) -> Decimal:
    # Prices arrive as floats (litellm's map is per token); 9 decimals per million is far finer
    # than any provider's price list, and keeps 0.15 from becoming 0.15000000000000002.
    return Decimal(f"{per_mtok or 0.0:.9f}")


def cost_usd(prices: Prices, usage: Usage) -> Decimal:
    """Exact cost of ``usage`` at ``prices`` (cached input at its own price when given)."""
    cached_price = prices.input_per_mtok if prices.cached_input_per_mtok is None else prices.cached_input_per_mtok
    uncached = max(0, usage.prompt_tokens - usage.cached_tokens)
    total = (
        uncached * _price(prices.input_per_mtok)
        + usage.cached_tokens * _price(cached_price)
        + usage.completion_tokens * _price(prices.output_per_mtok)
    ) / _MTOK
    return total.quantize(_QUANTUM)


def subjects_for(caller: Caller, config: GatewayConfig) -> list[Subject]:
    """The key (when a virtual key is used) and its project, each with its budget and limits."""
    if caller.key_info is not None:
        return caller.key_info.subjects()
    project = next((p for p in config.projects if p.name == caller.project), None)
    if project is None:
        return []
    budget = project.budget
    return [
        Subject(
            "project",
            project.name,
            budget.usd if budget else None,
            budget.period if budget else "monthly",
            project.limits.rpm,
            project.limits.tpm,
        )
    ]


@dataclass(slots=True)
class Admitted:
    """What admission granted a request."""

    ticket: Ticket | None

    def headers(self, cost: Decimal | None = None) -> dict[str, str]:
        """Rate-limit and budget-remaining headers (``cost``: this request's, when known before the body)."""
        return self.ticket.headers(cost) if self.ticket is not None else {}


class Accountant:
    """Admission, settlement and ledger rows for every routed request."""

    def __init__(
        self, admission: Admission | None, ledger: Any | None, settler: Settler | None = None, metrics: Any | None = None
    ) -> None:
        self.admission = admission
        self.ledger = ledger
        self.settler = settler
        self.metrics = metrics

    async def admit(self, caller: Caller, runtime: Runtime, plan: Plan, body: dict[str, Any]) -> Admitted:
        """Check limits and reserve the worst case; raises RateLimited / BudgetExceeded."""
        subjects = [s for s in subjects_for(caller, runtime.config) if s.budget_usd is not None or s.rpm or s.tpm]
        if self.admission is None or not subjects:
            return Admitted(None)
        prices = [runtime.profiles[d].prices for d in plan.deployments if d in runtime.profiles]
        priced = any(p.input_per_mtok or p.output_per_mtok for p in prices)
        budgeted = any(s.budget_usd is not None for s in subjects)
        # When money is at stake the reservation must not undercount: tiktoken's count for small
        # prompts, and for large ones a bound that costs nothing (a BPE token is at least one
        # byte). The router's estimate is enough for TPM alone; settle corrects both.
        if priced and budgeted:
            prompt = prompt_token_bound(body, runtime.profiles[plan.deployments[0]].model, plan.signals.prompt_tokens)
        else:
            prompt = plan.signals.prompt_tokens
        output = max_output_tokens(body, plan.signals.max_output_tokens or runtime.config.routing.default_max_tokens)
        worst = max((cost_usd(p, Usage(prompt, output)) for p in prices), default=Decimal(0))
        try:
            ticket = await self.admission.admit(subjects, tokens=prompt + output, reserve_usd=worst)
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. Redis unreachable
            # Fail closed: without the shared counters no budget or limit can be honoured.
            log.error("admission backend failed: %s: %s", type(exc).__name__, exc)
            raise AdmissionUnavailable(
                "Budgets and rate limits cannot be checked right now (admission backend unavailable); retry shortly.",
                headers={"retry-after": "1"},
            ) from None
        return Admitted(ticket)

    async def release(self, admitted: Admitted) -> None:
        """The request reached no backend: give the reservation back."""
        if self.admission is not None and admitted.ticket is not None:
            try:
                await self.admission.release(admitted.ticket)
            except Exception:  # noqa: BLE001 - an unreleased hold expires on its own
                log.exception("releasing admission ticket %s failed", admitted.ticket.id)

    async def settle(self, admitted: Admitted, cost: Decimal, tokens: int) -> None:
        """Replace the reservation with the actual cost: queued when a settler runs, else at once."""
        if self.admission is not None and admitted.ticket is not None:
            if self.settler is not None:
                self.settler.submit(admitted.ticket, cost, tokens)
                return
            try:
                await self.admission.settle(admitted.ticket, actual_usd=cost, actual_tokens=tokens)
            except Exception:  # noqa: BLE001 - the ledger row below still records the spend
                log.exception("settling admission ticket %s failed", admitted.ticket.id)

    def record(self, row: dict[str, Any]) -> None:
        """Queue one ledger row (never blocks on the database)."""
        if self.metrics is not None:
            self.metrics.observe_row(row)
        if self.ledger is None:
            return
        try:
            self.ledger.submit(row)
        except Exception:  # noqa: BLE001 - the response must not fail for the ledger's sake
            log.exception("ledger submit failed for request %s", row.get("request_id"))


def choice_text(choice: Any) -> str:
    """The generated text of one choice, whole (``message``) or streamed (``delta``), incl. tool calls."""
    if not isinstance(choice, dict):
        return ""
    parts = [choice.get("text")]
    for key in ("message", "delta"):
        part = choice.get(key)
        if isinstance(part, dict):
            parts.append(part.get("content"))
            for call in part.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    parts += [function.get("name"), function.get("arguments")]
    return "".join(p for p in parts if isinstance(p, str))


def usage_or_count(
    reported: dict[str, Any] | None, body: dict[str, Any], completion_text: str, model: str
) -> Usage:
    """The upstream's usage, or tiktoken's count of what was sent and what came back."""
    usage = Usage.from_openai(reported)
    if usage is not None:
        return usage
    return Usage(count_prompt(body, model), count_text(completion_text, model))


def ledger_row(
    *,
    request_id: str,
    caller: Caller,
    body: dict[str, Any],
    plan: Plan,
    runtime: Runtime,
    deployment: str,
    usage: Usage | None,
    cost: Decimal,
    status: int,
    latency_ms: float,
    ttft_ms: float | None = None,
    streamed: bool = False,
    fallbacks: int = 0,
    error: GatewayError | None = None,
    project_tag: str | None = None,
) -> dict[str, Any]:
    profile = runtime.profiles.get(deployment)
    usage = usage or Usage()
    user = body.get("user")
    return {
        "id": os.urandom(16).hex(),  # the idempotency key of journal replays
        "ts": datetime.now(UTC),
        "request_id": request_id,
        "project": caller.project,
        "key_id": caller.key_id,
        "requested_model": str(body.get("model", "")),
        "route": plan.route,
        "rule": plan.rule,
        "deployment": deployment,
        "provider": profile.provider if profile else None,
        "locality": profile.locality if profile else None,
        "sensitivity": plan.signals.sensitivity.label,
        "task": plan.signals.task,
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": usage.cached_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost_usd": cost,
        "latency_ms": round(latency_ms, 3),
        "ttft_ms": None if ttft_ms is None else round(ttft_ms, 3),
        "status": status,
        "error_type": error.code if error is not None else None,
        "streamed": streamed,
        "fallbacks": fallbacks,
        # attribution (reports group by each)
        "end_user": user[:256] if isinstance(user, str) and user else None,
        "key_tags": key_tags_text(caller.tags),
        "project_tag": project_tag[:200] if project_tag else None,
    }


def key_tags_text(tags: frozenset[str] | tuple[str, ...]) -> str | None:
    """A key's tags as the ledger stores them: a sorted JSON array, or None for none."""
    return orjson.dumps(sorted(tags)).decode() if tags else None


def failed_attempt_rows(
    attempts: list[Attempt], *, request_id: str, caller: Caller, body: dict[str, Any], plan: Plan, runtime: Runtime, streamed: bool,
    project_tag: str | None = None,
) -> list[dict[str, Any]]:
    """One zero-cost row per failed attempt, so the ledger shows every backend call."""
    return [
        ledger_row(
            request_id=request_id, caller=caller, body=body, plan=plan, runtime=runtime, deployment=a.deployment,
            usage=None, cost=Decimal(0), status=a.error.status, latency_ms=a.elapsed_ms, streamed=streamed, error=a.error,
            project_tag=project_tag,
        )
        for a in attempts
    ]

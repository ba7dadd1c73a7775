"""Admission before a request; usage, cost, settlement and ledger rows after it.

* Before: the cheap refusals first (:meth:`Accountant.precheck`: subjects already known to be
  over their RPM or out of budget, no I/O, before the body is read), then RPM/TPM and a budget
  reservation for the key and its project, atomically: the prompt at the priciest candidate's
  input price, plus output tokens at its output price. When the client set ``max_tokens`` that
  many are reserved or the request is refused; when it did not, admission grants as many as the
  budgets afford, up to the context window and ``routing.default_output_cap``, and the gateway
  sends that grant upstream as ``max_tokens``: the reservation and the cap are one number.
* After: the upstream's usage, validated (non-negative bounded integers, no more output than the
  cap), or counted with tiktoken when it gave none or gave nonsense; the cost in exact decimals;
  the reservation settled; one ledger row per backend attempt.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from core.errors import AdmissionUnavailable, BudgetExceeded, GatewayError, RateLimited
from core.literals import Endpoint
from core.wire import TokenUsage, read_usage
from gateway.admission import Admission, OutputClaim, Subject, Ticket
from gateway.admission.base import rpm_refusal
from gateway.auth import Caller
from gateway.config import GatewayConfig
from gateway.settler import Settler
from providers.tokens import count_prompt, count_text, prompt_token_bound
from routing.pricing import exact_prices
from routing.signals import recorded_needs
from routing.types import Plan

if TYPE_CHECKING:
    from gateway.ledger import LedgerWriter
    from gateway.metrics import GatewayMetrics
    from gateway.runtime import Runtime

log = logging.getLogger("switchyard.accounting")
_MTOK = Decimal(1_000_000)
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for legacy completions
PRECHECK_MEMORY_S = 5.0  # how long a learned refusal is trusted before asking the store again


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


def requested_output(body: dict[str, Any]) -> tuple[int | None, int]:
    """``(max tokens per choice the client set or None, number of choices)``."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    choices = body.get("n")
    return (limit if type(limit) is int else None), (choices if type(choices) is int and choices > 0 else 1)


@dataclass(slots=True)
class Admitted:
    """What admission granted: the ticket (None when no subject is limited) and the output cap
    the gateway sets when the client gave none (None: the client's own ``max_tokens`` stands)."""

    ticket: Ticket | None
    output_cap: int | None = None
    prompt_bound: int = 0

    def headers(self, cost: Decimal | None = None) -> dict[str, str]:
        """Rate-limit and budget-remaining headers (``cost``: this request's, when known before the body)."""
        return self.ticket.headers(cost) if self.ticket is not None else {}


@dataclass(slots=True)
class Claim:
    """A request's worst case as admission reserves it: the limited subjects, the output cap the
    gateway would set, the prompt bound, the fixed reservation and the output claim."""

    subjects: list[Subject]
    cap: int | None
    prompt: int
    fixed: Decimal
    output: OutputClaim | None

    @property
    def least_usd(self) -> Decimal:
        """The least the budgets must afford for the request to be admitted."""
        return self.fixed + (self.output.unit_usd * self.output.min_units if self.output else Decimal(0))


class Accountant:
    """Admission, settlement and ledger rows for every routed request."""

    def __init__(
        self,
        admission: Admission | None,
        ledger: LedgerWriter | None,
        settler: Settler | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.admission = admission
        self.ledger = ledger
        self.settler = settler
        self.metrics = metrics
        self._refused: dict[str, tuple[float, RateLimited]] = {}  # subject key -> (until, the refusal)

    # ------------------------------------------------------------ before

    def precheck(self, caller: Caller, runtime: Runtime) -> None:
        """Refuse at once, with no I/O, a caller whose key or project was refused moments ago
        for a reason that cannot have cleared yet: its RPM window is full, or what is left of its
        budget pays for no request at any priced deployment and no deployment is free."""
        if not self._refused:
            return
        now = time.monotonic()
        for subject in subjects_for(caller, runtime.config):
            held = self._refused.get(subject.key)
            if held is None:
                continue
            until, refusal = held
            if now >= until:
                del self._refused[subject.key]
                continue
            if isinstance(refusal, BudgetExceeded) and (runtime.has_free_deployment or not self._spent(refusal, runtime)):
                continue
            retry = max(1, int(until - now + 0.999))
            raise type(refusal)(refusal.message, code=refusal.code, headers={**refusal.headers, "retry-after": str(retry)})

    def _remember(self, refusal: RateLimited) -> None:
        if refusal.subject_key is None or refusal.stays_for_s is None:
            return
        self._refused[refusal.subject_key] = (time.monotonic() + min(refusal.stays_for_s, PRECHECK_MEMORY_S), refusal)

    @staticmethod
    def _spent(refusal: BudgetExceeded, runtime: Runtime) -> bool:
        """Nothing is left of the budget that the cheapest possible request could be paid with."""
        return refusal.unspent_usd is not None and refusal.unspent_usd < runtime.cheapest_request_usd

    def claim(
        self,
        caller: Caller,
        runtime: Runtime,
        plan: Plan,
        body: dict[str, Any],
        endpoint: Endpoint,
        *,
        whole_output: bool = False,
    ) -> Claim:
        """What :meth:`admit` would ask admission for (also what explain compares budgets with)."""
        profiles = [runtime.profiles[d] for d in plan.deployments if d in runtime.profiles]
        asked, choices = requested_output(body)
        cap: int | None = None
        if endpoint != "embeddings" and asked is None:
            room = min((p.context_window - plan.signals.prompt_tokens for p in profiles), default=1)
            default = COMPLETIONS_DEFAULT_MAX_TOKENS if endpoint == "completions" else runtime.config.routing.default_output_cap
            cap = max(1, min(default, room))
        subjects = [s for s in subjects_for(caller, runtime.config) if s.budget_usd is not None or s.rpm or s.tpm]
        if self.admission is None or not subjects:
            return Claim(subjects, cap, 0, Decimal(0), None)
        priced = any(p.prices.input_per_mtok or p.prices.output_per_mtok for p in profiles)
        budgeted = any(s.budget_usd is not None for s in subjects)
        # When money is at stake the reservation must not undercount, whatever tokenizer the
        # backend uses (see prompt_token_bound). The router's estimate is enough for TPM alone;
        # settle corrects both.
        if priced and budgeted:
            prompt = (
                max(
                    prompt_token_bound(body, p.model, plan.signals.prompt_tokens, plan.signals.images)
                    for p in profiles
                    if p.prices.input_per_mtok
                )
                if any(p.prices.input_per_mtok for p in profiles)
                else plan.signals.prompt_tokens
            )
        else:
            prompt = plan.signals.prompt_tokens
        # the priciest candidate's input and output prices: a fallback may land anywhere in the plan
        input_price = max((exact_prices(p.prices)[0] for p in profiles), default=Decimal(0))
        fixed = prompt * input_price / _MTOK
        output = None
        if endpoint != "embeddings":
            unit = choices * max((exact_prices(p.prices)[2] for p in profiles), default=Decimal(0)) / _MTOK
            units = asked if asked is not None else cap
            assert units is not None
            least = units if asked is not None or whole_output else 1
            output = OutputClaim(unit, max_units=units, min_units=least, tokens_per_unit=choices)
        return Claim(subjects, cap, prompt, fixed, output)

    async def admit(
        self,
        caller: Caller,
        runtime: Runtime,
        plan: Plan,
        body: dict[str, Any],
        endpoint: Endpoint,
        *,
        whole_output: bool = False,
    ) -> Admitted:
        """Check limits and reserve the worst case; raises RateLimited / BudgetExceeded.

        ``whole_output``: when the client set no ``max_tokens``, the budgets must afford the whole
        default cap rather than as little as one token (a project that downgrades would rather be
        served in full by a free deployment than get a truncated answer from a paid one)."""
        claim = self.claim(caller, runtime, plan, body, endpoint, whole_output=whole_output)
        subjects, cap, prompt, fixed, output = claim.subjects, claim.cap, claim.prompt, claim.fixed, claim.output
        if self.admission is None or not subjects:
            return Admitted(None, cap)
        try:
            ticket = await self.admission.admit(subjects, tokens=prompt, reserve_usd=fixed, output=output)
        except RateLimited as refusal:
            self._remember(refusal)
            raise
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. Redis unreachable
            # Fail closed: without the shared counters no budget or limit can be honoured.
            log.error("admission backend failed: %s: %s", type(exc).__name__, exc)
            raise AdmissionUnavailable(
                "Budgets and rate limits cannot be checked right now (admission backend unavailable); retry shortly.",
                headers={"retry-after": "1"},
            ) from None
        if cap is not None and ticket.output_units is not None:
            cap = ticket.output_units
        for subject in ticket.rpm_full:  # the next request this minute would be refused: know it now
            self._remember(rpm_refusal(subject, ticket.rate_reset_s))
        return Admitted(ticket, cap, prompt)

    # ------------------------------------------------------------ after

    async def release(self, admitted: Admitted) -> None:
        """The request reached no backend: give the reservation back."""
        if self.admission is not None and admitted.ticket is not None:
            try:
                await self.admission.release(admitted.ticket)
            except Exception:
                log.exception("releasing admission ticket %s failed", admitted.ticket.id)

    async def settle(self, admitted: Admitted, cost: Decimal, tokens: int) -> None:
        """Replace the reservation with the actual cost: queued when a settler runs, else at once."""
        if self.admission is None or admitted.ticket is None:
            return
        if self.settler is not None:
            self.settler.submit(admitted.ticket, cost, tokens)
            return
        try:
            await self.admission.settle(admitted.ticket, actual_usd=cost, actual_tokens=tokens)
        except Exception:
            log.exception("settling admission ticket %s failed", admitted.ticket.id)

    def record(self, row: dict[str, Any]) -> None:
        """Queue one ledger row (never blocks on the database)."""
        if self.metrics is not None:
            self.metrics.observe_row(row)
        if self.ledger is None:
            return
        try:
            self.ledger.submit(row)
        except Exception:
            log.exception("ledger submit failed for request %s", row.get("request_id"))

    def usage_of(
        self, reported: Any, sent: dict[str, Any], text: str, model: str, output_limit: int | None, deployment: str
    ) -> TokenUsage:
        """The upstream's usage when it is usage, else our own count; never more output than asked for."""
        usage, problem = read_usage(reported)
        if problem is not None:
            log.warning("deployment %s: %s; counting the tokens instead", deployment, problem)
            if self.metrics is not None:
                self.metrics.observe_bad_usage(deployment)
        if usage is None:
            usage = TokenUsage(count_prompt(sent, model), count_text(text, model))
        if output_limit is not None and usage.completion_tokens > output_limit:
            log.warning(
                "deployment %s reported %d completion tokens for a cap of %d; billing the cap",
                deployment,
                usage.completion_tokens,
                output_limit,
            )
            if self.metrics is not None:
                self.metrics.observe_bad_usage(deployment)
            usage.completion_tokens = output_limit
        return usage


def ledger_row(
    *,
    request_id: str,
    caller: Caller,
    body: dict[str, Any],
    plan: Plan,
    runtime: Runtime,
    deployment: str,
    usage: TokenUsage | None,
    cost: Decimal,
    status: int,
    latency_ms: float,
    ttft_ms: float | None = None,
    streamed: bool = False,
    fallbacks: int = 0,
    error: GatewayError | None = None,
    error_type: str | None = None,
    project_tag: str | None = None,
    endpoint: str = "chat",
) -> dict[str, Any]:
    """One ledger row, as the writer stores it (every column, typed: it skips re-validation).

    ``endpoint`` is the API the client called (:func:`recorded_endpoint`)."""
    profile = runtime.profiles.get(deployment)
    usage = usage or TokenUsage()
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
        "error_type": error_type or (error.code if error is not None else None),
        "streamed": streamed,
        "fallbacks": fallbacks,
        # attribution (reports group by each)
        "end_user": user[:256] if isinstance(user, str) and user else None,
        "key_tags": key_tags_text(caller.tags),
        "project_tag": project_tag[:200] if project_tag else None,
        # what policy simulation replays (routing.simulate)
        "endpoint": endpoint,
        "needs": tags_text(recorded_needs(body, plan.signals)),
    }


_DIALECT_ENDPOINTS = {"anthropic": "messages", "responses": "responses"}


def recorded_endpoint(endpoint: Endpoint, dialect: str) -> str:
    """The API a request came in on, as the ledger records it: ``chat``, ``completions`` or
    ``embeddings`` for OpenAI's, ``messages`` (Anthropic) or ``responses`` (OpenAI Responses)."""
    return _DIALECT_ENDPOINTS.get(dialect, endpoint)


def key_tags_text(tags: frozenset[str] | tuple[str, ...]) -> str | None:
    """A key's tags as the ledger stores them: a sorted JSON array, or None for none."""
    return tags_text(tags)


def tags_text(tags: frozenset[str] | tuple[str, ...]) -> str | None:
    """A set of names as the ledger stores them (key tags, needs): a sorted JSON array, or None."""
    return orjson.dumps(sorted(tags)).decode() if tags else None

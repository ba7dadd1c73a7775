"""``on_budget_exhausted: downgrade``: a request the budget cannot pay for goes to a free deployment.

Admission is tried on the plan as usual. When it refuses for the budget (429 ``budget_exceeded``)
and the caller's project says ``downgrade``, the request is planned again with only deployments
that cost nothing permitted (``LiveState.downgrade``; every other constraint, sensitivity first,
still holds) and admitted on that plan, which reserves nothing. When no free deployment is
permitted the budget's own 429 stands: a downgrade never spends money the budget does not have.
The plan's rule becomes ``budget-downgrade``, which the ledger row, the ``x-switchyard-rule``
header and the request log show, next to the ``x-switchyard-downgraded: budget`` header.

A downgrading project's requests without ``max_tokens`` must be affordable in full (the default
output cap) on the paid plan; otherwise they are downgraded rather than cut short.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core.errors import BudgetExceeded, GatewayError
from core.literals import Endpoint
from routing.live import DOWNGRADE_RULE, LiveState
from routing.types import Plan

if TYPE_CHECKING:
    from gateway.accounting import Admitted
    from gateway.auth import Caller
    from gateway.runtime import Runtime
    from gateway.state import GatewayState


def downgrades(runtime: Runtime, caller: Caller) -> bool:
    project = runtime.projects.get(caller.project)
    return project is not None and project.on_budget_exhausted == "downgrade"


async def admit_or_downgrade(
    state: GatewayState,
    runtime: Runtime,
    caller: Caller,
    body: dict[str, Any],
    endpoint: Endpoint,
    plan: Plan,
    replan: Callable[[LiveState], Awaitable[Plan]],
) -> tuple[Plan, Admitted]:
    """Admit ``plan``; or, for a downgrading project out of budget, a plan of free deployments."""
    downgrade = downgrades(runtime, caller) and state.live is not None
    try:
        return plan, await state.accountant.admit(caller, runtime, plan, body, endpoint, whole_output=downgrade)
    except BudgetExceeded as refusal:
        if not downgrade or state.live is None:
            raise
        try:
            cheaper = await replan(state.live.downgraded)
        except GatewayError:
            raise refusal from None  # nothing free is permitted: the budget's answer stands
        cheaper = replace(cheaper, rule=DOWNGRADE_RULE)
        return cheaper, await state.accountant.admit(caller, runtime, cheaper, body, endpoint)


async def explain_conditions(state: GatewayState, caller: Caller, body: dict[str, Any], endpoint: Endpoint) -> LiveState | None:
    """The measured conditions ``POST /v1/route/explain`` plans under: downgraded when the
    caller's project downgrades and a budget has less left than the least the real call would
    have to reserve on the plan (reservations of requests in flight count as spent)."""
    live = state.live
    if live is None:
        return None
    runtime = state.runtime
    if not downgrades(runtime, caller) or state.admission is None:
        return live.state
    from gateway.proxy import routing_request

    request = routing_request(runtime, {}, caller, body, endpoint, state.volume.rate(caller.project), live=live.state)
    decision = runtime.router.decide(request, state.breakers.snapshot())
    if decision.error is not None:
        return live.state
    claim = state.accountant.claim(caller, runtime, decision.plan(), body, endpoint, whole_output=True)
    for subject in claim.subjects:
        if subject.budget_usd is None:
            continue
        budget = await state.admission.budget_state(subject)
        if subject.budget_usd - budget.spent_usd - budget.reserved_usd < claim.least_usd:
            return live.downgraded
    return live.state

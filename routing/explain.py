"""A routing decision as JSON-ready data: what ``POST /v1/route/explain`` and ``switchyard check
--explain`` show. A refusal is reported with the same detail as a plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routing.governance import requires_dict
from routing.types import Signals

if TYPE_CHECKING:
    from routing.router import Decision


def signals_dict(signals: Signals) -> dict[str, Any]:
    return {
        "sensitivity": signals.sensitivity.label,
        "sensitivity_sources": list(signals.sensitivity_sources),
        "detections": [{"entity": hit.entity, "count": hit.count, "level": hit.level.label} for hit in signals.detections],
        "task": signals.task,
        "task_reason": signals.task_reason,
        "prompt_tokens": signals.prompt_tokens,
        "max_output_tokens": signals.max_output_tokens,
        "unscannable": dict(signals.unscannable),
        "scan_limited": signals.scan_limited,
        "needs": list(signals.needs),
        "complexity": signals.complexity,
        "complexity_reason": signals.complexity_reason,
        "volume": signals.volume,
        "volume_reason": signals.volume_reason,
    }


def _error_dict(error: Exception) -> dict[str, Any]:
    # Which HTTP status and error code a refusal becomes is the gateway's one table
    # (gateway/refusals.py), which fills them in: routing only says what was refused and why.
    return {"type": type(error).__name__, "message": str(error)}


def explain_decision(decision: Decision) -> dict[str, Any]:
    """Signals, matched rule, ranked candidates with estimated cost, every exclusion with its reason."""
    request = decision.request
    return {
        "model": request.model,
        "endpoint": request.endpoint,
        "decision": "refused" if decision.error else "planned",
        "route": decision.route.name if decision.route else None,
        "rule": decision.rule.name if decision.rule else None,
        "objective": decision.objective,
        "rerouted": decision.rerouted,
        "project": request.project,
        "requires": requires_dict(request.requires),
        "set": dict(decision.rule.set) if decision.rule and decision.rule.set else {},
        "signals": signals_dict(decision.view.signals) if decision.view else None,
        "candidates": [
            {
                "rank": rank,
                "deployment": c.deployment,
                "locality": c.locality,
                "estimated_cost_usd": round(c.estimated_cost_usd, 10),
                "reason": c.reason,
            }
            for rank, c in enumerate(decision.candidates, start=1)
        ],
        "excluded": [{"deployment": e.deployment, "reason": e.reason} for e in decision.excluded],
        "notes": list(decision.notes),
        "error": _error_dict(decision.error) if decision.error else None,
    }

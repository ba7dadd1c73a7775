"""A simulation over the ledger, as the JSON the API answers (the CSV and table are made from it).

Money is exact: every amount is a plain decimal string summed from the ledger's own values
(``current_cost_usd`` is the ledger's sum for the same rows, so it equals ``/admin/usage`` and
the reports for the same range and project to the last digit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from decimal import Decimal
from typing import Any

from core.literals import LEVELS
from gateway.config import GatewayConfig
from gateway.db.engine import Database
from gateway.db.types import decimal_str
from gateway.reports.dates import DayRange
from gateway.simulation.candidate import simulation_policy
from gateway.simulation.rows import load_rows
from routing.simulate import ProjectResult, Share, SimulationResult, Tally, simulate

NOTES = (
    "Rows with status 400 or more are not replayed: they keep their recorded cost on both sides (failed_*).",
    "A request keeps its recorded deployment unless the candidate forbids it or ranks another first where the "
    "running policy did not; it is then priced at the candidate's first choice, with its recorded tokens.",
    "Blocked and unservable requests cost nothing in the simulation; refused_current_cost_usd is what they cost.",
    "Requests the running policy refuses as well (ledger rows from an earlier config) are left as they were "
    "(already_refused_requests).",
    "Every deployment not marked enabled: false takes part, on both sides, whether or not its API key is set.",
)


def _share(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _shares(share: Share) -> dict[str, Any]:
    return {
        "requests": share.requests,
        "tokens": share.tokens,
        "self_hosted_requests": share.self_hosted_requests,
        "self_hosted_tokens": share.self_hosted_tokens,
        "by_requests": _share(share.by_requests),
        "by_tokens": _share(share.by_tokens),
    }


def _tally(tally: Tally, prefix: str = "") -> dict[str, Any]:
    return {
        f"{prefix}requests": tally.requests,
        f"{prefix}tokens": tally.tokens,
        f"{prefix}current_cost_usd": decimal_str(tally.current_usd),
        f"{prefix}simulated_cost_usd": decimal_str(tally.simulated_usd),
    }


def project_view(p: ProjectResult) -> dict[str, Any]:
    """One project's result, JSON-ready."""
    refused_cost = p.blocked.current_usd + p.unservable.current_usd
    return {
        "project": p.project or None,
        "requests": p.requests,
        "current_cost_usd": decimal_str(p.current_usd),
        "simulated_cost_usd": decimal_str(p.simulated_usd),
        "delta_usd": decimal_str(p.delta_usd),
        "failed_requests": p.failed.requests,
        "failed_cost_usd": decimal_str(p.failed.current_usd),
        "moved_requests": p.moved.requests,
        "blocked_requests": p.blocked.requests,
        "unservable_requests": p.unservable.requests,
        "refused_current_cost_usd": decimal_str(refused_cost),
        "already_refused_requests": p.already_refused.requests,
        "self_hosted": {"current": _shares(p.current_share), "simulated": _shares(p.simulated_share)},
        "deployments": [
            {
                "deployment": name or None,
                "current_requests": now.requests,
                "simulated_requests": then.requests,
                "current_tokens": now.tokens,
                "simulated_tokens": then.tokens,
                "current_cost_usd": decimal_str(now.current_usd),
                "simulated_cost_usd": decimal_str(then.simulated_usd),
            }
            for name, (now, then) in sorted(p.deployments.items())
        ],
        "shifts": [
            {"from": source or None, "to": target, **_tally(tally)}
            for (source, target), tally in sorted(p.shifts.items(), key=lambda kv: (-kv[1].requests, kv[0]))
        ],
        "classes": [
            {
                "kind": c.kind,
                "requested_model": c.requested_model,
                "route": c.route,
                "rule": c.rule,
                "reason": c.reason,
                "requests": tally.requests,
                "tokens": tally.tokens,
                "current_cost_usd": decimal_str(tally.current_usd),
                "sensitivities": sorted(tally.sensitivities, key=LEVELS.index),
                "tasks": sorted(tally.tasks),
                "endpoints": sorted(tally.endpoints),
                "needs": sorted(tally.needs),
            }
            for c, tally in sorted(p.classes.items(), key=lambda kv: (-kv[1].requests, kv[0].requested_model, kv[0].reason))
        ],
    }


def totals_view(projects: list[ProjectResult]) -> dict[str, Any]:
    """The sums over every project."""
    current, simulated = Share(), Share()
    for p in projects:
        for total, part in ((current, p.current_share), (simulated, p.simulated_share)):
            total.requests += part.requests
            total.tokens += part.tokens
            total.self_hosted_requests += part.self_hosted_requests
            total.self_hosted_tokens += part.self_hosted_tokens
    money = {
        name: sum((getattr(p, name) for p in projects), Decimal(0)) for name in ("current_usd", "simulated_usd", "delta_usd")
    }
    return {
        "requests": sum(p.requests for p in projects),
        "current_cost_usd": decimal_str(money["current_usd"]),
        "simulated_cost_usd": decimal_str(money["simulated_usd"]),
        "delta_usd": decimal_str(money["delta_usd"]),
        "failed_requests": sum(p.failed.requests for p in projects),
        "moved_requests": sum(p.moved.requests for p in projects),
        "blocked_requests": sum(p.blocked.requests for p in projects),
        "unservable_requests": sum(p.unservable.requests for p in projects),
        "refused_current_cost_usd": decimal_str(
            sum((p.blocked.current_usd + p.unservable.current_usd for p in projects), Decimal(0))
        ),
        "already_refused_requests": sum(p.already_refused.requests for p in projects),
        "self_hosted": {"current": _shares(current), "simulated": _shares(simulated)},
    }


def report_view(result: SimulationResult, days: DayRange, project: str | None, source: str) -> dict[str, Any]:
    """The whole simulation, JSON-ready."""
    return {
        "object": "simulation",
        "candidate": source,
        "since": days.first,
        "until": days.last,
        "project": project,
        "rows": result.rows,
        "totals": totals_view(result.projects),
        "projects": [project_view(p) for p in result.projects],
        "notes": list(NOTES),
    }


async def simulate_ledger(
    db: Database,
    running: GatewayConfig,
    candidate: GatewayConfig,
    days: DayRange,
    *,
    project: str | None = None,
    scope: Collection[str] = (),
    source: str = "candidate",
) -> dict[str, Any]:
    """Replay the ledger rows of ``days`` (of ``project``, within a finance key's ``scope``)
    through ``candidate`` against ``running``. The replay runs in a worker thread: it is seconds
    of CPU on a big ledger, and the event loop keeps serving meanwhile."""
    started = time.perf_counter()
    projects: Collection[str] | None = [project] if project is not None else (sorted(scope) or None)
    rows = await load_rows(db, days.start, days.end, projects)
    loaded = time.perf_counter()

    def run() -> SimulationResult:
        return simulate(rows, simulation_policy(running), simulation_policy(candidate))

    result = await asyncio.to_thread(run)
    report = report_view(result, days, project, source)
    report["timing"] = {"load_s": round(loaded - started, 3), "replay_s": round(time.perf_counter() - loaded, 3)}
    return report

"""A simulation report as CSV (exact amounts, one table at a time) and as text tables for a terminal
(amounts to the cent, deltas signed)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from gateway.reports.render import to_csv

TABLES = ("projects", "deployments", "shifts", "classes")
PROJECT_COLUMNS = (
    "project",
    "requests",
    "current_cost_usd",
    "simulated_cost_usd",
    "delta_usd",
    "current_self_hosted_request_share",
    "simulated_self_hosted_request_share",
    "current_self_hosted_token_share",
    "simulated_self_hosted_token_share",
    "moved_requests",
    "blocked_requests",
    "unservable_requests",
    "refused_current_cost_usd",
    "already_refused_requests",
    "failed_requests",
    "failed_cost_usd",
)
DEPLOYMENT_COLUMNS = (
    "project",
    "deployment",
    "current_requests",
    "simulated_requests",
    "current_tokens",
    "simulated_tokens",
    "current_cost_usd",
    "simulated_cost_usd",
)
SHIFT_COLUMNS = ("project", "from", "to", "requests", "tokens", "current_cost_usd", "simulated_cost_usd")
CLASS_COLUMNS = (
    "project",
    "kind",
    "requests",
    "tokens",
    "current_cost_usd",
    "requested_model",
    "route",
    "rule",
    "reason",
    "sensitivities",
    "tasks",
    "endpoints",
    "needs",
)
_TEXT = {
    "project",
    "deployment",
    "from",
    "to",
    "kind",
    "requested_model",
    "route",
    "rule",
    "reason",
    "sensitivities",
    "tasks",
    "endpoints",
    "needs",
}

_CENT = Decimal("0.01")


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    return to_csv(columns, rows, _TEXT)


def project_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per project (the shares spelled out as columns)."""
    rows = []
    for p in report["projects"]:
        now, then = p["self_hosted"]["current"], p["self_hosted"]["simulated"]
        rows.append(
            p
            | {
                "current_self_hosted_request_share": now["by_requests"],
                "simulated_self_hosted_request_share": then["by_requests"],
                "current_self_hosted_token_share": now["by_tokens"],
                "simulated_self_hosted_token_share": then["by_tokens"],
            }
        )
    return rows


def simulation_csv(report: dict[str, Any], table: str = "projects") -> str:
    """One of :data:`TABLES` as CSV, with every project's rows (the exact amounts of the JSON)."""
    if table == "projects":
        return _csv(PROJECT_COLUMNS, project_rows(report))
    columns = {"deployments": DEPLOYMENT_COLUMNS, "shifts": SHIFT_COLUMNS, "classes": CLASS_COLUMNS}[table]
    return _csv(columns, ({"project": p["project"]} | row for p in report["projects"] for row in p[table]))


# ---------------------------------------------------------------- text tables


def usd(value: str | Decimal, *, signed: bool = False) -> str:
    """``$1,234.57``; ``<$0.01`` for a non-zero amount under a cent; ``+``/``-`` when ``signed``."""
    amount = Decimal(value)
    sign = "-" if amount < 0 else ("+" if signed and amount > 0 else "")
    magnitude = abs(amount)
    if 0 < magnitude < _CENT:
        return f"{sign}<$0.01"
    return f"{sign}${magnitude.quantize(_CENT, rounding=ROUND_HALF_EVEN):,}"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _table(title: str, head: Sequence[str], lines: list[list[str]], total: list[str] | None = None) -> list[str]:
    everything = [list(head), *lines, *([total] if total else [])]
    widths = [max(len(line[i]) for line in everything) for i in range(len(head))]
    left = {0} | {i for i, h in enumerate(head) if h in ("from", "to", "kind", "reason", "request class", "deployment")}

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [title, "", fmt(list(head)), rule, *map(fmt, lines)]
    if total:
        out += [rule, fmt(total)]
    return [*out, ""]


def simulation_table(report: dict[str, Any]) -> str:
    """Per project, then the volume shifts, then the request classes that would be refused."""
    name = report.get("candidate") or "candidate"
    scope = f", project {report['project']}" if report.get("project") else ""
    out = [
        f"Simulation of {name} over {report['rows']:,} ledger rows, {report['since']} to {report['until']}{scope}"
        " (USD, UTC days)",
        "",
    ]
    head = ("project", "current", "simulated", "delta", "self-hosted req", "self-hosted tok", "moved", "blocked", "unservable")

    def line(label: str, p: dict[str, Any]) -> list[str]:
        now, then = p["self_hosted"]["current"], p["self_hosted"]["simulated"]
        return [
            label,
            usd(p["current_cost_usd"]),
            usd(p["simulated_cost_usd"]),
            usd(p["delta_usd"], signed=True),
            f"{share(now['by_requests'])} -> {share(then['by_requests'])}",
            f"{share(now['by_tokens'])} -> {share(then['by_tokens'])}",
            f"{p['moved_requests']:,}",
            f"{p['blocked_requests']:,}",
            f"{p['unservable_requests']:,}",
        ]

    lines = [line(p["project"] or "-", p) for p in report["projects"]]
    out += _table("Cost per project", head, lines, line("TOTAL", report["totals"]))
    shifts = [
        [
            p["project"] or "-",
            s["from"] or "-",
            s["to"],
            f"{s['requests']:,}",
            usd(s["current_cost_usd"]),
            usd(s["simulated_cost_usd"]),
        ]
        for p in report["projects"]
        for s in p["shifts"]
    ]
    if shifts:
        out += _table(
            "Volume shift (requests moved between deployments)",
            ("project", "from", "to", "requests", "current", "simulated"),
            shifts,
        )
    else:
        out += ["Volume shift: no request changes deployment.", ""]
    classes = [
        [
            p["project"] or "-",
            c["kind"],
            f"{c['requests']:,}",
            describe_class(c),
            c["reason"],
        ]
        for p in report["projects"]
        for c in p["classes"]
    ]
    if classes:
        out += _table(
            "Requests that would become blocked or unservable",
            ("project", "kind", "requests", "request class", "reason"),
            classes,
        )
    else:
        out += ["No request would become blocked or unservable.", ""]
    failed = report["totals"]["failed_requests"]
    if failed:
        out.append(f"{failed:,} failed rows (status >= 400) are not replayed; they keep their recorded cost.")
    return "\n".join(out).rstrip("\n") + "\n"


def describe_class(c: dict[str, Any]) -> str:
    """``auto, rule keep-home: confidential, restricted; code, chat; needs tools``."""
    head = c["requested_model"] + (f", rule {c['rule']}" if c.get("rule") else "")
    parts = [", ".join(c["sensitivities"]), ", ".join(c["tasks"])]
    if c["endpoints"] != ["chat"]:
        parts.append("on " + ", ".join(c["endpoints"]))
    if c["needs"]:
        parts.append("needs " + ", ".join(c["needs"]))
    return f"{head}: " + "; ".join(parts)

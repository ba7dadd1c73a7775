"""Reports as CSV (exact values, one line per row, no total line) and as a text table (with a total).

Text cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first)
get a leading ``'``; numbers are written as they are, so negative savings stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.reports.projects import PROJECT_COLUMNS
from gateway.reports.series import POINT_COLUMNS

BREAKDOWN_COLUMNS = (
    "group",
    "label",
    "spend_usd",
    "share_of_spend",
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "errors",
    "error_rate",
    "self_hosted_token_share",
    "self_hosted_spend_usd",
    "hosted_spend_usd",
    "savings_usd",
)
DAILY_COLUMNS = ("day", "group", "label", *POINT_COLUMNS)
_TEXT_COLUMNS = {"project", "group", "label", "budget_period"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(column: str, value: Any, text_columns: frozenset[str] | set[str] = _TEXT_COLUMNS) -> str:
    """One CSV cell: empty for null, ``true``/``false`` for booleans, lists space-separated, and
    text in ``text_columns`` made inert for spreadsheets (a leading ``'`` before ``=``, ``+``, ...)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = " ".join(map(str, value))
    text = str(value)
    if column in text_columns and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def to_csv(
    columns: Sequence[str], rows: Iterable[dict[str, Any]], text_columns: frozenset[str] | set[str] = _TEXT_COLUMNS
) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(c, row.get(c), text_columns) for c in columns])
    return out.getvalue()


def projects_csv(report: dict[str, Any]) -> str:
    return to_csv(PROJECT_COLUMNS, report["projects"])


def breakdown_csv(report: dict[str, Any]) -> str:
    return to_csv(BREAKDOWN_COLUMNS, report["rows"])


def daily_csv(report: dict[str, Any]) -> str:
    """Long format: one line per day and group that has traffic."""
    rows = (
        {"group": s["group"], "label": s["label"]} | point for s in report["series"] for point in s["points"] if point["requests"]
    )
    return to_csv(DAILY_COLUMNS, sorted(rows, key=lambda r: (r["day"], r["label"])))


_TABLE = (
    ("project", "project"),
    ("spend_usd", "spend"),
    ("budget_usd", "budget"),
    ("budget_used_pct", "used %"),
    ("forecast_usd", "forecast"),
    ("savings_usd", "savings"),
    ("self_hosted_token_share", "self-hosted"),
    ("requests", "requests"),
    ("errors", "errors"),
)


def projects_table(report: dict[str, Any]) -> str:
    """A fixed-width table for a terminal, with a TOTAL line; money is exact, as in the JSON."""

    def show(column: str, value: Any) -> str:
        if value is None:
            return "-"
        if column == "self_hosted_token_share":
            return f"{value * 100:.1f}%"
        return str(value)

    lines = [[title for _, title in _TABLE]]
    for row in report["projects"]:
        cells = [show(c, row.get(c)) for c, _ in _TABLE]
        if row.get("forecast_exceeds_budget"):
            cells[4] += " !"
        lines.append(cells)
    totals = report["totals"]
    total = ["TOTAL"] + [show(c, totals.get(c)) if c in totals else "" for c, _ in _TABLE[1:]]
    widths = [max(len(line[i]) for line in [*lines, total]) for i in range(len(_TABLE))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    head = f"Spend per project, {report['since']} to {report['until']} (USD, UTC days)"
    notes = ["! forecast exceeds the budget"] if any(r.get("forecast_exceeds_budget") for r in report["projects"]) else []
    return "\n".join([head, "", fmt(lines[0]), rule, *map(fmt, lines[1:]), rule, fmt(total), *notes]) + "\n"

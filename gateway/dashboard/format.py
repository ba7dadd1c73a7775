"""How the dashboard shows numbers: dollars to the cent (exact values stay in data attributes and
CSV), whole counts with separators, shares as percentages, days as ``Nov 3``."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

_CENT = Decimal("0.01")
MINUS = "\u2212"


def to_decimal(value: Decimal | str | int | None) -> Decimal | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def usd(value: Decimal | str | int | None, *, empty: str = "\u2014") -> str:
    """``$1,234.57``; a non-zero amount under a cent is ``<$0.01``, so it never reads as nothing."""
    amount = to_decimal(value)
    if amount is None:
        return empty
    sign = MINUS if amount < 0 else ""
    magnitude = abs(amount)
    if 0 < magnitude < _CENT:
        return f"{sign}<$0.01"
    return f"{sign}${magnitude.quantize(_CENT, rounding=ROUND_HALF_EVEN):,}"


def usd_compact(value: Decimal | float) -> str:
    """Axis labels: ``$0``, ``$2.5``, ``$40``, ``$1.2k``, ``$3M``."""
    amount = float(value)
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(amount) >= limit:
            return f"${amount / limit:.3g}{suffix}"
    return f"${amount:.3g}" if amount else "$0"


def count(value: int | None) -> str:
    return "\u2014" if value is None else f"{value:,}"


def percent(value: float | None, digits: int = 1) -> str:
    """A 0..100 percentage: ``42.5%``."""
    return "\u2014" if value is None else f"{value:.{digits}f}%"


def share(value: float | None) -> str:
    """A 0..1 share as a percentage: ``0.375`` -> ``37.5%``."""
    return "\u2014" if value is None else f"{value * 100:.1f}%"


def day_label(day: str, *, year: bool = False) -> str:
    d = date.fromisoformat(day)
    return f"{d:%b} {d.day}" + (f", {d.year}" if year else "")


def range_label(since: str, until: str) -> str:
    """``1–30 Nov 2026``, ``28 Oct – 3 Nov 2026``, ``1 Dec 2025 – 31 Jan 2026``."""
    a, b = date.fromisoformat(since), date.fromisoformat(until)
    if a == b:
        return f"{a.day} {a:%b %Y}"
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day}\u2013{b.day} {b:%b %Y}"
    if a.year == b.year:
        return f"{a.day} {a:%b} \u2013 {b.day} {b:%b %Y}"
    return f"{a.day} {a:%b %Y} \u2013 {b.day} {b:%b %Y}"

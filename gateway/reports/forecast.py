"""Budget periods in reports: spend so far in the period, and where it is heading.

The period is the project's budget window (UTC day, ISO week, calendar month, or ``total``)
that contains the report's last day, or now if the report ends later. Its spend runs from the
window's first day through today (today's rows so far included), or through its last day if
the window has ended. The forecast extrapolates
that spend at its average rate so far to the window's end:

    forecast = period_spend * window_length / time_elapsed      (elapsed at least one hour)

A window that has ended forecasts exactly what it spent; a ``total`` budget has no end and no
forecast. ``forecast_exceeds_budget`` compares the forecast (for ``total``, the spend) with the
budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from gateway.admission.base import Window, budget_window
from gateway.reports.dates import DayRange

_CENT = Decimal("0.01")
_MIN_ELAPSED_S = 3600.0


@dataclass(frozen=True, slots=True)
class Period:
    """One project's budget window as a report sees it."""

    window: Window
    days: DayRange | None  # the days to sum (window start through min(today, window end)); None: nothing yet
    ended: bool


def report_period(period: str, days: DayRange, now: datetime) -> Period:
    """The budget window containing the report's last day (or now, if earlier)."""
    window = budget_window(period, min(now, days.end - timedelta(microseconds=1)))  # type: ignore[arg-type]
    first: date = window.start.date() if window.start is not None else date(1970, 1, 1)
    ended = window.end is not None and window.end <= now
    last = (window.end - timedelta(microseconds=1)).date() if ended and window.end is not None else now.date()
    return Period(window, DayRange(first, last) if first <= last else None, ended)


def forecast(period: Period, spend: Decimal, now: datetime) -> Decimal | None:
    """Spend projected to the end of the window at the rate so far (cents); None for ``total``."""
    window = period.window
    if window.start is None or window.end is None:
        return None
    if period.ended:
        return spend.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    length = (window.end - window.start).total_seconds()
    elapsed = max(_MIN_ELAPSED_S, (min(now, window.end) - window.start).total_seconds())
    projected = spend * Decimal(length) / Decimal(elapsed)
    return projected.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def used_pct(spend: Decimal, budget: Decimal | None) -> float | None:
    """Spend as a percentage of the budget, two decimals; None without a (non-zero) budget."""
    if budget is None or budget <= 0:
        return None
    return float((spend * 100 / budget).quantize(_CENT, rounding=ROUND_HALF_EVEN))


def exceeds(budget: Decimal | None, projected: Decimal | None, spend: Decimal) -> bool:
    if budget is None:
        return False
    return (projected if projected is not None else spend) > budget

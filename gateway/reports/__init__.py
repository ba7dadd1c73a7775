"""Finance reports over the ledger's daily rollups: per-project spend against budget, forecasts,
savings against a reference model, daily series and breakdowns, as JSON, CSV or a text table.

Every figure is summed from ``usage_daily`` / ``usage_daily_attribution`` (never from raw rows),
in exact decimals; the property tests show the rollups equal the rows they count.
"""

from gateway.reports.dates import DayRange, parse_range
from gateway.reports.projects import PROJECT_COLUMNS, projects_report
from gateway.reports.series import BREAKDOWN_DIMENSIONS, breakdown_report, daily_report

__all__ = [
    "BREAKDOWN_DIMENSIONS",
    "PROJECT_COLUMNS",
    "DayRange",
    "breakdown_report",
    "daily_report",
    "parse_range",
    "projects_report",
]

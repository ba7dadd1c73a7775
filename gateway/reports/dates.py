"""Report ranges: inclusive UTC days, given as ``YYYY-MM-DD``; the current month by default."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from core.errors import InvalidRequest

MAX_DAYS = 3660  # ten years: a wider range is almost certainly a typo
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class DayRange:
    """``since`` to ``until``, both included, in UTC days."""

    since: date
    until: date

    @property
    def days(self) -> list[str]:
        """Every day of the range, as ``YYYY-MM-DD``."""
        return [(self.since + timedelta(days=i)).isoformat() for i in range((self.until - self.since).days + 1)]

    @property
    def first(self) -> str:
        return self.since.isoformat()

    @property
    def last(self) -> str:
        return self.until.isoformat()

    @property
    def start(self) -> datetime:
        """The first instant of the range (UTC)."""
        return datetime.combine(self.since, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the range (UTC)."""
        return datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=UTC)

    def query(self) -> str:
        """The range as a query string, for links that keep the filters."""
        return f"since={self.first}&until={self.last}"


def current_month(today: date) -> DayRange:
    """The calendar month of ``today``, first to last day."""
    first = today.replace(day=1)
    following = first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
    return DayRange(first, following - timedelta(days=1))


def parse_day(value: str, param: str) -> date:
    """A ``YYYY-MM-DD`` day, or a 400 naming ``param``."""
    if not _DATE.match(value):
        raise InvalidRequest(f"{param}: expected a date as YYYY-MM-DD, got '{value[:40]}'", param=param, code="invalid_date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{param}: '{value}' is not a calendar date", param=param, code="invalid_date") from None


def parse_range(since: str | None, until: str | None, today: date) -> DayRange:
    """The range a report covers; a missing bound defaults to the current month's."""
    month = current_month(today)
    start = parse_day(since, "since") if since else (month.since if not until else None)
    end = parse_day(until, "until") if until else None
    if start is None:  # only until given: its month
        assert end is not None
        start = end.replace(day=1)
    if end is None:  # only since given (or neither): through the end of this month (or of since's, if later)
        end = max(month.until, current_month(start).until)
    if start > end:
        raise InvalidRequest(
            f"since ({start}) is after until ({end}); both days are included", param="since", code="invalid_range"
        )
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidRequest(f"the range {start}..{end} is longer than {MAX_DAYS} days", param="until", code="invalid_range")
    return DayRange(start, end)

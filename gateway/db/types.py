"""Column types that behave the same on SQLite and Postgres.

``Money``        NUMERIC(18, 10) on Postgres. SQLite has no exact decimal type (a NUMERIC
                 column there stores a binary float), so on SQLite the value is kept as an
                 integer count of 1e-10 USD. ``SUM()`` then stays exact on both, and Python
                 always sees :class:`~decimal.Decimal`.
``UTCDateTime``  ``timestamptz`` on Postgres, ISO text on SQLite; always an aware UTC
                 datetime in Python (naive inputs are taken to be UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_SCALE = 10
_MONEY_UNIT = Decimal(1).scaleb(-MONEY_SCALE)


def to_decimal(value: Any) -> Decimal:
    """A Decimal from a Decimal, int, str or float (floats go through ``str`` to avoid binary noise)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def decimal_str(value: Decimal | None) -> str:
    """Plain notation without trailing zeros: ``Decimal('1.2300')`` -> ``'1.23'``, ``0`` -> ``'0'``."""
    if value is None:
        return "0"
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


class Money(TypeDecorator[Decimal]):
    """USD amount: exact NUMERIC(18, 10) on Postgres, integer 1e-10 USD units on SQLite."""

    impl = Numeric(18, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = to_decimal(value).quantize(_MONEY_UNIT, rounding=ROUND_HALF_EVEN)
        if dialect.name == "sqlite":
            return int(amount.scaleb(MONEY_SCALE))
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-MONEY_SCALE)
        return to_decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment


class utc_day(FunctionElement[str]):
    """``YYYY-MM-DD`` of a UTCDateTime column, as text, on SQLite and Postgres."""

    type = String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day, "postgresql")
def _utc_day_postgres(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def utcnow() -> datetime:
    return datetime.now(UTC)

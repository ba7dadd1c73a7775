"""The usage ledger: a batched writer behind a write-ahead journal (replayed after a crash or an outage), and reports."""

from gateway.ledger.usage import GROUP_BY_FIELDS, render_report, usage_report
from gateway.ledger.writer import LedgerStats, LedgerWriter, normalize

__all__ = ["GROUP_BY_FIELDS", "LedgerStats", "LedgerWriter", "normalize", "render_report", "usage_report"]

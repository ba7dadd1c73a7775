"""Admission: RPM/TPM limits and budget reservations, atomically for a key and its project.

admission = make_admission(config.redis_url)          # Redis if set, else in-process
ticket = await admission.admit(key_info.subjects(), tokens=prompt + max_tokens, reserve_usd=worst)
...                                                   # call the backend
await admission.settle(ticket, actual_usd=cost, actual_tokens=used)   # or release(ticket)
"""

from __future__ import annotations

from gateway.admission.base import (
    Admission,
    BudgetState,
    OutputClaim,
    RateLimitInfo,
    Settlement,
    Subject,
    Ticket,
    Window,
    budget_window,
    format_duration,
)
from gateway.admission.memory import MemoryAdmission
from gateway.admission.redis_backend import RedisAdmission
from gateway.admission.seed import budget_subjects, seed_from_ledger


def make_admission(redis_url: str | None, prefix: str = "switchyard") -> Admission:
    """Redis-backed admission when ``redis_url`` is set (shared by replicas), in-process otherwise."""
    return RedisAdmission(redis_url, prefix) if redis_url else MemoryAdmission()


__all__ = [
    "Admission",
    "BudgetState",
    "MemoryAdmission",
    "OutputClaim",
    "RateLimitInfo",
    "RedisAdmission",
    "Settlement",
    "Subject",
    "Ticket",
    "Window",
    "budget_subjects",
    "budget_window",
    "format_duration",
    "make_admission",
    "seed_from_ledger",
]

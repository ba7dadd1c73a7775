"""Backends under test, built the same way for every semantic test."""

from __future__ import annotations

from datetime import datetime

from gateway.admission import MemoryAdmission, RedisAdmission
from gateway.admission.base import Admission
from tests.db.fixtures import REDIS_URL


class Clock:
    """A settable wall clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def build(kind: str, prefix: str, clock: Clock, **kwargs: object) -> Admission:
    if kind == "memory":
        return MemoryAdmission(clock=clock, **kwargs)  # type: ignore[arg-type]
    return RedisAdmission(REDIS_URL, prefix, clock=clock, **kwargs)  # type: ignore[arg-type]

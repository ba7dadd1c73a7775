"""``measurements:`` in the config file: how measured routing signals are kept and shared."""

from __future__ import annotations

from pydantic import Field

from core.strict import Strict


class MeasurementsConfig(Strict):
    """Spend against caps and latency per deployment, shared through Redis when ``redis_url`` is set.

    Each replica sends what it measured and reads everyone's at most every ``sync_interval_s``,
    in the background: a spend cap is seen by the other replicas within that bound, and the
    request path never waits for Redis."""

    sync_interval_s: float = Field(default=0.5, gt=0, le=60)
    latency_alpha: float = Field(default=0.2, gt=0, le=1)  # weight of a new answer in the moving average
    latency_min_samples: int = Field(default=3, ge=1)  # answers before a measurement outranks the latency_ms hint
    latency_max_age_s: float = Field(default=600, gt=0)  # a measurement with no new answer for this long is dropped

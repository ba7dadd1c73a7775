"""The volume signal: is the caller's project busy (``high``) or not (``normal``)?

The gateway measures each project's request rate (requests per minute over the last
``routing.volume.window_s`` seconds, summed over every replica when Redis is shared: see
``gateway.volume``) and hands it to the router as plain data, ``RoutingRequest.volume_rpm``. This
module only compares it with the thresholds, so a policy simulation can replay a rate measured
earlier under candidate thresholds. A caller that knows only the class (a replayed ledger row)
passes ``RoutingRequest.volume`` instead, which wins. Nothing measured means ``normal``.
"""

from __future__ import annotations

import functools

from pydantic import Field

from core.strict import Strict

VOLUMES = ("normal", "high")


class ProjectVolume(Strict):
    """One project's own threshold."""

    high_rpm: float = Field(gt=0)


class VolumePolicy(Strict):
    """Thresholds of the volume signal (``routing.volume``) and how the gateway measures it."""

    window_s: int = Field(default=60, ge=1, le=600)  # the rate is taken over this many seconds
    high_rpm: float = Field(default=600, gt=0)  # a project at this many requests per minute or more is "high"
    projects: dict[str, ProjectVolume] = Field(default_factory=dict)  # per-project thresholds
    # gateway: how often a replica adds its counts to Redis and reads everyone's (never on the request path)
    sync_interval_s: float = Field(default=1.0, gt=0, le=60)

    def threshold(self, project: str | None) -> float:
        override = self.projects.get(project) if project is not None and self.projects else None
        return override.high_rpm if override is not None else self.high_rpm


def classify_volume(policy: VolumePolicy, project: str | None, rpm: float | None, given: str | None = None) -> tuple[str, str]:
    """``(volume, reason)`` for ``project`` at ``rpm`` requests per minute (None: not measured)."""
    if given is not None:
        return given, f"{given}: given by the caller"
    if rpm is None:
        return "normal", "normal: not measured"
    return _classified(rpm, policy.threshold(project), policy.window_s)


@functools.lru_cache(maxsize=1024)
def _classified(rpm: float, threshold: float, window_s: int) -> tuple[str, str]:
    # a rate is a count x 60 / window_s: few distinct values, so the reason is formatted rarely
    if rpm >= threshold:
        return "high", f"high: {rpm:.1f} requests/min over the last {window_s} s, at or above {threshold:g}"
    return "normal", f"normal: {rpm:.1f} requests/min over the last {window_s} s, below {threshold:g}"

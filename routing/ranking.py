"""Ranking with measured conditions: the ``fastest`` objective by measured latency, and equivalent
deployments of one ``group`` balanced by weight or by least in-flight requests.

``fastest`` ranks by a deployment's moving-average time to first token when the request streams
(its whole-answer latency otherwise, or when no TTFT is measured yet), then by its static
``latency_ms`` hint, then unknown last; estimated cost breaks ties. A measurement counts once it
is made of ``LiveState.min_samples`` answers.

Deployments that tie on the objective's key (same estimated cost and quality under ``cheapest``,
and so on) and share a ``group`` are ordered by the route's ``balance``:

* ``weighted``: a weighted random order (the first pick is ``weight / sum of weights``, then the
  same among the rest), drawn from ``LiveState.rng`` so tests can seed it (without one: heaviest
  first, then config order);
* ``least_in_flight``: fewest requests in flight first (``LiveState.in_flight``), then the
  higher weight, then config order.

Deployments without a group keep today's order (config order breaks ties), so a config that
declares no group ranks exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from routing.live import LiveState
from routing.types import Candidate, DeploymentProfile, Objective

Item = tuple[DeploymentProfile, float, int]  # (deployment, estimated cost, config index)

_RANK_REASONS = {
    "cheapest": "cheapest: ranked by estimated cost, then quality",
    "best": "best: ranked by quality, then estimated cost",
}


class Ranker:
    """Orders permitted candidates for one request: objective, measurements, balancing."""

    __slots__ = ("balance", "live", "objective", "rng", "streaming")

    def __init__(self, objective: Objective, live: LiveState, *, streaming: bool = False, balance: str = "weighted") -> None:
        self.objective = objective
        self.live = live
        self.streaming = streaming
        self.balance = balance
        self.rng = live.rng

    # ---- latency

    def latency(self, deployment: DeploymentProfile) -> tuple[float | None, str]:
        """The latency ``fastest`` ranks ``deployment`` by, and where it comes from."""
        measured = self.live.latency.get(deployment.name)
        enough = self.live.min_samples
        if measured is not None:
            if self.streaming and measured.ttft_ms is not None and measured.ttft_samples >= enough:
                return measured.ttft_ms, (
                    f"measured time to first token {measured.ttft_ms:.0f} ms (moving average of {measured.ttft_samples})"
                )
            if measured.latency_ms is not None and measured.samples >= enough:
                return (
                    measured.latency_ms,
                    f"measured latency {measured.latency_ms:.0f} ms (moving average of {measured.samples})",
                )
        if deployment.latency_ms is not None:
            return deployment.latency_ms, f"latency hint {deployment.latency_ms:g} ms (not measured yet)"
        return None, "no latency measured or hinted, so after those with one"

    # ---- keys and reasons

    def _key(self, item: Item) -> tuple[Any, ...]:
        deployment, cost, _ = item
        if self.objective == "fastest":
            latency, _ = self.latency(deployment)
            return (latency is None, latency or 0.0, cost)
        if self.objective == "best":
            return (-deployment.quality, cost)
        return (cost, -deployment.quality)

    def reason(self, deployment: DeploymentProfile) -> str:
        if self.objective == "fastest":
            _, source = self.latency(deployment)
            return f"fastest: {source}, then estimated cost"
        return _RANK_REASONS[self.objective]

    # ---- ordering

    def rank(self, items: Sequence[Item]) -> list[Candidate]:
        """``items`` ordered by the objective, tied group members balanced; each with its reason."""
        keyed = sorted(((self._key(item), item) for item in items), key=lambda pair: (pair[0], pair[1][2]))
        if not any(item[0].group is not None for _, item in keyed):
            return [Candidate(d.name, d.locality, cost, self.reason(d)) for _, (d, cost, _) in keyed]
        out: list[Candidate] = []
        start = 0
        while start < len(keyed):
            end = start + 1
            while end < len(keyed) and keyed[end][0] == keyed[start][0]:
                end += 1
            out.extend(self._run([item for _, item in keyed[start:end]]))
            start = end
        return out

    def _run(self, run: list[Item]) -> list[Candidate]:
        """One run of tied items: each group's members reordered among the slots they hold."""
        notes: dict[str, str] = {}
        groups: dict[str, list[int]] = {}
        for slot, (deployment, _, _) in enumerate(run):
            if deployment.group is not None:
                groups.setdefault(deployment.group, []).append(slot)
        ordered = list(run)
        for group, slots in groups.items():
            if len(slots) < 2:
                continue
            members = [run[slot] for slot in slots]
            balanced, describe = self._balanced(members)
            total = sum(m[0].weight for m in members)
            for slot, item in zip(slots, balanced, strict=True):
                ordered[slot] = item
                notes[item[0].name] = f"balanced in group '{group}' ({describe(item[0], total)})"
        result = []
        for deployment, cost, _ in ordered:
            reason = self.reason(deployment)
            note = notes.get(deployment.name)
            result.append(Candidate(deployment.name, deployment.locality, cost, f"{reason}; {note}" if note else reason))
        return result

    def _balanced(self, members: list[Item]) -> tuple[list[Item], Callable[[DeploymentProfile, int], str]]:
        if self.balance == "least_in_flight":
            in_flight = self.live.in_flight
            ordered = sorted(members, key=lambda m: (in_flight.get(m[0].name, 0), -m[0].weight, m[2]))
            return ordered, lambda d, _total: f"least in flight: {in_flight.get(d.name, 0)} now"
        if self.rng is None:
            ordered = sorted(members, key=lambda m: (-m[0].weight, m[2]))
            return ordered, lambda d, total: f"weighted: {d.weight} of {total}, heaviest first (no random source)"
        return weighted_order(members, self.rng), lambda d, total: f"weighted: {d.weight} of {total}"


def weighted_order(members: Sequence[Item], rng: Callable[[], float]) -> list[Item]:
    """A random order where each next pick is proportional to weight among those left."""
    left = list(members)
    ordered: list[Item] = []
    while len(left) > 1:
        total = sum(m[0].weight for m in left)
        point = rng() * total
        pick = len(left) - 1  # rounding can leave the point past the last weight
        for index, member in enumerate(left):
            point -= member[0].weight
            if point < 0:
                pick = index
                break
        ordered.append(left.pop(pick))
    ordered.extend(left)
    return ordered

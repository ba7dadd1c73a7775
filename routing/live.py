"""What the gateway measures and hands the router as plain data, per request.

The router stays pure: it never counts, times or asks Redis anything. The gateway keeps these
numbers (``gateway.measured``) and passes a :class:`LiveState` on the
:class:`~routing.types.RoutingRequest`:

* ``capped``: deployments past a spend cap, each with the reason explain shows
  (``spend cap reached: $500.00 monthly``). They leave the plan like an unhealthy deployment.
* ``latency``: a moving average of latency and time to first token per deployment, which the
  ``fastest`` objective ranks by (falling back to the static ``latency_ms`` hint, then unknown).
* ``in_flight``: requests each deployment is serving now, for ``balance: least_in_flight``.
* ``downgrade``: the caller's budget cannot pay for this request and its project says
  ``on_budget_exhausted: downgrade``: only deployments that cost nothing may serve it.
* ``rng``: the random source of ``balance: weighted``, a function returning a float in [0, 1)
  (the gateway passes ``random.Random().random``; tests pass a seeded one). Routing imports no
  random source of its own: without one, a group's heaviest member simply comes first.

The mappings may be the gateway's own live dictionaries: the router only reads them, within one
synchronous ``plan`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

DOWNGRADE_RULE = "budget-downgrade"
"""Pseudo-rule name of a plan restricted to free deployments because the budget is spent."""


@dataclass(frozen=True, slots=True)
class Measured:
    """A deployment's moving averages (milliseconds) and how many answers they are made of."""

    latency_ms: float | None = None
    ttft_ms: float | None = None
    samples: int = 0  # answers behind latency_ms
    ttft_samples: int = 0  # streamed answers behind ttft_ms


@dataclass(frozen=True, slots=True)
class LiveState:
    """Measured conditions for one routing decision; see the module docstring."""

    capped: Mapping[str, str] = field(default_factory=dict)
    latency: Mapping[str, Measured] = field(default_factory=dict)
    in_flight: Mapping[str, int] = field(default_factory=dict)
    downgrade: str | None = None  # "budget": only free deployments
    rng: Callable[[], float] | None = None
    min_samples: int = 1  # fewer answers than this and the measurement is not trusted yet


NO_LIVE_STATE = LiveState()


def downgrade_reason(project: str | None) -> str:
    who = f"project '{project}'" if project else "this project"
    return f"budget exhausted: {who} downgrades to deployments that cost nothing (on_budget_exhausted: downgrade)"

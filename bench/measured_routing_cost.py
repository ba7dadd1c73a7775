"""What measured routing conditions cost ``Router.plan``: ``python -m bench.measured_routing_cost``.

Times the plan of one short chat request on the routing tests' four-deployment catalogue with no
measured state, with measured state that cannot change the result, with a capped deployment,
under ``fastest`` (hints, then measurements) and with a weighted group. Cases are interleaved and
the best of ``ROUNDS`` is kept, which is what a shared, noisy machine allows. Results:
docs/measured-routing.md.
"""

from __future__ import annotations

import random
import timeit
from dataclasses import replace

from routing.live import LiveState, Measured
from routing.router import Router
from routing.spec import Route
from routing.types import DeploymentProfile, Prices, RoutingRequest

ROUNDS, NUMBER = 15, 2000


def catalogue() -> list[DeploymentProfile]:
    """Two self-hosted and two hosted deployments, as in the routing tests."""

    def dep(name: str, locality: str, quality: int, prices: tuple[float, float], latency: float | None) -> DeploymentProfile:
        capabilities = frozenset({"chat", "completions", "tools"})
        return DeploymentProfile(
            name, "openai_compatible", name, locality, capabilities, 128_000, quality, Prices(*prices), latency
        )  # type: ignore[arg-type]

    return [
        dep("local-small", "self_hosted", 1, (0.5, 0.5), None),
        dep("vllm-8b", "self_hosted", 3, (0.3, 0.3), 400),
        dep("gpt-mini", "hosted", 4, (0.15, 0.6), 600),
        dep("claude-haiku", "hosted", 5, (0.8, 4.0), 300),
    ]


def route(**fields: object) -> Route:
    return Route.model_validate({"name": "auto", "candidates": [d.name for d in catalogue()], **fields})


def router(routes: list[Route] | None = None, deployments: list[DeploymentProfile] | None = None) -> Router:
    return Router(routes or [route()], deployments or catalogue())


def chat(model: str, text: str) -> RoutingRequest:
    return RoutingRequest(model=model, endpoint="chat", body={"messages": [{"role": "user", "content": text}]})


def main() -> None:
    plain = chat("auto", "What is the capital of France?")
    draw = random.Random(1).random
    live = LiveState(latency={"vllm-8b": Measured(300, None, 10)}, rng=draw)
    capped = LiveState(capped={"gpt-mini": "spend cap reached: $5.00 daily"}, rng=draw)
    grouped = [replace(d, group="g") if d.name in ("gpt-mini", "claude-haiku") else d for d in catalogue()]
    cases = [
        ("no measured state", router(), plain),
        ("measured state, cheapest", router(), replace(plain, live=live)),
        ("one deployment capped", router(), replace(plain, live=capped)),
        ("fastest, hints only", router([route(objective="fastest")]), plain),
        ("fastest, measured", router([route(objective="fastest")]), replace(plain, live=live)),
        ("weighted group balancing", router(deployments=grouped), replace(plain, live=live)),
    ]
    best = dict.fromkeys((name for name, _, _ in cases), float("inf"))
    for _ in range(ROUNDS):
        for name, r, request in cases:
            seconds = timeit.timeit(lambda r=r, request=request: r.plan(request, {}), number=NUMBER) / NUMBER
            best[name] = min(best[name], seconds)
    for name, seconds in best.items():
        print(f"{name:28s} {seconds * 1e6:6.1f} µs per plan (best of {ROUNDS} x {NUMBER})")


if __name__ == "__main__":
    main()

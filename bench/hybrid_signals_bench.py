"""CPU cost of the hybrid policy's signals (complexity, needs, volume) per request.

Run it on two trees and compare (the numbers are in docs/benchmarks-routing.md)::

    PYTHONPATH=<tree without them> python -m bench.hybrid_signals_bench
    PYTHONPATH=<tree with them>    python -m bench.hybrid_signals_bench

It prints ``Router.plan`` on the 1 KB chat request of ``bench.routing_bench`` (best of many
timeit rounds, so other processes on a shared machine weigh as little as they can), and, when
the tree has them, the new signals measured alone: the complexity estimate over the same text,
the volume class, and a rule list that uses every new condition.
"""

from __future__ import annotations

import argparse
import gc
import timeit

from bench.routing_bench import bench_request, bench_router
from routing.spec import SensitivityPolicy


def best_us(call: object, number: int, repeat: int) -> float:
    """The fastest round's time per call, in µs."""
    gc.collect()
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    router, request = bench_router(), bench_request(1)
    router.plan(request, {})
    print(f"Router.plan, 1 KB chat: {best_us(lambda: router.plan(request, {}), args.number, args.repeat):.2f} µs")
    try:
        from routing.complexity import ComplexityEstimator
        from routing.volume import VolumePolicy, classify_volume
    except ImportError:
        return  # the tree before the hybrid signals
    from dataclasses import replace

    from routing.content import extract_content
    from routing.router import Router
    from routing.spec import Rule

    text = extract_content("chat", request.body, None, 1 << 20).last_user_text
    estimator, policy = ComplexityEstimator(), VolumePolicy()
    n, r = args.number * 10, args.repeat
    print(f"  complexity estimate alone: {best_us(lambda: estimator.estimate(text, 300, 'chat'), n, r):.2f} µs")
    print(f"  volume class alone: {best_us(lambda: classify_volume(policy, 'default', 42.0), n, r):.2f} µs")
    measured = replace(request, volume_rpm=42.0)
    route = router.routes["auto"]
    hybrid_rules = [
        Rule(name="busy-simple", when={"volume": "high", "task": ["classify", "extract", "summarize"]}, prefer=["local-small"]),
        Rule(name="vision", when={"needs": ["vision"]}, allow={"locality": ["hosted"]}),
        Rule(name="hard", when={"complexity": "high"}, allow={"locality": ["hosted"]}),
        *route.rules,
    ]
    hybrid = Router(
        [route.model_copy(update={"rules": hybrid_rules})],
        list(router.deployments.values()),
        router_policy(),
        router.defaults,
    )
    hybrid.plan(measured, {})
    print(
        f"Router.plan, 1 KB chat, 3 hybrid rules ahead of the 2: {best_us(lambda: hybrid.plan(measured, {}), args.number, r):.2f} µs"
    )


def router_policy() -> SensitivityPolicy:
    """The sensitivity policy of ``bench_router``."""
    return SensitivityPolicy(detectors=[{"name": "project-names", "level": "internal", "keywords": ["falcon", "bluebird"]}])


if __name__ == "__main__":
    main()

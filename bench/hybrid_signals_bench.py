"""CPU cost of the hybrid policy's signals (complexity, needs, volume) per request.

Run it on two trees and compare (the numbers are in docs/benchmarks-routing.md)::

    PYTHONPATH=<tree without them> python -m bench.hybrid_signals_bench
    PYTHONPATH=<tree with them>    python -m bench.hybrid_signals_bench

It prints ``Router.plan`` on the 1 KB chat request of ``bench.routing_bench`` (CPU time of this
thread, best of many timeit rounds, so other processes on a shared machine weigh as little as
they can), and, when
the tree has them, the new signals measured alone: the complexity estimate over the same text,
the volume class, and a rule list that uses every new condition.
"""

from __future__ import annotations

import argparse
import gc
import time
import timeit
from collections.abc import Callable

from bench.routing_bench import bench_request, bench_router
from routing.router import Router
from routing.spec import SensitivityPolicy
from routing.types import RoutingRequest

CPU = time.thread_time  # CPU time of this thread: time spent descheduled on a busy machine does not count


def best_us(call: object, number: int, repeat: int) -> float:
    """The fastest round's time per call, in µs."""
    gc.collect()
    return min(timeit.repeat(call, number=number, repeat=repeat, timer=CPU)) / number * 1e6  # type: ignore[arg-type]


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
    two, five = interleaved(lambda: router.plan(measured, {}), lambda: hybrid.plan(measured, {}), args.number, r)
    print(
        f"Router.plan, 1 KB chat, rounds alternated: {two:.2f} µs with 2 rules, {five:.2f} µs with 3 hybrid rules ahead of them"
    )
    with_us, without_us = ab_rounds(router, measured, args.number, r)
    print(
        f"A/B in one process, rounds alternated: plan {with_us:.2f} µs with the new signals, {without_us:.2f} µs with "
        f"complexity and volume stubbed out: +{with_us - without_us:.2f} µs"
    )


def interleaved(first: Callable[[], object], second: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """Best round of each, the two alternated round by round (load drifts equally)."""
    best = [float("inf"), float("inf")]
    gc.collect()
    for _ in range(repeat):
        for i, call in enumerate((first, second)):
            best[i] = min(best[i], timeit.timeit(call, number=number, timer=CPU) / number * 1e6)
    return best[0], best[1]


def ab_rounds(router: Router, request: RoutingRequest, number: int, repeat: int) -> tuple[float, float]:
    """Best round of ``router.plan`` with the complexity estimate and volume class as they are, and
    with both replaced by constants, the two alternated round by round (load drifts equally)."""
    import routing.signals as signals_module
    from routing.complexity import Complexity

    extractor = router.signals
    real_estimator, real_classify = extractor.complexity, signals_module.classify_volume

    class Constant:
        def estimate(self, text: str, tokens: int, task: str) -> Complexity:
            return Complexity("low", 0, "")

    def stubbed(policy: object, project: object, rpm: object, given: object = None) -> tuple[str, str]:
        return "normal", ""

    with_best = without_best = float("inf")
    gc.collect()
    for _ in range(repeat):
        with_best = min(with_best, timeit.timeit(lambda: router.plan(request, {}), number=number, timer=CPU) / number * 1e6)
        extractor.complexity, signals_module.classify_volume = Constant(), stubbed  # type: ignore[assignment]
        try:
            without_best = min(
                without_best, timeit.timeit(lambda: router.plan(request, {}), number=number, timer=CPU) / number * 1e6
            )
        finally:
            extractor.complexity, signals_module.classify_volume = real_estimator, real_classify
    return with_best, without_best


def router_policy() -> SensitivityPolicy:
    """The sensitivity policy of ``bench_router``."""
    return SensitivityPolicy(detectors=[{"name": "project-names", "level": "internal", "keywords": ["falcon", "bluebird"]}])


if __name__ == "__main__":
    main()

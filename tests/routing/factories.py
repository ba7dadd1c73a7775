"""Builders shared by the routing tests: deployments, routers, requests and valid test data."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from routing.detectors import compile_detectors
from routing.detectors.checks import IBAN_LENGTHS
from routing.router import Router
from routing.spec import Route, RoutingDefaults, SensitivityPolicy
from routing.types import (
    DeploymentProfile,
    Endpoint,
    Prices,
    RoutingRequest,
    Sensitivity,
)

DETECTORS = compile_detectors(SensitivityPolicy())


def entities(text: str) -> dict[str, int]:
    """What the default detectors find in ``text``: entity -> count."""
    return {hit.entity: hit.count for hit in DETECTORS.scan(text)}


def deployment(
    name: str,
    locality: str = "self_hosted",
    *,
    capabilities: Sequence[str] = ("chat", "completions"),
    context_window: int = 8192,
    quality: int = 3,
    prices: tuple[float, float] = (0.0, 0.0),
    latency_ms: float | None = None,
    unscannable: Sensitivity = Sensitivity.CONFIDENTIAL,
) -> DeploymentProfile:
    return DeploymentProfile(
        name=name,
        provider="openai_compatible",
        model=name,
        locality=locality,  # type: ignore[arg-type]
        capabilities=frozenset(capabilities),
        context_window=context_window,
        quality=quality,
        prices=Prices(*prices),
        latency_ms=latency_ms,
        unscannable=unscannable,
    )


def catalogue() -> list[DeploymentProfile]:
    """Two self-hosted and two hosted deployments; the hosted ones are better and cheaper."""
    return [
        deployment("local-small", capabilities=("chat", "completions", "embeddings"), quality=1, prices=(0.5, 0.5)),
        deployment(
            "vllm-8b",
            capabilities=("chat", "completions", "tools", "json_schema"),
            context_window=131072,
            prices=(0.3, 0.3),
            latency_ms=400,
        ),
        deployment(
            "gpt-mini",
            "hosted",
            capabilities=("chat", "tools", "vision", "json_schema"),
            context_window=128000,
            quality=4,
            prices=(0.15, 0.6),
            latency_ms=600,
        ),
        deployment(
            "claude-haiku",
            "hosted",
            capabilities=("chat", "tools", "vision"),
            context_window=200000,
            quality=5,
            prices=(0.8, 4.0),
            latency_ms=300,
        ),
    ]


def route(name: str = "auto", candidates: Sequence[str] | None = None, **fields: Any) -> Route:
    names = list(candidates) if candidates is not None else [d.name for d in catalogue()]
    return Route.model_validate({"name": name, "candidates": names, **fields})


def router(
    routes: Sequence[Route] | None = None,
    deployments: Sequence[DeploymentProfile] | None = None,
    sensitivity: SensitivityPolicy | None = None,
    defaults: RoutingDefaults | None = None,
) -> Router:
    return Router(
        routes if routes is not None else [route()],
        deployments if deployments is not None else catalogue(),
        sensitivity or SensitivityPolicy(),
        defaults or RoutingDefaults(),
    )


def chat(model: str = "auto", *contents: Any, endpoint: Endpoint = "chat", **request: Any) -> RoutingRequest:
    """A chat request whose user messages are ``contents`` (plain text by default)."""
    body = request.pop("body", None) or {"messages": [{"role": "user", "content": c} for c in contents or ("hello",)]}
    return RoutingRequest(model=model, endpoint=endpoint, body=body, **request)


def luhn_complete(prefix: str, length: int) -> str:
    """A card number of ``length`` digits starting with ``prefix`` whose Luhn check passes."""
    rng = random.Random(prefix + str(length))
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def make_iban(country: str, bban: str) -> str:
    """An IBAN for ``country`` with ``bban`` (padded/cut to the country's length), check digits computed."""
    bban = (bban * 10)[: IBAN_LENGTHS[country] - 4].upper()
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"

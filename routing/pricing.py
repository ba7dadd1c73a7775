"""Deployment prices (USD per million tokens) and a request's estimated cost.

Explicit per-mtok prices from the config win, field by field. A field not given comes from the
fallback source: a GPU-hour price spread over the deployment's throughput when ``gpu_hour_usd`` is
set, else litellm's cost map (a plain dict the gateway looks up), else zero. The cached-input
price is taken from the cost map only when the input price is too (a discount relative to some
other input price would be meaningless); absent, cached tokens cost the input price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from routing.types import Endpoint, Prices

Number = float | int | Decimal

_PER_MILLION = 1_000_000


def _num(value: Number | None) -> float | None:
    return None if value is None else float(value)


def _cost_map_price(entry: Mapping[str, Any] | None, key: str) -> float | None:
    if not entry:
        return None
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    return float(value) * _PER_MILLION


def gpu_hour_price_per_mtok(gpu_hour_usd: Number, tokens_per_second: float | None) -> float | None:
    """``gpu_hour_usd / (tokens_per_second * 3600) * 1e6``; a free GPU costs 0 whatever its speed."""
    if float(gpu_hour_usd) == 0:
        return 0.0
    if not tokens_per_second:
        return None
    return float(gpu_hour_usd) / (tokens_per_second * 3600) * _PER_MILLION


def prices_from(
    *,
    input_per_mtok: Number | None = None,
    output_per_mtok: Number | None = None,
    cached_input_per_mtok: Number | None = None,
    gpu_hour_usd: Number | None = None,
    tokens_per_second: float | None = None,
    cost_map_entry: Mapping[str, Any] | None = None,
) -> Prices:
    """Resolve a deployment's prices; see the module docstring for the order of sources.

    ``cost_map_entry`` is litellm's per-model dict (``input_cost_per_token``,
    ``output_cost_per_token``, ``cache_read_input_token_cost``, in USD per token).
    """
    if gpu_hour_usd is not None:
        gpu = gpu_hour_price_per_mtok(gpu_hour_usd, tokens_per_second)
        fallback: tuple[float | None, ...] = (gpu, gpu, None)
    else:
        fallback = tuple(
            _cost_map_price(cost_map_entry, key)
            for key in ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost")
        )
    explicit_input = _num(input_per_mtok)
    cached = _num(cached_input_per_mtok)
    if cached is None and explicit_input is None:
        cached = fallback[2]
    return Prices(
        input_per_mtok=next((p for p in (explicit_input, fallback[0]) if p is not None), 0.0),
        output_per_mtok=next((p for p in (_num(output_per_mtok), fallback[1]) if p is not None), 0.0),
        cached_input_per_mtok=cached,
    )


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class OutputBudget:
    """The output a request may produce: ``per_choice`` tokens for each of ``choices`` completions.

    ``explicit`` is False when the route's or the global ``default_max_tokens`` was assumed.
    """

    per_choice: int
    choices: int = 1
    explicit: bool = True

    @property
    def total(self) -> int:
        return self.per_choice * self.choices


def output_budget(endpoint: Endpoint, body: Mapping[str, Any], default_max_tokens: int) -> OutputBudget:
    """``max_completion_tokens`` (or ``max_tokens``) and ``n`` of the request, or the default."""
    if endpoint == "embeddings":
        return OutputBudget(0)
    limit = _positive_int(body.get("max_completion_tokens")) or _positive_int(body.get("max_tokens"))
    choices = _positive_int(body.get("n")) or 1
    if limit is None:
        return OutputBudget(default_max_tokens, choices, explicit=False)
    return OutputBudget(limit, choices)


def estimate_cost(prices: Prices, prompt_tokens: int, output_tokens: int) -> float:
    """Estimated USD: prompt tokens at the input price plus expected output at the output price."""
    return prices.cost(prompt_tokens, output_tokens)

"""Savings against a reference model (``reporting.reference_model``).

    reference_cost = ((input - cached) * P_in + cached * P_cached + output * P_out) / 1,000,000
    savings        = reference_cost - spend

summed over the same rows as the spend, with the reference's prices in USD per million tokens
(``P_cached`` is ``P_in`` when the reference has no cached-input price), rounded half-even to
1e-10 USD like every ledger amount. Negative savings mean the traffic cost more than the
reference would have. The reference is a deployment of the config (its configured or resolved
prices, whether or not it is enabled) or any model in litellm's bundled price map.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from gateway.config import GatewayConfig
from gateway.costmap import cost_entry
from gateway.runtime import deployment_profile
from routing.pricing import prices_from
from routing.types import Prices

_MTOK = Decimal(1_000_000)
_QUANTUM = Decimal("1e-10")


def _per_mtok(value: float | None) -> Decimal:
    # The same conversion as the ledger's own costs (gateway.accounting): 9 decimals per million.
    return Decimal(f"{value or 0.0:.9f}")


@dataclass(frozen=True, slots=True)
class ReferencePrices:
    """The reference model and its prices, USD per million tokens."""

    model: str
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal
    output_per_mtok: Decimal

    @classmethod
    def from_prices(cls, model: str, prices: Prices) -> ReferencePrices:
        cached = prices.input_per_mtok if prices.cached_input_per_mtok is None else prices.cached_input_per_mtok
        return cls(model, _per_mtok(prices.input_per_mtok), _per_mtok(cached), _per_mtok(prices.output_per_mtok))

    def cost(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal:
        """What these tokens would have cost at the reference prices."""
        total = (
            (input_tokens - cached_tokens) * self.input_per_mtok
            + cached_tokens * self.cached_input_per_mtok
            + output_tokens * self.output_per_mtok
        ) / _MTOK
        return total.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)

    def savings(self, input_tokens: int, cached_tokens: int, output_tokens: int, spend: Decimal) -> Decimal:
        return self.cost(input_tokens, cached_tokens, output_tokens) - spend

    def describe(self) -> dict[str, str]:
        return {
            "model": self.model,
            "input_per_mtok": format(self.input_per_mtok.normalize(), "f"),
            "cached_input_per_mtok": format(self.cached_input_per_mtok.normalize(), "f"),
            "output_per_mtok": format(self.output_per_mtok.normalize(), "f"),
        }


def reference_prices(config: GatewayConfig) -> ReferencePrices | None:
    """The configured reference's prices, or None when ``reporting.reference_model`` is not set."""
    name = config.reporting.reference_model
    if not name:
        return None
    deployment = config.deployment(name)
    if deployment is not None:
        return ReferencePrices.from_prices(name, deployment_profile(deployment).prices)
    entry = cost_entry(name)
    if entry is None:  # the config validator refuses this; a hot-reloaded cost map could still lose it
        return None
    return ReferencePrices.from_prices(name, prices_from(cost_map_entry=entry))

"""Deployment prices from config, GPU hours or litellm's cost map; a request's estimated cost."""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.pricing import OutputBudget, estimate_cost, output_budget, prices_from
from routing.types import Prices

COST_MAP = {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07, "cache_read_input_token_cost": 7.5e-08}


def test_explicit_per_mtok_prices_win_over_everything() -> None:
    prices = prices_from(
        input_per_mtok=Decimal("2.5"), output_per_mtok=10, gpu_hour_usd=3, tokens_per_second=1000, cost_map_entry=COST_MAP
    )
    assert prices == Prices(2.5, 10.0, None)
    assert prices_from(input_per_mtok=1, cached_input_per_mtok=Decimal("0.1"), cost_map_entry=COST_MAP) == Prices(
        1.0, pytest.approx(0.6), 0.1
    )


def test_gpu_hour_price_spread_over_throughput_for_input_and_output() -> None:
    prices = prices_from(gpu_hour_usd=2.5, tokens_per_second=2500)
    assert prices.input_per_mtok == prices.output_per_mtok == pytest.approx(2.5 / (2500 * 3600) * 1e6)
    assert prices.cached_input_per_mtok is None  # cached tokens cost the input price


def test_a_free_gpu_costs_nothing_whatever_its_speed() -> None:
    assert prices_from(gpu_hour_usd=0) == Prices(0.0, 0.0, None)
    assert prices_from(gpu_hour_usd=Decimal("0"), cost_map_entry=COST_MAP) == Prices(0.0, 0.0, None)


def test_litellm_cost_map_per_token_becomes_per_million() -> None:
    assert prices_from(cost_map_entry=COST_MAP) == Prices(pytest.approx(0.15), pytest.approx(0.6), pytest.approx(0.075))


def test_a_field_not_given_comes_from_the_fallback_source() -> None:
    prices = prices_from(output_per_mtok=1.0, cost_map_entry=COST_MAP)
    assert prices == Prices(pytest.approx(0.15), 1.0, pytest.approx(0.075))
    assert prices_from(input_per_mtok=1.0, cost_map_entry=COST_MAP) == Prices(1.0, pytest.approx(0.6), None)


def test_no_price_anywhere_is_zero_and_bad_entries_are_ignored() -> None:
    assert prices_from() == Prices(0.0, 0.0, None)
    assert prices_from(cost_map_entry={"input_cost_per_token": "n/a", "output_cost_per_token": None}) == Prices(0.0, 0.0, None)


@pytest.mark.parametrize(
    "endpoint,body,expected",
    [
        ("chat", {}, OutputBudget(256, 1, explicit=False)),
        ("chat", {"max_tokens": 100}, OutputBudget(100)),
        ("chat", {"max_tokens": 100, "max_completion_tokens": 50}, OutputBudget(50)),
        ("chat", {"max_tokens": 100, "n": 3}, OutputBudget(100, 3)),
        ("chat", {"max_tokens": 0}, OutputBudget(256, 1, explicit=False)),
        ("chat", {"max_tokens": True}, OutputBudget(256, 1, explicit=False)),
        ("completions", {"max_tokens": 7}, OutputBudget(7)),
        ("embeddings", {"max_tokens": 7}, OutputBudget(0)),
    ],
)
def test_output_budget(endpoint: str, body: dict, expected: OutputBudget) -> None:
    assert output_budget(endpoint, body, 256) == expected  # type: ignore[arg-type]


def test_estimated_cost_is_prompt_at_input_plus_output_at_output_price() -> None:
    prices = Prices(input_per_mtok=2.0, output_per_mtok=8.0)
    assert estimate_cost(prices, prompt_tokens=1000, output_tokens=500) == pytest.approx((1000 * 2 + 500 * 8) / 1e6)

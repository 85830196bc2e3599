"""What a model call cost, from its usage and a price table per model id."""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.config import ModelPrice
from orchestrator.domain.usage import Usage

CACHE_WRITE_MULTIPLIER = 1.25
"""Writing the 5-minute prompt cache costs 1.25x the input price (we never ask for the 1-hour TTL)."""
CACHE_READ_MULTIPLIER = 0.1


def price_for(model: str, prices: Mapping[str, ModelPrice]) -> tuple[ModelPrice, bool]:
    """The price of the longest table key that prefixes `model`, and whether one matched.

    An unknown model is charged at the dearest price in the table: a budget (--max-cost) must
    stop too early rather than too late."""
    matches = [key for key in prices if model.startswith(key)]
    if matches:
        return prices[max(matches, key=len)], True
    if not prices:
        return ModelPrice(input=0.0, output=0.0), False
    return max(prices.values(), key=lambda p: (p.output, p.input)), False


def cost_usd(usage: Usage, price: ModelPrice) -> float:
    per_token_in = price.input / 1_000_000
    return (
        usage.input_tokens * per_token_in
        + usage.cache_creation_input_tokens * per_token_in * CACHE_WRITE_MULTIPLIER
        + usage.cache_read_input_tokens * per_token_in * CACHE_READ_MULTIPLIER
        + usage.output_tokens * price.output / 1_000_000
    )


def priced(usage: Usage, model: str, prices: Mapping[str, ModelPrice]) -> Usage:
    """`usage` with cost_usd filled in."""
    price, _ = price_for(model, prices)
    return usage.model_copy(update={"cost_usd": cost_usd(usage, price)})

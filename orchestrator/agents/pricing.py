"""What a model call cost, from its usage.

Prices come, in this order, from a price the user configured for the model
([tool.orchestrate.prices] or orchestrate.toml `prices`, longest prefix), from genai-prices (a
maintained library of provider prices: new models, cache prices, long-context tiers), then from our
own table (DEFAULT_PRICES, for a model the library does not know), and last, for a model no one
knows, the dearest price in the table: a budget (--max-cost) must stop too early rather than too
late. The anthropic backend says once per run when a model's price is unknown.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orchestrator.config import DEFAULT_PRICES, ModelPrice
from orchestrator.domain.usage import Usage

CACHE_WRITE_MULTIPLIER = 1.25
"""Writing the 5-minute prompt cache costs 1.25x the input price."""
CACHE_WRITE_1H_MULTIPLIER = 2.0
"""Writing the 1-hour prompt cache (the run's shared prefix) costs 2x."""
CACHE_READ_MULTIPLIER = 0.1
MILLION = 1_000_000


def _configured(prices: Mapping[str, ModelPrice]) -> dict[str, ModelPrice]:
    """The prices the user set: those that are not our table's own."""
    return {key: price for key, price in prices.items() if DEFAULT_PRICES.get(key) != price}


def _longest_prefix(model: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    matches = [key for key in prices if model.startswith(key)]
    return prices[max(matches, key=len)] if matches else None


@functools.cache
def _library_model(model: str) -> tuple[Any, Any] | None:
    """genai-prices' provider and model for a model id (looked up once: the lookup is the slow part,
    about 15 ms), or None when it does not know the model or is not installed."""
    try:
        from genai_prices import data_snapshot
    except ImportError:  # pragma: no cover - a dependency; plugins' environments may lack it
        return None
    provider = "anthropic" if model.startswith("claude") else None
    try:
        found: tuple[Any, Any] = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except (LookupError, ValueError):
        return None
    return found


def _library_cost(model: str, usage: Usage) -> float | None:
    """The cost genai-prices gives for `usage` of `model`, or None when it does not know the model."""
    found = _library_model(model)
    if found is None:
        return None
    from genai_prices import Usage as LibraryUsage

    provider, library_model = found
    counted = LibraryUsage(
        # The library counts cached tokens among the input tokens.
        input_tokens=usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
        output_tokens=usage.output_tokens,
    )
    try:
        price = library_model.calc_price(counted, provider, genai_request_timestamp=datetime.now(tz=UTC))
    except (LookupError, ValueError):
        return None
    cost = float(Decimal(price.total_price))
    hour = usage.cache_creation_1h_input_tokens
    if hour:
        # The library prices every cache write at the 5-minute rate: the 1-hour ones cost 2/1.25 of it.
        written = LibraryUsage(input_tokens=hour, cache_write_tokens=hour)
        at_5m = library_model.calc_price(written, provider, genai_request_timestamp=datetime.now(tz=UTC))
        cost += float(Decimal(at_5m.total_price)) * (CACHE_WRITE_1H_MULTIPLIER / CACHE_WRITE_MULTIPLIER - 1)
    return cost


def price_for(model: str, prices: Mapping[str, ModelPrice]) -> tuple[ModelPrice, bool]:
    """The per-million-token price of `model` (input, output), and whether anyone knows it."""
    configured = _longest_prefix(model, _configured(prices))
    if configured is not None:
        return configured, True
    input_cost = _library_cost(model, Usage(input_tokens=MILLION))
    output_cost = _library_cost(model, Usage(output_tokens=MILLION))
    if input_cost is not None and output_cost is not None:
        return ModelPrice(input=input_cost, output=output_cost), True
    ours = _longest_prefix(model, prices)
    if ours is not None:
        return ours, True
    if not prices:
        return ModelPrice(input=0.0, output=0.0), False
    return max(prices.values(), key=lambda p: (p.output, p.input)), False


def cost_usd(usage: Usage, price: ModelPrice) -> float:
    per_token_in = price.input / MILLION
    return (
        usage.input_tokens * per_token_in
        + (usage.cache_creation_input_tokens - usage.cache_creation_1h_input_tokens)
        * per_token_in
        * CACHE_WRITE_MULTIPLIER
        + usage.cache_creation_1h_input_tokens * per_token_in * CACHE_WRITE_1H_MULTIPLIER
        + usage.cache_read_input_tokens * per_token_in * CACHE_READ_MULTIPLIER
        + usage.output_tokens * price.output / MILLION
    )


def priced(usage: Usage, model: str, prices: Mapping[str, ModelPrice]) -> Usage:
    """`usage` with cost_usd filled in."""
    cost: float | None = None
    if _longest_prefix(model, _configured(prices)) is None:
        cost = _library_cost(model, usage)
    if cost is None:
        cost = cost_usd(usage, price_for(model, prices)[0])
    return usage.model_copy(update={"cost_usd": cost})

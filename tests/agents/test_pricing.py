"""Cost from usage: the longest matching price, cache multipliers, a dear guess for unknown models."""

from __future__ import annotations

import pytest

from orchestrator.agents.pricing import cost_usd, price_for, priced
from orchestrator.config import DEFAULT_PRICES, ModelPrice
from orchestrator.domain.usage import Usage


def test_the_longest_prefix_wins() -> None:
    assert price_for("claude-opus-4-1-20250805", DEFAULT_PRICES) == (
        ModelPrice(input=15.0, output=75.0),
        True,
    )
    assert price_for("claude-opus-4-5-20251101", DEFAULT_PRICES) == (ModelPrice(input=5.0, output=25.0), True)
    assert price_for("claude-haiku-4-5", DEFAULT_PRICES)[0].input == 1.0


@pytest.mark.parametrize("model", ["claude-opus-4-7", "claude-opus-4-8", "claude-opus-4-8[1m]"])
def test_newer_opus_models_are_not_priced_as_opus_4(model: str) -> None:
    # They matched the `claude-opus-4` prefix: $15/$75 instead of $5/$25.
    assert price_for(model, DEFAULT_PRICES) == (ModelPrice(input=5.0, output=25.0), True)


def test_an_unknown_model_is_charged_the_dearest_price() -> None:
    price, known = price_for("some-gateway-model", DEFAULT_PRICES)
    assert not known
    assert price == ModelPrice(input=15.0, output=75.0)


def test_cache_writes_and_reads_are_weighted() -> None:
    usage = Usage(
        input_tokens=100, output_tokens=10, cache_creation_input_tokens=1000, cache_read_input_tokens=10_000
    )
    price = ModelPrice(input=3.0, output=15.0)
    expected = (100 * 3 + 1000 * 3 * 1.25 + 10_000 * 3 * 0.1 + 10 * 15) / 1_000_000
    assert cost_usd(usage, price) == pytest.approx(expected)
    assert priced(usage, "claude-sonnet-4-6", DEFAULT_PRICES).cost_usd == pytest.approx(expected)


def test_prices_come_from_the_maintained_library() -> None:
    # A model our table never heard of, and a newer Opus: priced by genai-prices, not as Opus 4.
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, calls=1)
    assert price_for("claude-fable-5", DEFAULT_PRICES) == (ModelPrice(input=10.0, output=50.0), True)
    assert priced(usage, "claude-fable-5", DEFAULT_PRICES).cost_usd == pytest.approx(60.0)
    cached = Usage(cache_creation_input_tokens=1_000_000, cache_read_input_tokens=1_000_000, calls=1)
    assert priced(cached, "claude-opus-4-8", DEFAULT_PRICES).cost_usd == pytest.approx(6.25 + 0.5)


def test_a_configured_price_overrides_the_library() -> None:
    prices = {**DEFAULT_PRICES, "claude-sonnet-4-6": ModelPrice(input=1.0, output=2.0)}
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, calls=1)
    assert priced(usage, "claude-sonnet-4-6", prices).cost_usd == pytest.approx(3.0)
    assert price_for("claude-sonnet-4-6", prices) == (ModelPrice(input=1.0, output=2.0), True)

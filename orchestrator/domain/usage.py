"""Token usage and cost of model calls, summed per call, per task and per run."""

from __future__ import annotations

from pydantic import BaseModel


class Usage(BaseModel):
    """Field names follow the Messages API's usage object; cost is ours."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    """Of cache_creation_input_tokens, those written to live an hour (2x the input price to write
    instead of 1.25x): the run's shared prefix."""
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    cost_known: bool = True
    """False when some of these calls cost what no one could say (an agent command that reports
    nothing, a model no price list knows): cost_usd is then what the known part cost, a floor."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=self.cache_creation_1h_input_tokens
            + other.cache_creation_1h_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            calls=self.calls + other.calls,
            cost_known=self.cost_known and other.cost_known,
        )

    def cost_text(self, digits: int = 4) -> str:
        """The cost as people read it: `$0.0123`, or `cost unknown` (`$0.0123 + unknown` when part
        of it is known)."""
        if self.cost_known:
            return f"${self.cost_usd:.{digits}f}"
        return f"${self.cost_usd:.{digits}f} + unknown" if self.cost_usd else "cost unknown"

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

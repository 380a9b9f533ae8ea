"""Published per-token prices, for the cost estimate of a dry run. Unknown models get no estimate."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from tools.models import DEFAULT_MAX_OUTPUT_TOKENS

# USD per million tokens (input, output), from OpenAI's pricing page; dated snapshots share their model's price.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-pro": (15.0, 120.0),
    "gpt-5.1": (1.25, 10.0),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.0),
    "gpt-4o-mini": (0.15, 0.60),
    "o1": (15.0, 60.0),
    "o1-pro": (150.0, 600.0),
    "o3": (2.0, 8.0),
    "o3-pro": (20.0, 80.0),
    "o4-mini": (1.10, 4.40),
}
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class CostEstimate(BaseModel):
    input: float = Field(description="USD for the estimated input tokens.")
    output_max: float = Field(description="USD if the answer uses all of max_output_tokens (reasoning included).")
    prices_per_million: tuple[float, float]


def price_of(model: str) -> tuple[float, float] | None:
    """USD per million (input, output) tokens; dated snapshots share their model's price."""
    return PRICES.get(_SNAPSHOT.sub("", model.strip().lower()))


def estimate(model: str, input_tokens: int, max_output_tokens: int | None) -> CostEstimate | None:
    """None for max_output_tokens (not sent: the upstream's default applies) is priced at the tool's default."""
    max_output_tokens = DEFAULT_MAX_OUTPUT_TOKENS if max_output_tokens is None else max_output_tokens
    prices = price_of(model)
    if prices is None:
        return None
    per_in, per_out = prices
    return CostEstimate(
        input=round(input_tokens * per_in / 1e6, 9),
        output_max=round(max_output_tokens * per_out / 1e6, 9),
        prices_per_million=prices,
    )

"""What a chat completion cost, from the tokens it used.

The figures are OpenAI's list prices in USD per 1M tokens (standard tier, uncached input)
as published on https://openai.com/api/pricing/ and https://platform.openai.com/docs/pricing,
as of 2025. They are an estimate for the fleet's cost accounting, not an invoice: cached
input, batch discounts and later price changes are not reflected. A model not in the table
has no price (None), rather than a guessed one.
"""

from __future__ import annotations

import re

# model -> (input, output) USD per 1M tokens.
USD_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
}

# The API answers with the dated snapshot it served ("gpt-4.1-mini-2025-04-14"); a snapshot
# is billed as its base model.
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def cost_usd(model: str, tokens_in: int, tokens_out: int) -> float | None:
    """None when the model's price is unknown."""
    price = USD_PER_MILLION.get(_SNAPSHOT_SUFFIX.sub("", model))
    if price is None:
        return None
    per_in, per_out = price
    return (tokens_in * per_in + tokens_out * per_out) / 1_000_000

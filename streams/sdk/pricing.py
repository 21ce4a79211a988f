"""LLM cost from token usage: USD per million tokens, per model."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# (input, output) USD per 1M tokens; extend or override per client.
DEFAULT_PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o4-mini": (1.10, 4.40),
}


def _field(container: Any, *names: str) -> int:
    """The first of `names` present and not None, as an int (0 when none is)."""
    for name in names:
        value = (
            container.get(name) if isinstance(container, dict) else getattr(container, name, None)
        )
        if value is not None:
            return int(value)
    return 0


def usage_of(response: Any) -> tuple[int, int, str | None]:
    """(input tokens, output tokens, model) of an OpenAI response, object or dict: Chat
    Completions (`prompt_tokens`/`completion_tokens`) or Responses (`input_tokens`/...)."""
    if isinstance(response, dict):
        usage, model = response.get("usage") or {}, response.get("model")
    else:
        usage, model = getattr(response, "usage", None), getattr(response, "model", None)
    if usage is None:
        return 0, 0, model
    return (
        _field(usage, "prompt_tokens", "input_tokens"),
        _field(usage, "completion_tokens", "output_tokens"),
        model,
    )


def cost_usd(
    model: str | None,
    tokens_in: int,
    tokens_out: int,
    prices: dict[str, tuple[float, float]] = DEFAULT_PRICES_PER_MILLION,
) -> float:
    """Cost of one call; a model missing from the table costs 0 and says so once per call."""
    if model is None:
        return 0.0
    # Dated snapshots ("gpt-4.1-mini-2025-04-14") cost what their family costs.
    family = max(
        (name for name in prices if model == name or model.startswith(name + "-")),
        key=len,
        default=None,
    )
    if family is None:
        log.warning("no price for model %r; cost counted as 0 (add it to the price table)", model)
        return 0.0
    price_in, price_out = prices[family]
    return (tokens_in * price_in + tokens_out * price_out) / 1_000_000

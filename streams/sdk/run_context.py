"""The run context: one UUID per run, timing, error counting, LLM usage, signals.

The current run lives in a ContextVar, so concurrent runs in one process (threads
or asyncio tasks) never see each other's run_id, and it is always cleared at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.clock import Clock, utc_now
from schemas.envelope import derived_event_id
from schemas.events import Direction, RunCompleted, SignalEmitted
from streams.sdk.pricing import DEFAULT_PRICES_PER_MILLION, cost_usd, usage_of


class AgentKilledError(RuntimeError):
    """The kill-switch guard refused this run; the refusal is recorded as a skipped run."""


class NoActiveRunError(RuntimeError):
    pass


_current_run: ContextVar[Run | None] = ContextVar("metasup_current_run", default=None)


def current_run() -> Run:
    run = _current_run.get()
    if run is None:
        raise NoActiveRunError(
            "no agent run is active: emit signals inside `with client.run(agent):`"
        )
    return run


@dataclass
class Run:
    """What is known about one agent run; turns into `run.completed` at the end."""

    agent: str
    producer: str
    strategy_class: str | None = None
    clock: Clock = utc_now
    monotonic: Callable[[], float] = time.perf_counter
    prices: dict[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_PRICES_PER_MILLION)
    )
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: datetime = field(init=False)
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    signals_emitted: int = 0
    _started: float = field(init=False, default=0.0)
    _token: Token[Run | None] | None = field(init=False, default=None)

    def begin(self) -> None:
        self.started_at = self.clock()
        self._started = self.monotonic()
        self._token = _current_run.set(self)

    def end(self, failed: bool, skipped_reason: str | None = None) -> RunCompleted:
        if failed:
            self.errors += 1
        if self._token is not None:
            _current_run.reset(self._token)
            self._token = None
        latency_ms = 0.0 if skipped_reason else (self.monotonic() - self._started) * 1000
        return RunCompleted.create(
            # Ids derive from the run, so a retried publish is deduplicated downstream.
            event_id=derived_event_id("run.completed", self.run_id),
            ts=self.clock(),
            producer=self.producer,
            agent=self.agent,
            run_id=self.run_id,
            started_at=self.started_at,
            latency_ms=latency_ms,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=self.cost_usd,
            errors=self.errors,
            strategy_class=self.strategy_class,
            skipped_reason=skipped_reason,
        )

    def count_error(self) -> None:
        """Count a handled error (an exception escaping the run counts by itself)."""
        self.errors += 1

    def add_llm_usage(self, response: Any, model: str | None = None) -> float:
        """Add tokens and cost of an OpenAI response; returns the cost of this call."""
        tokens_in, tokens_out, response_model = usage_of(response)
        call_cost = cost_usd(model or response_model, tokens_in, tokens_out, self.prices)
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost_usd += call_cost
        return call_cost

    def signal(
        self,
        symbol: str,
        direction: Direction | str,
        confidence: float,
        *,
        prob_up: float | None = None,
        score_final: float | None = None,
        regime: str | None = None,
    ) -> SignalEmitted:
        """A signal of this run: it always carries this run's run_id."""
        self.signals_emitted += 1
        return SignalEmitted.create(
            event_id=derived_event_id("signal", self.run_id, self.signals_emitted),
            ts=self.clock(),
            producer=self.producer,
            agent=self.agent,
            run_id=self.run_id,
            symbol=symbol,
            direction=Direction(direction),
            confidence=confidence,
            prob_up=prob_up,
            score_final=score_final,
            regime=regime,
            strategy_class=self.strategy_class,
        )

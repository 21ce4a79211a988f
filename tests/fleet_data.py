"""Deterministic synthetic fleets for tests: a random-walk price series nobody tuned for,
agents with different skill, error rates and latencies."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from projections.agents import AgentProjection, project_agents
from schemas.envelope import Event, derived_event_id
from schemas.events import PriceObserved, RunCompleted, SignalEmitted
from streams.core.fleet_state import default_policy
from streams.reconcile.processor import outcome_event
from streams.reconcile.rule import SymbolBook, apply_event

START = datetime(2023, 1, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class FakeAgent:
    name: str
    strategy_class: str
    skill: float  # probability of calling the next 24 h direction right
    error_rate: float
    latency_ms: float


DEFAULT_AGENTS = (
    FakeAgent("sharp", "momentum", 0.8, 0.0, 300.0),
    FakeAgent("noisy", "momentum", 0.5, 0.05, 700.0),
    FakeAgent("wrong", "contrarian", 0.15, 0.0, 500.0),
    FakeAgent("buggy", "contrarian", 0.5, 0.4, 1500.0),
)


def price_series(seed: int, hours: int, symbol: str = "ETH") -> list[PriceObserved]:
    rng = random.Random(seed)
    price = 1500.0
    series = []
    for hour in range(hours):
        price *= 1 + rng.gauss(0.0002, 0.01)
        series.append(
            PriceObserved.create(
                event_id=derived_event_id("test-price", symbol, hour),
                ts=START + hour * HOUR,
                producer="test",
                symbol=symbol,
                price=round(price, 2),
                source="file",
                interval="1h",
            )
        )
    return series


def fleet_events(
    seed: int, days: int, agents: tuple[FakeAgent, ...] = DEFAULT_AGENTS, every_hours: int = 3
) -> tuple[list[PriceObserved], list[Event]]:
    """Prices, and the agents' runs and signals in time order (signals know the future only
    through each agent's skill)."""
    prices = price_series(seed, days * 24 + 30)
    rng = random.Random(seed + 1)
    runs_and_signals: list[Event] = []
    for hour in range(2, days * 24, every_hours):
        at = START + hour * HOUR
        up = prices[hour + 24].price > prices[hour].price
        for agent in agents:
            run_id = uuid.UUID(str(derived_event_id("test-run", agent.name, hour)))
            failed = rng.random() < agent.error_rate
            runs_and_signals.append(
                RunCompleted.create(
                    event_id=derived_event_id("run", run_id),
                    ts=at,
                    producer="test",
                    agent=agent.name,
                    run_id=run_id,
                    started_at=at - HOUR / 60,
                    latency_ms=agent.latency_ms * rng.uniform(0.5, 1.5),
                    tokens_in=1000,
                    tokens_out=200,
                    cost_usd=0.002,
                    errors=int(failed),
                    strategy_class=agent.strategy_class,
                )
            )
            if failed:
                continue
            right = rng.random() < agent.skill
            runs_and_signals.append(
                SignalEmitted.create(
                    event_id=derived_event_id("signal", run_id),
                    ts=at,
                    producer="test",
                    agent=agent.name,
                    run_id=run_id,
                    symbol="ETH",
                    direction="LONG" if up == right else "SHORT",
                    confidence=round(rng.uniform(0.5, 0.9), 3),
                    regime="MIXED",
                    strategy_class=agent.strategy_class,
                )
            )
    return prices, runs_and_signals


def interleave(prices: list[PriceObserved], others: list[Event]) -> list[Event]:
    """Everything in event-time order, prices first at equal times."""
    return sorted([*prices, *others], key=lambda e: (e.ts, e.type != "price.observed"))


def clean_run(stream: list[Event]) -> AgentProjection:
    """What the agent tables end with when nothing crashes: the reconcile rule over the
    input in order, then the agent projection over runs, signals and reconciliations.
    No broker, no Faust: the reference a crashed and restarted worker must equal."""
    thresholds = default_policy().thresholds
    books: dict[str, SymbolBook] = {}
    reconciled: list[Event] = []
    for event in stream:
        symbol = getattr(event, "symbol", None)
        if symbol is None:
            continue
        books[symbol], outcomes = apply_event(books.get(symbol, SymbolBook()), event, thresholds)
        reconciled += [outcome_event(outcome, event) for outcome in outcomes]
    return project_agents([e for e in stream if not isinstance(e, PriceObserved)] + reconciled)


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """Stats and confidence of an agent state as JSON: the parts that must not depend on
    processing timing (decisions and assessment counts do)."""
    return {"stats": state["stats"], "confidence": state["confidence"]}


def comparable_agents(projection: AgentProjection) -> dict[str, dict[str, Any]]:
    return {
        agent: comparable(state.model_dump(mode="json"))
        for agent, state in projection.agents.items()
    }

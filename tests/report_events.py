"""Small hand-built logs for the report tests: an agent's k-th run and trade on day k, the
multiplier its trade left, decisions and allocations, folded as the reports fold a log."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from projections.fleet import FleetProjection, project_fleet
from schemas.envelope import Event, derived_event_id
from schemas.events import (
    AllocationUpdated,
    ConfidenceUpdated,
    Decision,
    DecisionMade,
    Direction,
    RunCompleted,
    SignalReconciled,
)
from tests.keys import SUPERVISOR_KEY
from tests.report_log import as_records

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HORIZON = 24  # the default policy's focus horizon, hours
# Agent names that try to become markup where a report is read.
HOSTILE = (
    "<script>alert(1)</script>",
    "\"quoted\" & 'single'",
    "<img src=x onerror=alert(1)>",
    "[click me](https://evil.example)",
    "![pixel](https://evil.example/p.png)",
    "@octocat and www.evil.example",
    "pipe | in ` the * name_",
)


def run_id(agent: str, k: int) -> uuid.UUID:
    return derived_event_id("test-run", agent, k)


def run(
    agent: str,
    k: int,
    *,
    latency_ms: float = 100.0,
    tokens: int = 0,
    cost_usd: float = 0.0,
    errors: int = 0,
) -> RunCompleted:
    """The agent's k-th run, at the start of day k (when its k-th signal is emitted)."""
    at = T0 + k * DAY
    return RunCompleted.create(
        ts=at,
        producer="test",
        agent=agent,
        run_id=run_id(agent, k),
        started_at=at - timedelta(milliseconds=latency_ms),
        latency_ms=latency_ms,
        tokens_in=tokens,
        cost_usd=cost_usd,
        errors=errors,
    )


def trade(
    agent: str, k: int, pnl_bps: float, *, regime: str | None = None, symbol: str = "BTC"
) -> SignalReconciled:
    """The focus-horizon trade of the agent's k-th run: signalled on day k, exits a day on."""
    signal_at = T0 + k * DAY
    exit_at = signal_at + timedelta(hours=HORIZON)
    return SignalReconciled.create(
        event_id=derived_event_id("test-trade", agent, k),
        ts=exit_at,
        producer="test",
        signal_id=derived_event_id("test-signal", agent, k),
        run_id=run_id(agent, k),
        agent=agent,
        symbol=symbol,
        direction=Direction.LONG,
        horizon_hours=HORIZON,
        entry_ts=signal_at,
        entry_price=100.0,
        exit_ts=exit_at,
        exit_price=100.0 * (1 + pnl_bps / 10_000),
        realized_pnl_bps=pnl_bps,
        regime=regime,
        confidence=0.5,
    )


def multiplier(agent: str, k: int, mult: float) -> ConfidenceUpdated:
    """The multiplier the agent's k-th trade left, stamped when that trade was booked."""
    return ConfidenceUpdated.create(
        event_id=derived_event_id("test-confidence", agent, k),
        ts=T0 + k * DAY + timedelta(hours=HORIZON),
        producer="test",
        agent=agent,
        mult=mult,
        recent_sum_bps=0.0,
        horizon_hours=HORIZON,
    )


def decision(
    agent: str,
    at: datetime,
    made: Decision,
    previous: Decision | None = None,
    reasons: Iterable[str] = (),
    label: str = "KEEP",
) -> DecisionMade:
    return DecisionMade.create(
        event_id=derived_event_id("test-decision", agent, at, made),
        ts=at,
        producer="test",
        agent=agent,
        decision=made,
        previous=previous,
        reasons=list(reasons),
        retirement_score=0,
        retirement_label=label,
    )


def allocation(
    at: datetime, weights: Mapping[str, float], regime: str | None = None
) -> AllocationUpdated:
    return AllocationUpdated.create(
        event_id=derived_event_id("test-allocation", at, sorted(weights.items())),
        ts=at,
        producer="test",
        weights=dict(weights),
        regime=regime,
        regime_cap=1.0,
        cash_weight=1.0 - sum(weights.values()),
    )


def folded(events: Iterable[Event]) -> FleetProjection:
    """The projection of a log holding `events`, each received at its event time."""
    return project_fleet(as_records(events), SUPERVISOR_KEY.verifier)


def portfolio_log() -> list[Event]:
    """A small desk with hand-worked figures (the PR comment and LP email tests read them).

    alpha holds half the capital from T0 on; beta none. Trades, in exit order:
    alpha +100 (day 2), beta -40 (day 3), alpha -300 (day 4).
    Deployed (each PnL x its agent's weight): +50, 0, -150; cumulated 50, 50, -100:
    PnL -100.0 bps, max drawdown 150.0 (from the peak 50), current drawdown 150.0.
    Unweighted: 100, 60, -240: PnL -240.0 bps, max drawdown 340.0, hit rate 1/3, CVaR 95
    (the worst 5% of 3 trades: the worst one) -300.0 bps.
    """
    return [
        allocation(T0, {"alpha": 0.5}, regime="MIXED"),
        trade("alpha", 1, 100.0),
        trade("beta", 2, -40.0),
        trade("alpha", 3, -300.0),
    ]

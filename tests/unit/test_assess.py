"""The per-agent fold: dedup, decisions with auto kills, confidence updates, order intents."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Event, derived_event_id
from schemas.events import (
    AgentAssessed,
    AgentKilled,
    AgentRevived,
    AllocationUpdated,
    ConfidenceUpdated,
    Decision,
    DecisionMade,
    Direction,
    OrderIntent,
    PolicyUpdated,
    RunCompleted,
    SignalEmitted,
    SignalReconciled,
    StrategyKilled,
)
from schemas.policy import Policy, Thresholds
from streams.agents.assess import AgentState, apply_agent_event
from streams.agents.execution import TradingMode
from streams.core.fleet_state import FleetState, apply_fleet_event

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
AGENT = "alpha"
CLASS = "momentum"
POLICY = Policy()
FAST = settings(max_examples=40, deadline=None)
E = TypeVar("E", bound=Event)


def reconciled(
    pnl: float, k: int, *, horizon: int = 24, strategy_class: str | None = CLASS
) -> SignalReconciled:
    """The k-th trade of the agent; its exit is k hours after T0."""
    exit_ts = T0 + k * HOUR
    return SignalReconciled.create(
        event_id=derived_event_id("test-rec", k, horizon, pnl),
        ts=exit_ts,
        producer="t",
        signal_id=derived_event_id("test-signal", k),
        run_id=uuid.UUID(int=k),
        agent=AGENT,
        symbol="BTC-USD",
        direction=Direction.LONG,
        horizon_hours=horizon,
        entry_ts=exit_ts - horizon * HOUR,
        entry_price=100.0,
        exit_ts=exit_ts,
        exit_price=100.0 * (1 + pnl / 10_000),
        realized_pnl_bps=pnl,
        confidence=0.6,
        strategy_class=strategy_class,
    )


def signal(
    confidence: float = 0.5, *, at: datetime = T0 + 100 * HOUR, strategy_class: str | None = CLASS
) -> SignalEmitted:
    return SignalEmitted.create(
        event_id=derived_event_id("test-signal-emitted", at, confidence, strategy_class),
        ts=at,
        producer="t",
        agent=AGENT,
        run_id=uuid.UUID(int=99),
        symbol="ETH-USD",
        direction=Direction.SHORT,
        confidence=confidence,
        strategy_class=strategy_class,
    )


def run(
    events: Iterable[Event],
    fleet: FleetState | None = None,
    state: AgentState | None = None,
    mode: TradingMode = "shadow",
) -> tuple[AgentState, list[Event]]:
    """Fold `events` for the agent under a fixed fleet state; return the state and all output."""
    state = state or AgentState.start(AGENT, POLICY)
    fleet = fleet or FleetState()
    emitted: list[Event] = []
    for event in events:
        state, out = apply_agent_event(state, event, fleet, mode)
        emitted += out
    return state, emitted


def of_type(events: Iterable[Event], model: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, model)]


def fleet_with(*facts: Event) -> FleetState:
    fleet = FleetState()
    for fact in facts:
        fleet = apply_fleet_event(fleet, fact)
    return fleet


def weights(**by_agent: float) -> AllocationUpdated:
    return AllocationUpdated.create(
        ts=T0, producer="t", weights=by_agent, regime_cap=1.0, cash_weight=0.0
    )


# Dedup and horizons


def test_a_redelivered_reconciliation_changes_nothing_and_emits_nothing() -> None:
    rec = reconciled(-40.0, 1)
    state, _ = run([rec])

    again, emitted = apply_agent_event(state, rec, FleetState(), "shadow")

    assert emitted == []
    assert again == state


def test_a_non_focus_horizon_changes_nothing_and_emits_nothing() -> None:
    state, _ = run([reconciled(-40.0, 1)])

    after, emitted = apply_agent_event(
        state, reconciled(-500.0, 2, horizon=1), FleetState(), "live"
    )

    assert emitted == []
    assert after == state


@FAST
@given(st.lists(st.floats(-300, 300), min_size=1, max_size=8), st.data())
def test_redelivering_any_earlier_reconciliation_changes_nothing(
    pnls: list[float], data: st.DataObject
) -> None:
    recs = [reconciled(pnl, k) for k, pnl in enumerate(pnls, start=1)]
    state, _ = run(recs)
    replayed = data.draw(st.sampled_from(recs))

    again, emitted = apply_agent_event(state, replayed, FleetState(), "shadow")

    assert emitted == []
    assert again == state


# Decisions and the auto kill


def test_first_assessment_reports_a_decision_with_no_previous_one() -> None:
    state, emitted = run([reconciled(-40.0, 1)])

    [made] = of_type(emitted, DecisionMade)
    [assessed] = of_type(emitted, AgentAssessed)
    assert (made.decision, made.previous) == (Decision.HOLD, None)
    assert (assessed.agent, assessed.decision, assessed.stats.trades) == (AGENT, Decision.HOLD, 1)
    assert assessed.strategy_class == CLASS
    assert state.decision is Decision.HOLD


def test_an_unchanged_decision_is_not_reported_again_but_still_assessed() -> None:
    state, _ = run([reconciled(-40.0, 1)])

    _, emitted = run([reconciled(-20.0, 2)], state=state)

    assert of_type(emitted, DecisionMade) == []
    assert [a.decision for a in of_type(emitted, AgentAssessed)] == [Decision.HOLD]


def test_a_losing_streak_kills_the_agent_once_without_flapping() -> None:
    # -100 then -60: pnl_sum -160 bps < -150 bps -> KILL.
    state, _ = run([reconciled(-100.0, 1)])
    state, at_kill = run([reconciled(-60.0, 2)], state=state)

    [made] = of_type(at_kill, DecisionMade)
    [killed] = of_type(at_kill, AgentKilled)
    assert (made.decision, made.previous) == (Decision.KILL, Decision.HOLD)
    assert (killed.target, killed.source) == (AGENT, "auto")
    assert [a.decision for a in of_type(at_kill, AgentAssessed)] == [Decision.KILL]

    # A big win before the kill fact reaches the kill list would make the stats HOLD;
    # the agent must still count as killed, and not be killed a second time.
    state, next_out = run([reconciled(400.0, 3)], state=state)

    assert of_type(next_out, AgentKilled) == []
    [made_next] = of_type(next_out, DecisionMade)
    assert (made_next.decision, made_next.previous) == (Decision.KILLED, Decision.KILL)
    assert [a.decision for a in of_type(next_out, AgentAssessed)] == [Decision.KILLED]

    state, later_out = run([reconciled(10.0, 4)], state=state)

    assert of_type(later_out, AgentKilled) == []
    assert of_type(later_out, DecisionMade) == []  # still KILLED: nothing changed
    assert [a.decision for a in of_type(later_out, AgentAssessed)] == [Decision.KILLED]


def test_a_revive_after_the_kill_is_folded_lifts_the_old_kill() -> None:
    state, _ = run([reconciled(-100.0, 1)])
    state, at_kill = run([reconciled(-60.0, 2)], state=state)
    [killed] = of_type(at_kill, AgentKilled)

    # The kill reaches the kill list: still KILLED, no new kill.
    with_kill = fleet_with(killed)
    state, out = run([reconciled(400.0, 3)], fleet=with_kill, state=state)
    assert [a.decision for a in of_type(out, AgentAssessed)] == [Decision.KILLED]
    assert of_type(out, AgentKilled) == []

    revived = AgentRevived.create(
        ts=T0 + 3 * HOUR, producer="t", target=AGENT, source="operator", actor="ops"
    )
    state, out = run([reconciled(10.0, 4)], fleet=fleet_with(killed, revived), state=state)

    [made] = of_type(out, DecisionMade)
    assert (made.decision, made.previous) == (Decision.HOLD, Decision.KILLED)
    assert [a.decision for a in of_type(out, AgentAssessed)] == [Decision.HOLD]
    assert of_type(out, AgentKilled) == []


def test_an_operator_kill_makes_the_decision_killed() -> None:
    kill = AgentKilled.create(ts=T0, producer="t", target=AGENT, source="operator", actor="ops")

    _, emitted = run([reconciled(40.0, 1)], fleet=fleet_with(kill))

    [made] = of_type(emitted, DecisionMade)
    assert made.decision is Decision.KILLED
    assert of_type(emitted, AgentKilled) == []


def test_the_policy_in_force_at_the_event_time_decides() -> None:
    # From T0 + 2 h on, KILL needs pnl_sum < -300 bps: the -160 bps streak no longer kills.
    stricter = PolicyUpdated.create(
        ts=T0 + 2 * HOUR, producer="t", thresholds=Thresholds(kill_pnl_bps=-300.0)
    )

    _, emitted = run([reconciled(-100.0, 1), reconciled(-60.0, 2)], fleet=fleet_with(stricter))

    assert Decision.KILL not in {made.decision for made in of_type(emitted, DecisionMade)}
    assert of_type(emitted, AgentKilled) == []


# Confidence


def test_each_new_focus_reconciliation_updates_confidence_by_the_spec_rule() -> None:
    # s5 = -60 (< -50: x0.85), then -40 (x0.93), then 0 (unchanged), then 70 (> 50: x1.03).
    recs = [reconciled(p, k) for k, p in enumerate([-60.0, 20.0, 40.0, 70.0], start=1)]
    expected = [0.85, 0.85 * 0.93, 0.85 * 0.93, 0.85 * 0.93 * 1.03]

    state, emitted = run(recs)

    updates = of_type(emitted, ConfidenceUpdated)
    assert [u.mult for u in updates] == pytest.approx(expected)
    assert [u.recent_sum_bps for u in updates] == pytest.approx([-60.0, -40.0, 0.0, 70.0])
    assert {(u.agent, u.horizon_hours) for u in updates} == {(AGENT, 24)}
    assert [a.mult for a in of_type(emitted, AgentAssessed)] == pytest.approx(expected)
    assert state.confidence.mult == pytest.approx(expected[-1])


def test_runs_and_other_horizons_do_not_move_confidence() -> None:
    state, _ = run([reconciled(-60.0, 1)])
    a_run = RunCompleted.create(
        ts=T0 + 2 * HOUR,
        producer="t",
        agent=AGENT,
        run_id=uuid.UUID(int=7),
        started_at=T0 + 2 * HOUR - timedelta(seconds=1),
        latency_ms=400.0,
    )

    after, emitted = run([a_run, reconciled(-90.0, 3, horizon=4)], state=state)

    assert of_type(emitted, ConfidenceUpdated) == []
    assert after.confidence.mult == state.confidence.mult
    # A clean run that changes no decision is not news for the fleet; the next trade's
    # assessment carries it.
    assert of_type(emitted, AgentAssessed) == []
    _, next_trade = run([reconciled(-10.0, 4)], state=after)
    assert [a.stats.runs for a in of_type(next_trade, AgentAssessed)] == [1]


def test_a_run_that_crosses_the_allocators_error_bar_is_assessed_at_once() -> None:
    state, _ = run([reconciled(10.0, 1)])

    def a_run(k: int, errors: int) -> RunCompleted:
        return RunCompleted.create(
            ts=T0 + 2 * HOUR + k * timedelta(minutes=1),
            producer="t",
            agent=AGENT,
            run_id=uuid.UUID(int=100 + k),
            started_at=T0 + 2 * HOUR,
            latency_ms=400.0,
            errors=errors,
        )

    state, clean = run([a_run(k, 0) for k in range(9)], state=state)
    # 1 error in 10 runs: 0.10 is over the allocator's 0.05 but changes no decision.
    _, failing = run([a_run(9, 1)], state=state)

    assert of_type(clean, AgentAssessed) == []
    assert of_type(failing, DecisionMade) == []
    [assessed] = of_type(failing, AgentAssessed)
    assert assessed.stats.error_rate == pytest.approx(0.1)


# Order intents


def test_a_killed_agent_gets_one_blocked_intent_naming_the_kill() -> None:
    kill = AgentKilled.create(
        ts=T0, producer="t", target=AGENT, source="operator", actor="ops", reason="too risky"
    )
    fleet = fleet_with(weights(alpha=0.5), kill)

    _, emitted = run([signal()], fleet=fleet, mode="live")

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert (order.target_usd, order.routed, order.mode) == (0.0, False, "live")
    assert order.reason.startswith("blocked: agent alpha killed by ops (operator)")
    assert "too risky" in order.reason


def test_a_killed_strategy_class_blocks_its_agents_signals() -> None:
    kill = StrategyKilled.create(ts=T0, producer="t", target=CLASS, source="auto", reason="2 of 4")
    fleet = fleet_with(weights(alpha=0.5), kill)

    _, emitted = run([signal()], fleet=fleet, mode="live")

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert (order.target_usd, order.routed) == (0.0, False)
    assert "strategy class momentum killed" in order.reason


def test_a_class_kill_blocks_a_signal_that_does_not_name_the_class() -> None:
    kill = StrategyKilled.create(ts=T0, producer="t", target=CLASS, source="auto")
    fleet = fleet_with(weights(alpha=0.5), kill)
    state, _ = run([reconciled(10.0, 1)])  # the agent's class is known from its trades

    _, emitted = run([signal(strategy_class=None)], fleet=fleet, state=state, mode="live")

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert (order.target_usd, order.routed) == (0.0, False)
    assert "strategy class momentum killed" in order.reason


def test_zero_weight_blocks_the_order() -> None:
    for fleet in (FleetState(), fleet_with(weights(beta=1.0))):
        _, emitted = run([signal()], fleet=fleet, mode="live")

        [order] = emitted
        assert isinstance(order, OrderIntent)
        assert (order.target_usd, order.routed) == (0.0, False)
        assert order.reason == "blocked: allocation weight is 0"


@pytest.mark.parametrize(
    ("weight", "confidence", "target"),
    [
        (0.4, 0.5, 200.0),  # 1000 x 0.4 x 0.5
        (0.1, 0.9, 90.0),
        (0.5, 0.5, 250.0),  # exactly the cap
        (0.8, 0.9, 250.0),  # 720 capped at 250
    ],
)
def test_order_is_sized_from_weight_and_signal_confidence(
    weight: float, confidence: float, target: float
) -> None:
    _, emitted = run([signal(confidence)], fleet=fleet_with(weights(alpha=weight)))

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert order.target_usd == pytest.approx(target)
    assert order.signal_id == signal(confidence).event_id


@pytest.mark.parametrize(
    ("pnls", "target"),
    [
        ([50.0, -149.0], 200.0),  # drawdown 149 bps: no haircut
        ([50.0, -150.0], 100.0),  # drawdown exactly 150 bps: halved
        ([50.0, -200.0], 100.0),
    ],
)
def test_window_drawdown_halves_the_order(pnls: list[float], target: float) -> None:
    state, _ = run([reconciled(p, k) for k, p in enumerate(pnls, start=1)])

    _, emitted = run([signal(0.5)], fleet=fleet_with(weights(alpha=0.4)), state=state)

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert order.target_usd == pytest.approx(target)


def test_drawdown_older_than_the_window_does_not_halve_the_order() -> None:
    state, _ = run([reconciled(50.0, 1), reconciled(-200.0, 2)])
    much_later = T0 + 2 * HOUR + timedelta(days=31)

    _, emitted = run(
        [signal(0.5, at=much_later)], fleet=fleet_with(weights(alpha=0.4)), state=state
    )

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert order.target_usd == pytest.approx(200.0)


@pytest.mark.parametrize(("mode", "routed"), [("shadow", False), ("live", True)])
def test_only_live_mode_routes(mode: TradingMode, routed: bool) -> None:
    _, emitted = run([signal()], fleet=fleet_with(weights(alpha=0.4)), mode=mode)

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert (order.mode, order.routed) == (mode, routed)
    assert order.target_usd == pytest.approx(200.0)


def test_a_signal_does_not_change_the_stats_or_the_decision() -> None:
    state, _ = run([reconciled(-40.0, 1)])

    after, _ = run([signal()], fleet=fleet_with(weights(alpha=0.4)), state=state)

    assert after.stats == state.stats
    assert after.decision == state.decision
    assert after.confidence == state.confidence


@FAST
@given(
    weight=st.floats(0.0, 1.0),
    confidence=st.floats(0.0, 1.0),
    mode=st.sampled_from(["shadow", "live"]),
)
def test_every_signal_gets_exactly_one_intent_within_the_cap(
    weight: float, confidence: float, mode: TradingMode
) -> None:
    _, emitted = run([signal(confidence)], fleet=fleet_with(weights(alpha=weight)), mode=mode)

    [order] = emitted
    assert isinstance(order, OrderIntent)
    if weight > 0:
        assert order.target_usd == pytest.approx(min(1000.0 * weight * confidence, 250.0))
        assert order.routed == (mode == "live")
    else:
        assert (order.target_usd, order.routed) == (0.0, False)


def test_signal_right_after_an_auto_kill_is_blocked() -> None:
    state, _ = run([reconciled(-100.0, 1), reconciled(-60.0, 2)])
    assert state.decision is Decision.KILL  # the auto kill has been emitted
    fleet = fleet_with(weights(alpha=0.4))  # the kill fact has not been folded yet

    _, emitted = run([signal()], fleet=fleet, state=state, mode="live")

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert (order.target_usd, order.routed) == (0.0, False)

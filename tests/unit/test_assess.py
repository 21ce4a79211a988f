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
    StrategyTrials,
)
from schemas.policy import Policy, Thresholds
from streams.agents.assess import AgentState, apply_agent_event
from streams.agents.execution import TradingMode
from streams.core.fleet_state import FleetState, apply_fleet_event

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
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


def losing_streak() -> list[SignalReconciled]:
    """Ten trades, the fewest the default policy kills on: -10 bps nine times (pnl_sum -90,
    HOLD), then -70 (pnl_sum -160 bps < -150 bps: KILL)."""
    return [reconciled(-10.0, k) for k in range(1, 10)] + [reconciled(-70.0, 10)]


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
    *before, last = losing_streak()
    state, held = run(before)
    assert {a.decision for a in of_type(held, AgentAssessed)} == {Decision.HOLD}
    state, at_kill = run([last], state=state)

    [made] = of_type(at_kill, DecisionMade)
    [killed] = of_type(at_kill, AgentKilled)
    assert (made.decision, made.previous) == (Decision.KILL, Decision.HOLD)
    assert (killed.target, killed.source) == (AGENT, "auto")
    assert [a.decision for a in of_type(at_kill, AgentAssessed)] == [Decision.KILL]

    # A big win before the kill fact reaches the kill list would make the stats HOLD;
    # the agent must still count as killed, and not be killed a second time.
    state, next_out = run([reconciled(400.0, 11)], state=state)

    assert of_type(next_out, AgentKilled) == []
    [made_next] = of_type(next_out, DecisionMade)
    assert (made_next.decision, made_next.previous) == (Decision.KILLED, Decision.KILL)
    assert [a.decision for a in of_type(next_out, AgentAssessed)] == [Decision.KILLED]

    state, later_out = run([reconciled(10.0, 12)], state=state)

    assert of_type(later_out, AgentKilled) == []
    assert of_type(later_out, DecisionMade) == []  # still KILLED: nothing changed
    assert [a.decision for a in of_type(later_out, AgentAssessed)] == [Decision.KILLED]


def test_a_revive_after_the_kill_is_folded_lifts_the_old_kill() -> None:
    state, at_kill = run(losing_streak())
    [killed] = of_type(at_kill, AgentKilled)

    # The kill reaches the kill list: still KILLED, no new kill.
    with_kill = fleet_with(killed)
    state, out = run([reconciled(400.0, 11)], fleet=with_kill, state=state)
    assert [a.decision for a in of_type(out, AgentAssessed)] == [Decision.KILLED]
    assert of_type(out, AgentKilled) == []

    revived = AgentRevived.create(
        ts=T0 + 11 * HOUR, producer="t", target=AGENT, source="operator", actor="ops"
    )
    state, out = run([reconciled(10.0, 12)], fleet=fleet_with(killed, revived), state=state)

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

    _, under_default = run(losing_streak())
    _, emitted = run(losing_streak(), fleet=fleet_with(stricter))

    assert len(of_type(under_default, AgentKilled)) == 1
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
    state, _ = run(losing_streak())
    assert state.decision is Decision.KILL  # the auto kill has been emitted
    fleet = fleet_with(weights(alpha=0.4))  # the kill fact has not been folded yet

    _, emitted = run([signal()], fleet=fleet, state=state, mode="live")

    [order] = emitted
    assert isinstance(order, OrderIntent)
    assert (order.target_usd, order.routed) == (0.0, False)
    assert order.reason.startswith("blocked: agent alpha killed by supervisor (auto): KILL")


# Evidence before verdicts


def llm_run(at: datetime, *, errors: int = 0, cost: float = 0.0, k: int = 0) -> RunCompleted:
    return RunCompleted.create(
        event_id=derived_event_id("test-run", at, k),
        ts=at,
        producer="t",
        agent=AGENT,
        run_id=derived_event_id("test-run-id", at, k),
        started_at=at - timedelta(milliseconds=400),
        latency_ms=400.0,
        errors=errors,
        cost_usd=cost,
        strategy_class=CLASS,
    )


def test_failed_runs_kill_only_from_the_tenth() -> None:
    # Every run fails: error rate 1.0 from the first, but nine runs are not evidence.
    failed = [llm_run(T0 + k * HOUR, errors=1) for k in range(1, 11)]

    state, early = run(failed[:9])
    _, tenth = run(failed[9:], state=state)

    assert of_type(early, AgentKilled) == []
    [first] = of_type(early, DecisionMade)
    assert first.decision is Decision.HOLD
    assert first.reasons[0] == (
        "not enough evidence: 1 of 10 runs to KILL on error_rate 1.000 > 0.200"
    )
    [made] = of_type(tenth, DecisionMade)
    assert (made.decision, made.reasons) == (Decision.KILL, ["error_rate 1.000 > 0.200"])
    assert len(of_type(tenth, AgentKilled)) == 1


def test_one_bad_trade_is_held_not_killed() -> None:
    _, emitted = run([reconciled(-400.0, 1)])

    [made] = of_type(emitted, DecisionMade)
    assert made.decision is Decision.HOLD
    assert made.reasons[0].startswith("not enough evidence: 1 of 10 trades to KILL")
    assert of_type(emitted, AgentKilled) == []


# Edge significance


def trials(n: int) -> StrategyTrials:
    return StrategyTrials.create(ts=T0, producer="t", strategy_class=CLASS, trials=n)


GATE_ON = PolicyUpdated.create(
    ts=T0 - timedelta(days=1), producer="t", thresholds=Thresholds(significance_gate=True)
)


def test_every_decision_reports_psr_and_dsr_against_the_trials_of_the_class() -> None:
    pnls = [30.0, -10.0, 25.0, 5.0, 40.0, -20.0, 35.0]
    trades = [reconciled(p, k) for k, p in enumerate(pnls, start=1)]

    _, alone = run(trades, fleet=fleet_with(trials(1)))
    _, among_fifty = run(trades, fleet=fleet_with(trials(50)))

    [made_alone] = of_type(alone, DecisionMade)
    [made] = of_type(among_fifty, DecisionMade)
    # On the first decision, one trade: no variance, nothing known.
    assert (made.stats["psr"], made.stats["dsr"], made.stats["trials"]) == (None, None, 50)
    last_alone = of_type(alone, AgentAssessed)[-1].stats
    last = of_type(among_fifty, AgentAssessed)[-1].stats
    assert last.psr is not None and last.psr > 0.5  # a positive edge, more likely than not
    assert last.psr == last_alone.psr
    assert last_alone.dsr == last_alone.psr  # one trial: nothing was selected
    assert last.dsr is not None and last.dsr < last.psr  # fifty tried: the best is deflated
    assert made_alone.stats["trials"] == 1


def steady_loser(n: int) -> list[SignalReconciled]:
    """Small, steady losses: -20 and -10 bps in turn; pnl_sum stays above the -150 bps line
    through ten trades, so only the significance can kill."""
    return [reconciled(-20.0 if k % 2 else -10.0, k) for k in range(1, n + 1)]


@pytest.mark.parametrize(("n", "killed"), [(9, False), (10, True)])
def test_with_the_gate_on_a_significant_loser_is_killed_on_enough_trades(
    n: int, killed: bool
) -> None:
    state, emitted = run(steady_loser(n), fleet=fleet_with(GATE_ON))

    if killed:
        [kill] = of_type(emitted, AgentKilled)
        assert kill.reason.startswith("KILL: PSR(0) ")
        assert state.decision is Decision.KILL
    else:
        assert of_type(emitted, AgentKilled) == []
        assert state.decision is Decision.HOLD


def test_with_the_gate_off_significance_kills_nobody() -> None:
    state, emitted = run(steady_loser(10))

    assert of_type(emitted, AgentKilled) == []
    assert state.decision is Decision.HOLD
    psr = of_type(emitted, AgentAssessed)[-1].stats.psr
    assert psr is not None and psr <= 0.05  # what the gate, on, would kill on


def test_with_the_gate_on_zero_variance_never_kills() -> None:
    # The same loss every time: no variance, so no PSR, and an unknown PSR kills nobody.
    state, emitted = run([reconciled(-10.0, k) for k in range(1, 13)], fleet=fleet_with(GATE_ON))

    assert of_type(emitted, AgentAssessed)[-1].stats.psr is None
    assert of_type(emitted, AgentKilled) == []
    assert state.decision is Decision.HOLD


def test_with_the_gate_on_promotion_waits_for_the_deflated_sharpe() -> None:
    # Twenty trades and a clean run that pass every other gate, in a class of a hundred
    # agents; the gate goes on before the twenty-first trade.
    pnls = [40.0 if k % 3 else -15.0 for k in range(1, 22)]
    trades = [reconciled(p, k) for k, p in enumerate(pnls, start=1)]
    gate_on = PolicyUpdated.create(
        ts=T0 + 20 * HOUR + MINUTE, producer="t", thresholds=Thresholds(significance_gate=True)
    )
    fleet = fleet_with(trials(100), gate_on)

    promoted, _ = run([llm_run(T0), *trades[:20]], fleet=fleet)
    _, emitted = run(trades[20:], fleet=fleet, state=promoted)

    assert promoted.decision is Decision.PROMOTE
    [made] = of_type(emitted, DecisionMade)
    dsr = made.stats["dsr"]
    assert (made.previous, made.decision) == (Decision.PROMOTE, Decision.HOLD)
    assert made.reasons == [f"promotion gate failed: DSR {dsr:.4g} < 0.95"]


# The daily LLM budget

BUDGET = PolicyUpdated.create(
    ts=T0 - timedelta(days=1), producer="t", thresholds=Thresholds(daily_budget_usd=10.0)
)
MIDNIGHT = T0 + timedelta(days=1)


def spend(*costs_at: tuple[float, datetime]) -> list[RunCompleted]:
    return [llm_run(at, cost=cost, k=k) for k, (cost, at) in enumerate(costs_at)]


def test_over_the_budget_the_agent_is_paused_until_the_next_utc_midnight() -> None:
    runs = spend((6.0, T0 + 9 * HOUR), (6.4, T0 + 15 * HOUR))

    state, emitted = run(runs, fleet=fleet_with(BUDGET))

    [pause] = of_type(emitted, AgentKilled)
    crossing = runs[1]
    assert (pause.target, pause.source, pause.ts, pause.until) == (
        AGENT,
        "budget",
        T0 + 15 * HOUR,
        MIDNIGHT,
    )
    assert pause.reason == "LLM cost 12.40 USD today (2024-03-01 UTC) > daily budget 10.00 USD"
    assert pause.cause_id == crossing.event_id
    assert pause.event_id == derived_event_id("agent.killed", AGENT, crossing.event_id)
    # The pause is a kill like any timed one: the decision is KILLED, nothing more.
    [_, made] = of_type(emitted, DecisionMade)
    assert (made.decision, made.previous) == (Decision.KILLED, Decision.HOLD)
    assert made.reasons == [
        "on the kill list: agent alpha paused by supervisor (budget) until "
        "2024-03-02T00:00:00Z: LLM cost 12.40 USD today (2024-03-01 UTC) > daily budget 10.00 USD"
    ]
    assert state.decision is Decision.KILLED


def test_at_the_budget_exactly_the_agent_runs_on() -> None:
    _, emitted = run(spend((4.0, T0 + HOUR), (6.0, T0 + 2 * HOUR)), fleet=fleet_with(BUDGET))
    assert of_type(emitted, AgentKilled) == []


def test_without_a_budget_no_cost_pauses() -> None:
    _, emitted = run(spend((500.0, T0 + HOUR)))
    assert of_type(emitted, AgentKilled) == []


def test_the_budget_pauses_once_a_day() -> None:
    runs = spend((11.0, T0 + HOUR), (3.0, T0 + 2 * HOUR), (3.0, T0 + 3 * HOUR))
    # Two more runs over the budget the same day (an unguarded client), pause folded or not.
    state, first = run(runs[:1], fleet=fleet_with(BUDGET))
    [pause] = of_type(first, AgentKilled)
    _, pending = run(runs[1:], fleet=fleet_with(BUDGET), state=state)
    _, folded = run(runs[1:], fleet=fleet_with(BUDGET, pause), state=state)

    assert of_type(pending, AgentKilled) == of_type(folded, AgentKilled) == []


def test_a_new_day_has_a_new_budget() -> None:
    day_one = spend((11.0, T0 + HOUR))
    state, first = run(day_one, fleet=fleet_with(BUDGET))
    [pause] = of_type(first, AgentKilled)
    fleet = fleet_with(BUDGET, pause)

    state, under = run(spend((9.0, MIDNIGHT + HOUR)), fleet=fleet, state=state)
    _, over = run([llm_run(MIDNIGHT + 2 * HOUR, cost=2.0, k=7)], fleet=fleet, state=state)

    assert of_type(under, AgentKilled) == []
    [second] = of_type(over, AgentKilled)
    assert second.until == MIDNIGHT + timedelta(days=1)
    assert second.reason.startswith("LLM cost 11.00 USD today (2024-03-02 UTC)")


@pytest.mark.parametrize("folded", [True, False], ids=["pause-folded", "pause-in-flight"])
def test_the_pause_ends_at_midnight_in_event_time_and_the_decision_comes_back(
    folded: bool,
) -> None:
    state, emitted = run(spend((11.0, T0 + 22 * HOUR)), fleet=fleet_with(BUDGET))
    [pause] = of_type(emitted, AgentKilled)
    # No revive fact: the expiry timer has not written it yet.
    fleet = fleet_with(BUDGET, pause) if folded else fleet_with(BUDGET)

    state, before = run(
        [llm_run(MIDNIGHT - timedelta(microseconds=1), k=1)], fleet=fleet, state=state
    )
    state, after = run([llm_run(MIDNIGHT, k=2)], fleet=fleet, state=state)

    assert of_type(before, DecisionMade) == []  # still KILLED
    [made] = of_type(after, DecisionMade)
    assert (made.decision, made.previous) == (Decision.HOLD, Decision.KILLED)
    assert of_type(after, AgentKilled) == []
    assert [a.decision for a in of_type(after, AgentAssessed)] == [Decision.HOLD]


def test_a_paused_agents_signal_is_blocked_and_says_why() -> None:
    state, emitted = run(spend((11.0, T0 + HOUR)), fleet=fleet_with(BUDGET))
    [pause] = of_type(emitted, AgentKilled)

    _, during = run(
        [signal(at=T0 + 2 * HOUR)], fleet=fleet_with(BUDGET, pause, weights(alpha=0.4)), state=state
    )
    _, next_day = run(
        [signal(at=MIDNIGHT)], fleet=fleet_with(BUDGET, pause, weights(alpha=0.4)), state=state
    )

    [blocked] = of_type(during, OrderIntent)
    assert blocked.target_usd == 0.0
    assert blocked.reason.startswith(
        "blocked: agent alpha paused by supervisor (budget) until 2024-03-02T00:00:00Z: LLM cost"
    )
    [order] = of_type(next_day, OrderIntent)
    assert order.target_usd == pytest.approx(200.0)


def test_no_pause_over_a_kill_in_force() -> None:
    # A pause would replace the permanent kill on the list, and lift it at midnight.
    kill = AgentKilled.create(ts=T0, producer="t", target=AGENT, source="operator", actor="ops")

    _, emitted = run(spend((11.0, T0 + HOUR)), fleet=fleet_with(BUDGET, kill))

    assert of_type(emitted, AgentKilled) == []


def test_no_pause_for_a_day_already_over() -> None:
    # A run of yesterday arrives after today's trade: yesterday's budget can pause nothing.
    state, _ = run([reconciled(10.0, 30)], fleet=fleet_with(BUDGET))

    _, emitted = run(spend((11.0, T0 + 20 * HOUR)), fleet=fleet_with(BUDGET), state=state)

    assert of_type(emitted, AgentKilled) == []


def test_a_budget_with_a_lifetime_window_reads_the_day_alone() -> None:
    lifetime = PolicyUpdated.create(
        ts=T0 - timedelta(days=1),
        producer="t",
        thresholds=Thresholds(daily_budget_usd=10.0, window_days=0),
    )
    yesterday = spend((9.0, T0 - timedelta(hours=2)))
    state, _ = run(yesterday, fleet=fleet_with(lifetime))

    state, under = run(spend((9.0, T0 + HOUR)), fleet=fleet_with(lifetime), state=state)
    _, over = run([llm_run(T0 + 2 * HOUR, cost=1.5, k=9)], fleet=fleet_with(lifetime), state=state)

    assert of_type(under, AgentKilled) == []
    assert len(of_type(over, AgentKilled)) == 1

"""The fleet fold: allocation under the regime cap, breach kills, strategy-class kills."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Event, derived_event_id
from schemas.events import (
    AgentAssessed,
    AgentKilled,
    AllocationUpdated,
    Decision,
    Direction,
    PolicyUpdated,
    RegimeChanged,
    RunCompleted,
    SignalReconciled,
    StrategyKilled,
)
from schemas.policy import Policy, Thresholds
from schemas.stats import AgentStats
from streams.agents.assess import AgentState, apply_agent_event
from streams.core.fleet_state import FleetState, apply_fleet_event
from streams.fleet.book import FleetBook, apply_fleet_input

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = Policy()
FAST = settings(max_examples=60, deadline=None)
E = TypeVar("E", bound=Event)


def assessed(
    agent: str,
    at: datetime,
    *,
    pnl: float = 200.0,
    hit: float | None = 0.6,
    error_rate: float | None = 0.0,
    mult: float = 1.0,
    decision: Decision = Decision.HOLD,
    strategy_class: str | None = None,
    seq: int | None = None,
) -> AgentAssessed:
    """An assessment; unless told otherwise, later ones carry higher sequence numbers."""
    return AgentAssessed.create(
        event_id=derived_event_id("test-assessed", agent, at, pnl, decision),
        ts=at,
        producer="t",
        agent=agent,
        strategy_class=strategy_class,
        stats=AgentStats(trades=10, runs=10, pnl_sum_bps=pnl, hit_rate=hit, error_rate=error_rate),
        mult=mult,
        decision=decision,
        seq=seq if seq is not None else int((at - T0).total_seconds() // 60) + 1,
    )


def reconciled(
    pnl: float,
    exit_ts: datetime,
    *,
    agent: str = "a",
    regime: str | None = None,
    strategy_class: str | None = None,
    event_id: uuid.UUID | None = None,
) -> SignalReconciled:
    return SignalReconciled.create(
        event_id=event_id or derived_event_id("test-rec", agent, exit_ts, pnl, regime),
        ts=exit_ts,
        producer="t",
        signal_id=derived_event_id("test-signal", agent, exit_ts, pnl),
        run_id=uuid.UUID(int=1),
        agent=agent,
        symbol="BTC-USD",
        direction=Direction.LONG,
        horizon_hours=24,
        entry_ts=exit_ts - 24 * HOUR,
        entry_price=100.0,
        exit_ts=exit_ts,
        exit_price=100.0 * (1 + pnl / 10_000),
        realized_pnl_bps=pnl,
        regime=regime,
        confidence=0.6,
        strategy_class=strategy_class,
    )


def regime_change(at: datetime, regime: str) -> RegimeChanged:
    return RegimeChanged.create(
        event_id=derived_event_id("test-regime", at, regime), ts=at, producer="t", regime=regime
    )


def feed(
    events: Iterable[Event], fleet: FleetState | None = None, book: FleetBook | None = None
) -> tuple[FleetBook, list[Event]]:
    """Fold fleet inputs under a fixed fleet state; return the book and everything emitted.
    A trade reaches the fleet inside the assessment it caused (`as_sent`)."""
    book = book or FleetBook()
    fleet = fleet or FleetState()
    emitted: list[Event] = []
    for event in events:
        sent = as_sent(event, book) if isinstance(event, SignalReconciled) else event
        book, out = apply_fleet_input(book, sent, fleet)
        emitted += out
    return book, emitted


def as_sent(trade: SignalReconciled, book: FleetBook) -> AgentAssessed:
    """The assessment the agent processor sends with a trade: the agent's last one known to
    the book (a fresh HOLD if none), one further in sequence, carrying the trade."""
    known = book.agents.get(trade.agent) or assessed(trade.agent, trade.ts, seq=0)
    return known.model_copy(
        update={
            "event_id": derived_event_id("test-assessed-trade", trade.event_id),
            "ts": trade.ts,
            "seq": known.seq + 1,
            "trade": trade,
            "strategy_class": known.strategy_class or trade.strategy_class,
        }
    )


def fleet_with(*facts: Event, fleet: FleetState | None = None) -> FleetState:
    fleet = fleet or FleetState()
    for fact in facts:
        fleet = apply_fleet_event(fleet, fact)
    return fleet


def of_type(events: Iterable[Event], model: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, model)]


# Allocation


def test_a_profitable_agent_gets_an_allocation() -> None:
    _, emitted = feed([assessed("a", T0)])

    [allocation] = of_type(emitted, AllocationUpdated)
    # No regime known: the cautious cap of 0.50.
    assert allocation.weights == {"a": pytest.approx(0.5)}
    assert (allocation.regime, allocation.regime_cap, allocation.cash_weight) == (None, 0.5, 0.5)


@pytest.mark.parametrize(
    "change",
    [
        {"pnl": 0.0},
        {"pnl": -50.0},
        {"error_rate": None},
        {"error_rate": 0.2},
        {"decision": Decision.KILL},
        {"decision": Decision.KILLED},
    ],
)
def test_an_ineligible_agent_gets_no_weight(change: dict[str, Any]) -> None:
    _, emitted = feed([assessed("a", T0), assessed("b", T0 + HOUR, **change)])

    assert of_type(emitted, AllocationUpdated)[-1].weights == {"a": pytest.approx(0.5)}


def test_risk_off_scales_risk_on_weights_to_its_cap_without_renormalising() -> None:
    risk_on = fleet_with(regime_change(T0, "RISK_ON"))
    agents = [
        assessed("a", T0 + HOUR, pnl=200.0, hit=0.6),
        assessed("b", T0 + 2 * HOUR, pnl=100.0, hit=0.5),
    ]
    book, emitted = feed(agents, fleet=risk_on)
    before = of_type(emitted, AllocationUpdated)[-1]
    assert math.fsum(before.weights.values()) == pytest.approx(1.0)

    risk_off = regime_change(T0 + 3 * HOUR, "RISK_OFF")
    _, emitted = feed([risk_off], fleet=fleet_with(risk_off, fleet=risk_on), book=book)

    [after] = of_type(emitted, AllocationUpdated)
    assert (after.regime, after.regime_cap) == ("RISK_OFF", 0.2)
    assert after.cash_weight == pytest.approx(0.8)
    assert math.fsum(after.weights.values()) == pytest.approx(0.2)
    # Quality 220 vs 100 bps: the same proportions, each scaled by 0.2.
    assert after.weights == {
        agent: pytest.approx(0.2 * weight) for agent, weight in before.weights.items()
    }
    assert after.weights["a"] == pytest.approx(0.2 * 220 / 320)


def test_an_unknown_regime_caps_at_one_half() -> None:
    sideways = regime_change(T0, "SIDEWAYS")

    _, emitted = feed([assessed("a", T0 + HOUR), sideways], fleet=fleet_with(sideways))

    allocation = of_type(emitted, AllocationUpdated)[-1]
    assert (allocation.regime, allocation.regime_cap) == ("SIDEWAYS", 0.5)
    assert allocation.weights == {"a": pytest.approx(0.5)}
    assert allocation.cash_weight == pytest.approx(0.5)


def test_an_older_or_repeated_assessment_is_ignored() -> None:
    newer = assessed("a", T0 + 2 * HOUR, pnl=300.0)
    book, _ = feed([newer, assessed("b", T0 + 2 * HOUR)])

    for stale in (assessed("a", T0 + HOUR, pnl=-500.0, decision=Decision.KILL), newer):
        after, emitted = apply_fleet_input(book, stale, FleetState())

        assert emitted == []
        assert after == book
        assert after.agents["a"] == newer


def test_a_newer_assessment_replaces_the_agents_entry() -> None:
    book, _ = feed([assessed("a", T0), assessed("b", T0)])

    book, emitted = feed([assessed("a", T0 + HOUR, decision=Decision.KILL)], book=book)

    assert book.agents["a"].decision is Decision.KILL
    assert of_type(emitted, AllocationUpdated)[-1].weights.keys() == {"b"}


def test_the_same_reconciliation_twice_changes_nothing() -> None:
    rec = reconciled(-80.0, T0, strategy_class="momentum")
    book, _ = feed([assessed("a", T0 - HOUR), rec])

    after, emitted = apply_fleet_input(book, rec, FleetState())

    assert emitted == []
    assert after == book


def test_a_non_focus_horizon_reconciliation_changes_nothing() -> None:
    book, _ = feed([assessed("a", T0 - HOUR)])
    short = reconciled(-500.0, T0).model_copy(update={"horizon_hours": 1})

    after, emitted = apply_fleet_input(book, short, FleetState())

    assert emitted == []
    assert after == book


@FAST
@given(
    agents=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.floats(-1e4, 1e4),
            st.none() | st.floats(0.0, 1.0),
            st.none() | st.floats(0.0, 0.3),
            st.floats(0.2, 1.2),
            st.sampled_from(list(Decision)),
        ),
        min_size=1,
        max_size=8,
    ),
    regime=st.none() | st.sampled_from(["RISK_OFF", "HIGH_VOL", "MIXED", "RISK_ON", "SIDEWAYS"]),
)
def test_weights_are_non_negative_and_sum_to_the_regime_cap(
    agents: list[tuple[str, float, float | None, float | None, float, Decision]],
    regime: str | None,
) -> None:
    fleet = FleetState() if regime is None else fleet_with(regime_change(T0, regime))
    cap = POLICY.regime_cap(regime)
    events = [
        assessed(
            name, T0 + k * HOUR, pnl=pnl, hit=hit, error_rate=errors, mult=mult, decision=decision
        )
        for k, (name, pnl, hit, errors, mult, decision) in enumerate(agents, start=1)
    ]

    book, emitted = feed(events, fleet=fleet)

    allocations = of_type(emitted, AllocationUpdated)
    assert allocations, "the first assessment always publishes an allocation"
    for allocation in allocations:
        assert allocation.regime_cap == cap
        assert all(weight >= 0 for weight in allocation.weights.values())
        if allocation.weights:
            assert math.fsum(allocation.weights.values()) == pytest.approx(cap, rel=1e-9)
            assert allocation.cash_weight == pytest.approx(1.0 - cap)
        else:
            assert allocation.cash_weight == 1.0
    assert book.allocation is not None
    assert book.allocation.weights == allocations[-1].weights


# Drawdown breach


def test_a_breach_kills_each_promoted_agent_exactly_once() -> None:
    agents = [
        assessed("a", T0, decision=Decision.PROMOTE),
        assessed("b", T0, decision=Decision.PROMOTE),
        assessed("c", T0, decision=Decision.HOLD),
    ]
    book, _ = feed(agents)

    # Cumulative drawdown 100, 200: below the 250 bps limit.
    book, emitted = feed(
        [reconciled(-100.0, T0 + HOUR), reconciled(-100.0, T0 + 2 * HOUR)], book=book
    )
    assert of_type(emitted, AgentKilled) == []

    # 260 bps: over the limit.
    book, emitted = feed([reconciled(-60.0, T0 + 3 * HOUR)], book=book)
    kills = of_type(emitted, AgentKilled)
    assert sorted(kill.target for kill in kills) == ["a", "b"]
    assert {kill.source for kill in kills} == {"breach"}
    assert all("250.0 bps" in kill.reason for kill in kills)

    # Still over the limit, the kills not yet on the kill list: no second kill.
    book, emitted = feed([reconciled(-10.0, T0 + 4 * HOUR)], book=book)
    assert of_type(emitted, AgentKilled) == []

    # The kills folded: still none.
    _, emitted = feed([reconciled(-10.0, T0 + 5 * HOUR)], fleet=fleet_with(*kills), book=book)
    assert of_type(emitted, AgentKilled) == []


def test_a_breach_with_no_promoted_agent_kills_nobody() -> None:
    book, _ = feed([assessed("c", T0, decision=Decision.HOLD)])

    _, emitted = feed([reconciled(-300.0, T0 + HOUR)], book=book)

    assert of_type(emitted, AgentKilled) == []


# Strategy-class kill

AT = T0 + 21 * DAY  # the last trade; the three weekly periods end here


def class_trades(pnls_and_regimes: list[tuple[timedelta, float, str]]) -> list[SignalReconciled]:
    return [
        reconciled(pnl, AT - back, regime=regime, strategy_class="momentum")
        for back, pnl, regime in pnls_and_regimes
    ]


def test_a_class_meeting_two_conditions_is_killed_once_with_the_evidence() -> None:
    # One loss in each of the last three weeks, all in a regime where the class never made
    # money: losing_periods and regime_mismatch hold; no agents, no cost.
    trades = class_trades(
        [(20 * DAY, -10.0, "RISK_OFF"), (13 * DAY, -10.0, "RISK_OFF"), (0 * DAY, -10.0, "RISK_OFF")]
    )

    book, emitted = feed(trades)

    [kill] = of_type(emitted, StrategyKilled)
    assert (kill.target, kill.source, kill.ts) == ("momentum", "auto", AT)
    assert kill.reason == "2 of 4 conditions hold: losing_periods, regime_mismatch"
    holding = {name for name, result in kill.evidence.items() if result["holds"]}
    assert holding == {"losing_periods", "regime_mismatch"}
    assert kill.evidence["losing_periods"]["evidence"]["period_pnls_bps"] == [-10.0, -10.0, -10.0]
    assert kill.evidence["regime_mismatch"]["evidence"]["share"] == 1.0

    # Another loss before the kill reaches the kill list: no second kill.
    _, emitted = feed(
        [reconciled(-5.0, AT + HOUR, regime="RISK_OFF", strategy_class="momentum")], book=book
    )
    assert of_type(emitted, StrategyKilled) == []


@pytest.mark.parametrize(
    "trades",
    [
        # Only losing_periods: the class earns in RISK_ON, where its losses are.
        [
            (25 * DAY, 500.0, "RISK_ON"),
            (20 * DAY, -10.0, "RISK_ON"),
            (13 * DAY, -10.0, "RISK_ON"),
            (0 * DAY, -10.0, "RISK_ON"),
        ],
        # Only regime_mismatch: no loss in the middle week.
        [(20 * DAY, -10.0, "RISK_OFF"), (6 * DAY, -10.0, "RISK_OFF"), (0 * DAY, -10.0, "RISK_OFF")],
    ],
    ids=["losing_periods", "regime_mismatch"],
)
def test_a_class_meeting_one_condition_is_spared(
    trades: list[tuple[timedelta, float, str]],
) -> None:
    _, emitted = feed(class_trades(trades))

    assert of_type(emitted, StrategyKilled) == []


def test_a_class_already_on_the_kill_list_is_not_killed_again() -> None:
    on_list = StrategyKilled.create(ts=T0, producer="t", target="momentum", source="operator")
    trades = class_trades(
        [(20 * DAY, -10.0, "RISK_OFF"), (13 * DAY, -10.0, "RISK_OFF"), (0 * DAY, -10.0, "RISK_OFF")]
    )

    _, emitted = feed(trades, fleet=fleet_with(on_list))

    assert of_type(emitted, StrategyKilled) == []


# Both folds together


def test_a_newer_assessment_with_the_same_watermark_reaches_the_fleet() -> None:
    exit_ts = T0 + 30 * HOUR
    a_run = RunCompleted.create(
        ts=T0, producer="t", agent="a", run_id=uuid.UUID(int=9), started_at=T0, latency_ms=100.0
    )
    # Two trades of one agent closing at the same time (say, two symbols signalled together).
    win = reconciled(200.0, exit_ts, event_id=uuid.UUID(int=1))
    loss = reconciled(-400.0, exit_ts, event_id=uuid.UUID(int=10)).model_copy(
        update={"symbol": "ETH-USD", "signal_id": uuid.UUID(int=22)}
    )
    # Verdicts on the first trades: no evidence minimums.
    fleet = fleet_with(
        PolicyUpdated.create(
            ts=T0 - DAY,
            producer="t",
            thresholds=Thresholds(kill_min_trades=0, kill_min_runs=0, promote_min_trades=0),
        )
    )
    state = AgentState.start("a", POLICY)
    outputs: list[Event] = []
    for event in (a_run, win, loss):
        state, out = apply_agent_event(state, event, fleet, "shadow")
        outputs += out
    first, second = of_type(outputs, AgentAssessed)[-2:]
    assert (first.decision, second.decision) == (Decision.PROMOTE, Decision.KILL)
    assert first.ts == second.ts  # the watermark did not move
    assert str(second.event_id) < str(first.event_id)  # what makes the fleet drop it

    book, _ = feed([first], fleet=fleet)
    book, emitted = feed([second], fleet=fleet, book=book)

    assert book.agents["a"].decision is Decision.KILL
    assert of_type(emitted, AllocationUpdated)[-1].weights == {}


def test_weights_follow_new_trades_at_most_once_per_rebalance_period() -> None:
    minutes = POLICY.allocation.rebalance_minutes
    assert minutes > 0
    start = [assessed("a", T0, pnl=200.0), assessed("b", T0, pnl=100.0)]
    within = [assessed("a", T0 + timedelta(minutes=m), pnl=200.0 + m) for m in (5, 10, 20)]
    after = [assessed("a", T0 + timedelta(minutes=minutes), pnl=300.0)]
    _, opening = feed(start)  # each new agent is allocated at once
    _, during = feed([*start, *within])
    _, later = feed([*start, *within, *after])
    assert of_type(during, AllocationUpdated) == of_type(opening, AllocationUpdated)
    allocations = of_type(later, AllocationUpdated)
    assert len(allocations) == len(of_type(opening, AllocationUpdated)) + 1
    share = 300 * 1.1 / (300 * 1.1 + 100 * 1.1)  # quality = pnl x (0.5 + hit 0.6) x mult 1
    assert allocations[-1].weights["a"] == pytest.approx(share * POLICY.unknown_regime_cap)


def test_a_decision_change_reallocates_at_once() -> None:
    start = [assessed("a", T0, pnl=200.0), assessed("b", T0, pnl=100.0)]
    killed = assessed("a", T0 + timedelta(minutes=5), decision=Decision.KILL)
    _, opening = feed(start)
    _, emitted = feed([*start, killed])
    allocations = of_type(emitted, AllocationUpdated)
    assert len(allocations) == len(of_type(opening, AllocationUpdated)) + 1
    assert "a" not in allocations[-1].weights

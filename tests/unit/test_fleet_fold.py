"""The fleet fold: allocation under the regime cap, the deployed portfolio (breach kills,
contributions), strategy-class kills."""

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
from streams.agents.stats import window_drawdown_bps
from streams.core.fleet_state import FleetState, apply_fleet_event
from streams.fleet.book import (
    FleetBook,
    apply_fleet_input,
    contribution_bps,
    deployed_drawdown_bps,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
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


# Drawdown breach: the portfolio as deployed

# Cap 1 from before the tests' first allocation: the weights are the shares of quality.
RISK_ON = regime_change(T0 - DAY, "RISK_ON")


def kill_targets(events: Iterable[Event]) -> list[str]:
    return sorted(kill.target for kill in of_type(events, AgentKilled))


def policy_fact(at: datetime, **fields: Any) -> PolicyUpdated:
    return PolicyUpdated.create(ts=at, producer="t", **fields)


def test_a_breach_kills_each_promoted_agent_exactly_once() -> None:
    fleet = fleet_with(RISK_ON)
    agents = [
        assessed("a", T0, decision=Decision.PROMOTE),
        assessed("b", T0, decision=Decision.PROMOTE),
        assessed("c", T0, pnl=-10.0),  # HOLD, no weight
    ]
    book, _ = feed(agents, fleet=fleet)  # a and b at 0.5 each from T0

    # a's losses, signalled after T0, at half weight: 100, then 200 bps below the peak.
    book, emitted = feed(
        [reconciled(-200.0, T0 + DAY + HOUR), reconciled(-200.0, T0 + DAY + 2 * HOUR)],
        fleet=fleet,
        book=book,
    )
    assert kill_targets(emitted) == []

    # 260 bps: over the limit.
    book, emitted = feed([reconciled(-120.0, T0 + DAY + 3 * HOUR)], fleet=fleet, book=book)
    kills = of_type(emitted, AgentKilled)
    assert kill_targets(kills) == ["a", "b"]
    assert {kill.source for kill in kills} == {"breach"}
    assert all("drawdown 260.0 bps >= 250.0 bps" in kill.reason for kill in kills)

    # Still over the limit, the kills not yet on the kill list: no second kill.
    book, emitted = feed([reconciled(-10.0, T0 + DAY + 4 * HOUR)], fleet=fleet, book=book)
    assert kill_targets(emitted) == []

    # The kills folded: still none.
    _, emitted = feed(
        [reconciled(-10.0, T0 + DAY + 5 * HOUR)], fleet=fleet_with(*kills, fleet=fleet), book=book
    )
    assert kill_targets(emitted) == []


def test_a_breach_with_no_promoted_agent_kills_nobody() -> None:
    fleet = fleet_with(RISK_ON)
    book, _ = feed([assessed("c", T0, decision=Decision.HOLD)], fleet=fleet)

    book, emitted = feed([reconciled(-300.0, T0 + DAY + HOUR, agent="c")], fleet=fleet, book=book)

    assert deployed_drawdown_bps(book, T0 + DAY + HOUR, 30) == pytest.approx(300.0)
    assert kill_targets(emitted) == []


def test_many_small_weight_losers_breach_only_when_the_deployed_loss_does() -> None:
    fleet = fleet_with(RISK_ON)
    names = [f"agent-{k}" for k in range(10)]
    book, _ = feed([assessed(name, T0, decision=Decision.PROMOTE) for name in names], fleet=fleet)

    # Each loses 100 bps at a weight of 0.1: the fleet sum is 1,000 bps down (what the old,
    # unweighted rule acted on), the deployed portfolio 100.
    first = T0 + DAY + HOUR
    book, emitted = feed(
        [reconciled(-100.0, first, agent=n) for n in names], fleet=fleet, book=book
    )
    assert kill_targets(emitted) == []
    assert window_drawdown_bps(book.portfolio, first, 30) == pytest.approx(1000.0)
    assert deployed_drawdown_bps(book, first, 30) == pytest.approx(100.0)

    # 200 bps more each: the deployed portfolio crosses 250 bps at the eighth (100 + 8 x 20).
    second = T0 + DAY + 2 * HOUR
    book, emitted = feed(
        [reconciled(-200.0, second, agent=n) for n in names], fleet=fleet, book=book
    )
    kills = of_type(emitted, AgentKilled)
    assert kill_targets(kills) == names
    assert deployed_drawdown_bps(book, second, 30) == pytest.approx(300.0)
    assert kills[0].evidence["drawdown_bps"] == pytest.approx(260.0)


@pytest.mark.parametrize(
    ("signalled", "deployed_loss"),
    [(T0 + HOUR, 300.0), (T0 + 3 * HOUR, 60.0)],
    ids=["signalled-at-weight-1", "signalled-at-weight-0.2"],
)
def test_a_trade_carries_the_weight_in_force_when_it_was_signalled(
    signalled: datetime, deployed_loss: float
) -> None:
    risk_off = regime_change(T0 + 2 * HOUR, "RISK_OFF")
    fleet = fleet_with(RISK_ON, risk_off)
    book, emitted = feed([assessed("a", T0, decision=Decision.PROMOTE), risk_off], fleet=fleet)
    assert [allocation.weights for allocation in of_type(emitted, AllocationUpdated)] == [
        {"a": pytest.approx(1.0)},
        {"a": pytest.approx(0.2)},
    ]

    # It exits a day after its signal, when the weight is 0.2 either way.
    exit_ts = signalled + DAY
    book, emitted = feed([reconciled(-300.0, exit_ts)], fleet=fleet, book=book)

    assert deployed_drawdown_bps(book, exit_ts, 30) == pytest.approx(deployed_loss)
    assert kill_targets(emitted) == (["a"] if deployed_loss >= 250.0 else [])


def test_a_fleet_all_in_cash_never_breaches() -> None:
    # RISK_OFF deploys nothing under this policy: every weight is 0.
    fleet = fleet_with(
        policy_fact(T0 - DAY, regime_caps={"RISK_OFF": 0.0}), regime_change(T0 - DAY, "RISK_OFF")
    )
    book, emitted = feed(
        [assessed(name, T0, decision=Decision.PROMOTE) for name in "ab"], fleet=fleet
    )
    assert of_type(emitted, AllocationUpdated)[-1].cash_weight == 1.0

    end = T0 + DAY + 5 * HOUR
    losses = [
        reconciled(-500.0, T0 + DAY + k * HOUR, agent=name) for k in range(1, 6) for name in "ab"
    ]
    book, emitted = feed(losses, fleet=fleet, book=book)

    assert kill_targets(emitted) == []
    assert window_drawdown_bps(book.portfolio, end, 30) == pytest.approx(5000.0)
    assert deployed_drawdown_bps(book, end, 30) == 0.0
    assert contribution_bps(book, end, 30) == {"a": 0.0, "b": 0.0}


def test_promotions_stand_again_once_the_deployed_series_recovers() -> None:
    fleet = fleet_with(RISK_ON)
    book, _ = feed([assessed("a", T0, decision=Decision.PROMOTE), assessed("h", T0)], fleet=fleet)

    # h (HOLD, weight 0.5) loses 600 bps: the deployed portfolio is 300 below its peak.
    loss = reconciled(-600.0, T0 + DAY + HOUR, agent="h")
    book, emitted = feed([loss], fleet=fleet, book=book)
    assert kill_targets(emitted) == ["a"]

    # Promoted by a run while the breach lasts: killed at once, not at its next trade.
    book, emitted = feed(
        [assessed("n", T0 + DAY + 90 * MINUTE, decision=Decision.PROMOTE)], fleet=fleet, book=book
    )
    assert kill_targets(emitted) == ["n"]

    # h earns 100 of it back (signalled at the same weights): 200 bps below the peak.
    gain = reconciled(200.0, T0 + DAY + 2 * HOUR, agent="h")
    book, emitted = feed([gain], fleet=fleet, book=book)
    assert kill_targets(emitted) == []
    assert deployed_drawdown_bps(book, gain.exit_ts, 30) == pytest.approx(200.0)

    # Above the line, a promotion stands.
    book, emitted = feed(
        [assessed("m", T0 + DAY + 3 * HOUR, decision=Decision.PROMOTE)], fleet=fleet, book=book
    )
    assert kill_targets(emitted) == []
    assert "m" in book.promoted


def test_the_breach_attributes_the_drawdown_from_peak_to_trough() -> None:
    fleet = fleet_with(RISK_ON)
    book, _ = feed([assessed(name, T0, decision=Decision.PROMOTE) for name in "abc"], fleet=fleet)
    exits = [T0 + DAY + k * HOUR for k in range(1, 5)]
    # At a third each: +100 (the peak), -150, -50, -80: 280 bps below the peak at the last.
    trades = [
        reconciled(300.0, exits[0], agent="a"),
        reconciled(-450.0, exits[1], agent="b"),
        reconciled(-150.0, exits[2], agent="c"),
        reconciled(-240.0, exits[3], agent="a"),
    ]

    _, emitted = feed(trades, fleet=fleet, book=book)

    kills = of_type(emitted, AgentKilled)
    assert kill_targets(kills) == ["a", "b", "c"]
    assert {kill.ts for kill in kills} == {exits[3]}
    evidence = kills[0].evidence
    assert evidence["attribution_bps"] == {
        "a": pytest.approx(-80.0),
        "b": pytest.approx(-150.0),
        "c": pytest.approx(-50.0),
    }
    assert math.fsum(evidence["attribution_bps"].values()) == pytest.approx(-280.0)
    assert evidence["peak_to_trough_bps"] == pytest.approx(280.0)
    assert evidence["drawdown_bps"] == pytest.approx(280.0)
    assert datetime.fromisoformat(evidence["peak_at"]) == exits[0]
    assert datetime.fromisoformat(evidence["trough_at"]) == exits[3]
    # The unweighted fleet: +300, then 840 down. Reported, not what fired.
    assert evidence["fleet_max_drawdown_bps"] == pytest.approx(840.0)
    assert "most from b -150.0 bps, a -80.0 bps, c -50.0 bps" in kills[0].reason


# Contribution


def test_contribution_is_the_portfolio_minus_the_portfolio_without_the_agent() -> None:
    end = T0 + 45 * DAY
    regimes = [
        RISK_ON,
        regime_change(T0 + 10 * DAY, "HIGH_VOL"),
        regime_change(T0 + 25 * DAY + HOUR, "MIXED"),
        regime_change(end, "RISK_ON"),
    ]
    # Quality moves every few days, so the weights do.
    assessments = [
        assessed(name, T0 + day * DAY + k * HOUR, pnl=100.0 + 37.0 * ((day + 5 * k) % 7))
        for day in range(0, 45, 4)
        for k, name in enumerate("abc")
    ]
    trades = [
        reconciled(((k * 37) % 200) - 90.0, T0 + DAY + k * 7 * HOUR, agent="abc"[k % 3])
        for k in range(1, 145)
    ]
    timeline = sorted([*regimes[1:], *assessments, *trades], key=lambda event: event.ts)

    book, emitted = feed(timeline, fleet=fleet_with(*regimes))

    allocations = of_type(emitted, AllocationUpdated)
    assert len({tuple(sorted(a.weights.items())) for a in allocations}) > 10
    final = allocations[-1]
    assert final.ts == end

    def weight(agent: str, at: datetime) -> float:
        in_force = [allocation for allocation in allocations if allocation.ts <= at]
        return in_force[-1].weights.get(agent, 0.0) if in_force else 0.0

    window = [t for t in trades if t.exit_ts > end - 30 * DAY]
    assert 0 < len(window) < len(trades)
    deployed = [(t.agent, weight(t.agent, t.exit_ts - DAY) * t.realized_pnl_bps) for t in window]
    portfolio = math.fsum(pnl for _, pnl in deployed)
    expected = {
        name: portfolio - math.fsum(pnl for other, pnl in deployed if other != name)
        for name in "abc"
    }
    assert contribution_bps(book, end, 30) == pytest.approx(expected)
    assert final.contributions == pytest.approx(expected)


# Strategy-class kill

AT = T0 + 21 * DAY  # the last trade; the three weekly periods end here
# The class is meant for RISK_ON alone; three trades over three weeks are evidence enough.
DECLARED = policy_fact(
    T0 - DAY,
    class_regimes={"momentum": ("RISK_ON",)},
    thresholds=Thresholds(kill_min_trades=3),
)


def class_trades(
    pnls_and_regimes: list[tuple[timedelta, float, str | None]],
) -> list[SignalReconciled]:
    return [
        reconciled(pnl, AT - back, regime=regime, strategy_class="momentum")
        for back, pnl, regime in pnls_and_regimes
    ]


def test_a_class_meeting_two_conditions_is_killed_once_with_the_evidence() -> None:
    # One loss in each of the last three weeks, all in a regime the class is not meant
    # for: losing_periods and regime_mismatch hold; no agents, no cost.
    trades = class_trades(
        [(20 * DAY, -10.0, "RISK_OFF"), (13 * DAY, -10.0, "RISK_OFF"), (0 * DAY, -10.0, "RISK_OFF")]
    )
    fleet = fleet_with(DECLARED)

    book, emitted = feed(trades, fleet=fleet)

    [kill] = of_type(emitted, StrategyKilled)
    assert (kill.target, kill.source, kill.ts) == ("momentum", "auto", AT)
    assert kill.reason == "2 of 4 conditions hold: losing_periods, regime_mismatch"
    holding = {name for name, result in kill.evidence.items() if result["holds"]}
    assert holding == {"losing_periods", "regime_mismatch"}
    assert kill.evidence["losing_periods"]["evidence"]["period_pnls_bps"] == [-10.0, -10.0, -10.0]
    assert kill.evidence["regime_mismatch"]["evidence"]["share"] == 1.0
    assert kill.evidence["regime_mismatch"]["evidence"]["intended_regimes"] == ["RISK_ON"]

    # Another loss before the kill reaches the kill list: no second kill.
    _, emitted = feed(
        [reconciled(-5.0, AT + HOUR, regime="RISK_OFF", strategy_class="momentum")],
        fleet=fleet,
        book=book,
    )
    assert of_type(emitted, StrategyKilled) == []


def test_without_declared_regimes_no_loss_is_a_regime_mismatch() -> None:
    # The same losses, under the default policy (no class_regimes), and signals that
    # carry no regime at all: only losing_periods holds.
    for regime in ("RISK_OFF", None):
        trades = class_trades(
            [(20 * DAY, -10.0, regime), (13 * DAY, -10.0, regime), (0 * DAY, -10.0, regime)]
        )

        _, emitted = feed(trades)

        assert of_type(emitted, StrategyKilled) == []


def test_a_signal_without_a_regime_is_judged_in_the_regime_of_its_signal_time() -> None:
    # RISK_OFF until 12 h before the last exit, RISK_ON after: every signal (a day before
    # its exit) was made in RISK_OFF, so all three losses are outside RISK_ON.
    regimes = (regime_change(T0 - DAY, "RISK_OFF"), regime_change(AT - 12 * HOUR, "RISK_ON"))
    trades = class_trades(
        [(20 * DAY, -10.0, None), (13 * DAY, -10.0, None), (0 * DAY, -10.0, None)]
    )

    _, emitted = feed(trades, fleet=fleet_with(DECLARED, *regimes))

    [kill] = of_type(emitted, StrategyKilled)
    mismatch = kill.evidence["regime_mismatch"]
    assert mismatch["holds"]
    assert mismatch["evidence"]["mismatched_losses"] == 3


@pytest.mark.parametrize(
    "trades",
    [
        # Only losing_periods: its losses are in RISK_ON, the regime it is meant for.
        [(20 * DAY, -10.0, "RISK_ON"), (13 * DAY, -10.0, "RISK_ON"), (0 * DAY, -10.0, "RISK_ON")],
        # Only regime_mismatch: no loss in the middle week.
        [(20 * DAY, -10.0, "RISK_OFF"), (6 * DAY, -10.0, "RISK_OFF"), (0 * DAY, -10.0, "RISK_OFF")],
    ],
    ids=["losing_periods", "regime_mismatch"],
)
def test_a_class_meeting_one_condition_is_spared(
    trades: list[tuple[timedelta, float, str | None]],
) -> None:
    _, emitted = feed(class_trades(trades), fleet=fleet_with(DECLARED))

    assert of_type(emitted, StrategyKilled) == []


def test_a_class_is_judged_on_its_members_latest_multipliers() -> None:
    # Losses in RISK_ON, the regime the class is meant for: only losing_periods holds until
    # a member's multiplier drops and the class's mean confidence falls under 0.8.
    trades = class_trades(
        [(20 * DAY, -10.0, "RISK_ON"), (13 * DAY, -10.0, "RISK_ON"), (0 * DAY, -10.0, "RISK_ON")]
    )
    fleet = fleet_with(DECLARED)
    members = [assessed(name, T0, mult=1.0, strategy_class="momentum") for name in ("a", "b")]
    confident, _ = feed([*members, *trades[:2]], fleet=fleet)
    doubting, _ = feed(
        [assessed("b", AT - HOUR, mult=0.1, strategy_class="momentum")], fleet=fleet, book=confident
    )

    # The last loss judged in both books, one after the other and again.
    _, spared = feed(trades[2:], fleet=fleet, book=confident)
    _, killed = feed(trades[2:], fleet=fleet, book=doubting)
    _, spared_again = feed(trades[2:], fleet=fleet, book=confident)

    assert of_type(spared, StrategyKilled) == of_type(spared_again, StrategyKilled) == []
    [kill] = of_type(killed, StrategyKilled)
    assert kill.reason == "2 of 4 conditions hold: losing_periods, low_confidence"
    confidence = kill.evidence["low_confidence"]["evidence"]
    assert confidence["agents"] == 2
    assert confidence["mean_confidence"] == pytest.approx(0.55)


def test_a_class_already_on_the_kill_list_is_not_killed_again() -> None:
    on_list = StrategyKilled.create(ts=T0, producer="t", target="momentum", source="operator")
    trades = class_trades(
        [(20 * DAY, -10.0, "RISK_OFF"), (13 * DAY, -10.0, "RISK_OFF"), (0 * DAY, -10.0, "RISK_OFF")]
    )

    _, emitted = feed(trades, fleet=fleet_with(DECLARED, on_list))

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
        policy_fact(
            T0 - DAY,
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

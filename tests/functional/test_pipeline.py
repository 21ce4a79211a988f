"""The processors wired as the topology wires them, without a broker (projections.pipeline):
each one decides from its own input only, so facts act in input order, redeliveries
change nothing, and the in-memory run agrees with the rules applied one by one."""

from __future__ import annotations

from datetime import timedelta

from projections.pipeline import InMemoryPipeline
from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.events import (
    AgentKilled,
    AllocationUpdated,
    OrderIntent,
    RegimeChanged,
    SignalEmitted,
    SignalReconciled,
)
from streams.core.processing import Routed
from tests.builders import policy_update
from tests.fleet_data import START, clean_run, fleet_events, interleave

DAY = timedelta(days=1)


def of_type(outputs: list[Routed], kind: type[Event]) -> list[Event]:
    return [o.event for o in outputs if isinstance(o.event, kind)]


def test_a_regime_change_reallocates_under_the_new_cap_at_once() -> None:
    prices, others = fleet_events(seed=5, days=10)
    stream = interleave(prices, others)
    pipeline = InMemoryPipeline()
    opening = RegimeChanged.create(ts=START - DAY, producer="test", regime="RISK_ON")
    pipeline.feed(
        [
            policy_update(START - DAY, max_drawdown_bps=1e9, strategy_conditions_to_kill=5),
            opening,
            *stream,
        ]
    )
    before = of_type(pipeline.emitted, AllocationUpdated)[-1]
    assert isinstance(before, AllocationUpdated) and before.regime == "RISK_ON"
    assert sum(before.weights.values()) > 0.99

    switch = RegimeChanged.create(ts=stream[-1].ts, producer="test", regime="RISK_OFF")
    after = of_type(pipeline.feed([switch]), AllocationUpdated)
    assert len(after) == 1 and isinstance(after[0], AllocationUpdated)
    assert after[0].regime == "RISK_OFF"
    for agent, weight in after[0].weights.items():  # scaled by the cap, not renormalised
        assert abs(weight - before.weights[agent] * 0.20) < 1e-12


def test_every_record_twice_emits_the_same_events() -> None:
    prices, others = fleet_events(seed=9, days=8)
    stream = [
        policy_update(START - DAY, max_drawdown_bps=1e9, strategy_conditions_to_kill=5),
        *interleave(prices, others),
    ]
    once = InMemoryPipeline().feed(stream)
    twice = InMemoryPipeline().feed([e for e in stream for _ in range(2)])
    as_bytes = {str(o.event.event_id): encode_event(o.event) for o in once}
    assert {str(o.event.event_id): encode_event(o.event) for o in twice} == as_bytes
    assert len(twice) == len(once)  # nothing emitted twice either


def test_reconciliations_and_multipliers_equal_the_rules_applied_one_by_one() -> None:
    prices, others = fleet_events(seed=3, days=9)
    stream = interleave(prices, others)
    outputs = InMemoryPipeline().feed(stream)
    reference = clean_run(stream)
    reconciled = of_type(outputs, SignalReconciled)
    assert reconciled
    by_agent = {a: s.confidence.mult for a, s in reference.agents.items()}
    confidences = [o.event for o in outputs if o.topic == "confidence"]
    last = {e.agent: e.mult for e in confidences}  # type: ignore[attr-defined]
    assert last == {a: m for a, m in by_agent.items() if a in last}
    assert set(last) == {a for a, s in reference.agents.items() if s.confidence.seen_ids}


def test_an_auto_kill_blocks_the_agents_later_orders() -> None:
    prices, others = fleet_events(seed=5, days=14)
    stream = interleave(prices, others)
    outputs = InMemoryPipeline().feed(
        [policy_update(START - DAY, max_drawdown_bps=1e9, strategy_conditions_to_kill=5), *stream]
    )
    kills = [k for k in of_type(outputs, AgentKilled) if isinstance(k, AgentKilled)]
    assert kills, "the losing agent was never killed"
    killed = kills[0]
    later = [
        o
        for o in of_type(outputs, OrderIntent)
        if isinstance(o, OrderIntent) and o.agent == killed.target and o.ts > killed.ts
    ]
    signals_after = [s for s in stream if isinstance(s, SignalEmitted) and s.agent == killed.target]
    assert later and signals_after
    assert all(not o.routed and o.target_usd == 0 for o in later)

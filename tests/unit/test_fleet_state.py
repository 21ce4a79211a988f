"""FleetState: policy and regime in force by event time, kills and the latest allocation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from schemas.envelope import Event, derived_event_id
from schemas.events import (
    AgentKilled,
    AgentRevived,
    AllocationUpdated,
    RegimeChanged,
    StrategyKilled,
)
from schemas.policy import Policy, Thresholds
from streams.core.fleet_state import (
    DEFAULT_POLICY_FILE,
    FleetState,
    apply_fleet_event,
    default_policy,
    policy_at,
    regime_at,
    weight_of,
)
from streams.core.kill_list import is_killed, kill_reason
from tests.builders import policy_update

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def fold(*events: Event, state: FleetState | None = None) -> FleetState:
    state = state or FleetState()
    for event in events:
        state = apply_fleet_event(state, event)
    return state


def regime_change(at: datetime, regime: str) -> RegimeChanged:
    return RegimeChanged.create(
        event_id=derived_event_id("test-regime", at, regime), ts=at, producer="t", regime=regime
    )


def allocation(at: datetime, weights: dict[str, float]) -> AllocationUpdated:
    return AllocationUpdated.create(
        ts=at, producer="t", weights=weights, regime_cap=1.0, cash_weight=0.0
    )


# Policy


def test_default_policy_is_the_shipped_file_and_the_model_defaults() -> None:
    shipped = json.loads(DEFAULT_POLICY_FILE.read_bytes())

    # Key by key, so a threshold added to one and not the other (or renamed) fails here.
    assert shipped == Policy().model_dump(mode="json")
    assert default_policy() == Policy()


def test_without_policy_updates_the_default_is_in_force() -> None:
    assert policy_at(FleetState(), T0) == Policy()


def test_policy_applies_from_its_event_time_on_even_if_folded_first() -> None:
    t1, t2 = T0 + HOUR, T0 + 2 * HOUR
    later, earlier = policy_update(t2, kill_pnl_bps=-300.0), policy_update(t1, kill_pnl_bps=-200.0)

    state = fold(later, earlier)  # the newer change arrives first

    assert policy_at(state, t1 - timedelta(seconds=1)).thresholds.kill_pnl_bps == -150.0
    assert policy_at(state, t1).thresholds.kill_pnl_bps == -200.0
    assert policy_at(state, t2 - timedelta(seconds=1)).thresholds.kill_pnl_bps == -200.0
    assert policy_at(state, t2).thresholds.kill_pnl_bps == -300.0
    assert policy_at(state, t2 + 24 * HOUR).thresholds.kill_pnl_bps == -300.0


def test_folding_order_does_not_change_the_policy_in_force() -> None:
    changes = [policy_update(T0 + k * HOUR, kill_pnl_bps=-100.0 - k) for k in range(4)]

    forward, backward = fold(*changes), fold(*reversed(changes))

    assert forward == backward
    for k in range(4):
        assert policy_at(backward, T0 + k * HOUR).thresholds.kill_pnl_bps == -100.0 - k


def test_policy_in_force_carries_every_field_of_the_update() -> None:
    update = policy_update(T0, kill_pnl_bps=-175.0)

    policy = policy_at(fold(update), T0)

    assert isinstance(policy, Policy)
    assert policy.version == 2
    assert policy.thresholds == Thresholds(kill_pnl_bps=-175.0)
    assert policy.regime_caps == Policy().regime_caps


def test_a_policy_update_folded_twice_is_kept_once() -> None:
    update = policy_update(T0, kill_pnl_bps=-175.0)

    once = fold(update)
    twice = fold(update, update)

    assert twice == once
    assert len(twice.policies) == 1


# Regime


def test_regime_before_any_change_is_unknown() -> None:
    assert regime_at(fold(regime_change(T0, "RISK_ON")), T0 - HOUR) is None


def test_regime_in_force_is_the_latest_change_at_or_before_event_time() -> None:
    state = fold(regime_change(T0 + 2 * HOUR, "RISK_OFF"), regime_change(T0, "RISK_ON"))

    assert regime_at(state, T0) == "RISK_ON"
    assert regime_at(state, T0 + HOUR) == "RISK_ON"
    assert regime_at(state, T0 + 2 * HOUR) == "RISK_OFF"
    assert regime_at(state, T0 + 9 * HOUR) == "RISK_OFF"


def test_a_regime_change_folded_twice_is_kept_once() -> None:
    change = regime_change(T0, "HIGH_VOL")

    state = fold(change, change)

    assert len(state.regimes) == 1
    assert regime_at(state, T0) == "HIGH_VOL"


# Allocation weights


def test_without_allocation_every_weight_is_zero() -> None:
    assert weight_of(FleetState(), "alpha") == 0.0


def test_weight_comes_from_the_allocation_and_absent_agents_get_zero() -> None:
    state = fold(allocation(T0, {"alpha": 0.3, "beta": 0.1}))

    assert weight_of(state, "alpha") == 0.3
    assert weight_of(state, "beta") == 0.1
    assert weight_of(state, "gamma") == 0.0


def test_the_last_allocation_in_log_order_replaces_the_previous_one() -> None:
    state = fold(allocation(T0, {"alpha": 0.3}), allocation(T0 + HOUR, {"beta": 0.2}))

    assert weight_of(state, "alpha") == 0.0
    assert weight_of(state, "beta") == 0.2


# Kill facts


def test_kill_and_revive_facts_are_folded_into_the_kill_list() -> None:
    killed = AgentKilled.create(ts=T0, producer="t", target="alpha", source="auto", reason="x")
    revived = AgentRevived.create(
        ts=T0 + HOUR, producer="t", target="alpha", source="operator", actor="ops"
    )
    class_killed = StrategyKilled.create(
        ts=T0, producer="t", target="momentum", source="auto", reason="2 of 4"
    )

    after_kill = fold(killed, class_killed)
    after_revive = fold(revived, state=after_kill)

    assert is_killed(after_kill.kills, "alpha", None, T0)
    assert is_killed(after_kill.kills, "beta", "momentum", T0)  # by its class
    assert not is_killed(after_revive.kills, "alpha", None, T0 + HOUR)
    assert kill_reason(after_revive.kills, "beta", "momentum", T0 + HOUR) is not None


def test_a_kill_fact_folded_twice_is_recorded_once() -> None:
    killed = AgentKilled.create(ts=T0, producer="t", target="alpha", source="auto")

    state = fold(killed, killed)

    assert len(state.kills.history) == 1
    assert state == fold(killed)


def test_events_that_are_not_fleet_facts_change_nothing() -> None:
    state = fold(regime_change(T0, "RISK_ON"))

    other = Event(type="something.else", ts=T0)

    assert apply_fleet_event(state, other) is state

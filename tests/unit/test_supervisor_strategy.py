"""Strategy-class kill: the four conditions and the 2-of-4 rule."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import StrategyKilled
from schemas.policy import Policy
from streams.core.day_window import day_of, put_day
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import KillList, apply_kill_fact
from streams.fleet.strategy import (
    ClassDay,
    ClassInputs,
    ClassTrade,
    evaluate_class,
    strategy_kill_events,
    summarise_class,
)

AT = datetime(2024, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
POLICY = Policy()

# Inputs for which no condition holds; each test switches some on.
CALM = ClassInputs(
    strategy_class="momentum",
    trades=40,
    days_traded=21,
    period_pnls_bps=(10.0, -5.0, -5.0),
    agent_mults={"a": 1.0, "b": 0.9},
    cost_usd=1.0,
    pnl_sum_bps=50.0,  # worth 5 USD at the 1 000 USD order budget
    pnl_by_regime={"RISK_ON": 80.0, "RISK_OFF": -30.0},
    loss_bps_by_regime={"RISK_ON": 40.0, "RISK_OFF": 30.0},
    losses_by_regime={"RISK_ON": 4, "RISK_OFF": 3},
    intended_regimes=("RISK_ON",),  # as policy `class_regimes` declares it
)
Change = Mapping[str, object]
LOSING: Change = {"period_pnls_bps": (-1.0, -5.0, -5.0)}
DECAYED: Change = {"agent_mults": {"a": 0.8, "b": 0.7}}
COSTLY: Change = {"cost_usd": 5.01}
MISMATCHED: Change = {"loss_bps_by_regime": {"RISK_ON": 20.0, "RISK_OFF": 30.0}}  # 60 % outside


def verdict_for(*changes: Mapping[str, object]) -> list[str]:
    update: dict[str, object] = {}
    for change in changes:
        update.update(change)
    verdict = evaluate_class(CALM.model_copy(update=update), POLICY)
    holding = [name for name, result in verdict.conditions.items() if result.holds]
    assert verdict.killed == (len(holding) >= 2)
    return holding


def test_calm_class_meets_no_condition() -> None:
    assert verdict_for() == []


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (LOSING, "losing_periods"),
        (DECAYED, "low_confidence"),
        (COSTLY, "cost_exceeds_value"),
        (MISMATCHED, "regime_mismatch"),
    ],
)
def test_exactly_one_condition_does_not_kill(change: Change, name: str) -> None:
    assert verdict_for(change) == [name]


def test_two_conditions_kill() -> None:
    assert verdict_for(LOSING, COSTLY) == ["losing_periods", "cost_exceeds_value"]
    verdict = evaluate_class(CALM.model_copy(update={**DECAYED, **MISMATCHED}), POLICY)
    assert verdict.killed
    assert verdict.reason() == "2 of 4 conditions hold: low_confidence, regime_mismatch"


def test_condition_edges() -> None:
    assert verdict_for({"cost_usd": 5.0}) == []  # equal to the value is not more
    assert verdict_for({"agent_mults": {"a": 0.8}}) == []  # mean exactly 0.8 is not below
    assert verdict_for({"period_pnls_bps": (-1.0, -1.0, 0.0)}) == []  # a flat period breaks it
    assert verdict_for({"period_pnls_bps": (-1.0, -1.0)}) == []  # too young
    assert verdict_for({"agent_mults": {}}) == []  # no agents, no mean
    assert verdict_for({"pnl_sum_bps": -10.0, "cost_usd": 0.01}) == ["cost_exceeds_value"]


def test_mismatch_needs_repeated_losses() -> None:
    once = {**MISMATCHED, "losses_by_regime": {"RISK_ON": 4, "RISK_OFF": 1}}
    assert verdict_for(once) == []


def test_the_declared_regimes_decide_what_is_outside() -> None:
    # Meant for RISK_OFF only: the 40 bps lost in RISK_ON are 57 % of 70, below 60 %.
    assert verdict_for({"intended_regimes": ("RISK_OFF",)}) == []
    assert verdict_for({"intended_regimes": ("HIGH_VOL",)}) == ["regime_mismatch"]


def test_without_declared_regimes_the_mismatch_cannot_hold_and_says_so() -> None:
    # Every loss outside RISK_ON, but nothing declared: no regime is outside.
    undeclared = CALM.model_copy(update={**MISMATCHED, "intended_regimes": ()})
    result = evaluate_class(undeclared, POLICY).conditions["regime_mismatch"]
    assert not result.holds
    assert result.evidence["note"] == "no intended regimes declared for class momentum"


def test_losses_in_an_unknown_regime_are_not_outside() -> None:
    # 50 of 70 bps lost where the regime was not known: neither meant for nor outside.
    unknown = {
        "loss_bps_by_regime": {"RISK_ON": 20.0, "UNKNOWN": 50.0},
        "losses_by_regime": {"RISK_ON": 2, "UNKNOWN": 5},
    }
    assert verdict_for(unknown) == []
    known = {
        "loss_bps_by_regime": {"RISK_ON": 20.0, "RISK_OFF": 50.0},
        "losses_by_regime": {"RISK_ON": 2, "RISK_OFF": 5},
    }
    assert verdict_for(known) == ["regime_mismatch"]


def class_days(trades: list[ClassTrade]) -> dict[str, ClassDay]:
    days: dict[str, ClassDay] = {}
    for item in trades:
        day = day_of(item.exit_ts)
        old = days.get(day)
        days = put_day(days, day, ClassDay.of((item,)) if old is None else old.with_fact(item))
    return days


def trade(exit_ts: datetime, pnl_bps: float, regime: str | None = None) -> ClassTrade:
    signal_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{exit_ts.isoformat()}/{pnl_bps}")
    return ClassTrade(signal_id=signal_id, exit_ts=exit_ts, pnl_bps=pnl_bps, regime=regime)


def test_summarise_buckets_trades_into_periods() -> None:
    # Period k (0 the newest) is (AT - (k + 1) weeks, AT - k weeks]; the window is the
    # 30 days up to AT.
    trades = [
        trade(AT, -1.0, "RISK_ON"),  # newest
        trade(AT - WEEK + timedelta(seconds=1), -2.0, "RISK_ON"),
        trade(AT - WEEK, -4.0),  # the edge belongs to the middle one
        trade(AT - 2 * WEEK, -8.0, "RISK_OFF"),  # oldest
        trade(AT - 3 * WEEK, 20.0, "RISK_OFF"),  # before the periods, in the window
        trade(AT + timedelta(seconds=1), 100.0, "RISK_ON"),  # after AT: not yet
        trade(AT - 5 * WEEK, -50.0, "RISK_ON"),  # before the window
    ]
    inputs = summarise_class(
        "momentum", class_days(trades), {"b": 0.9, "a": 1.0}, 2.0, AT, POLICY, ("RISK_ON",)
    )
    assert inputs.period_pnls_bps == (-8.0, -4.0, -3.0)
    assert inputs.pnl_sum_bps == pytest.approx(5.0)
    assert inputs.pnl_by_regime == {"RISK_OFF": 12.0, "RISK_ON": -3.0, "UNKNOWN": -4.0}
    assert inputs.loss_bps_by_regime == {"RISK_OFF": 8.0, "RISK_ON": 3.0, "UNKNOWN": 4.0}
    assert inputs.losses_by_regime == {"RISK_OFF": 1, "RISK_ON": 2, "UNKNOWN": 1}
    assert list(inputs.agent_mults) == ["a", "b"]
    assert inputs.intended_regimes == ("RISK_ON",)
    assert evaluate_class(inputs, POLICY).conditions["losing_periods"].holds


def test_kill_event_carries_the_evidence() -> None:
    verdict = evaluate_class(CALM.model_copy(update={**LOSING, **COSTLY}), POLICY)
    [event] = strategy_kill_events(verdict, KillList(), AT, "cause")
    assert isinstance(event, StrategyKilled)
    assert (event.target, event.source) == ("momentum", "auto")
    assert event.reason == "2 of 4 conditions hold: losing_periods, cost_exceeds_value"
    assert event.evidence["cost_exceeds_value"] == {
        "holds": True,
        "evidence": {"cost_usd": 5.01, "value_usd": 5.0, "pnl_sum_bps": 50.0},
    }
    assert strategy_kill_events(verdict, KillList(), AT, "cause") == [event]


def test_no_event_when_spared_or_already_killed() -> None:
    spared = evaluate_class(CALM, POLICY)
    assert strategy_kill_events(spared, KillList(), AT, "c") == []
    killed = evaluate_class(CALM.model_copy(update={**LOSING, **COSTLY}), POLICY)
    on_list = apply_kill_fact(
        KillList(),
        kill_fact(StrategyKilled, target="momentum", source="operator", at=AT, causes=("o",)),
    )
    assert strategy_kill_events(killed, on_list, AT, "c") == []


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        ({"trades": 9}, "not enough evidence: 9 of 10 trades"),
        ({"days_traded": 6}, "not enough evidence: traded 6 of 7 days"),
    ],
)
def test_a_class_is_not_killed_before_the_evidence(evidence: Change, reason: str) -> None:
    inputs = CALM.model_copy(update={**DECAYED, **COSTLY, **evidence})
    verdict = evaluate_class(inputs, POLICY)
    assert not verdict.killed and verdict.not_enough_evidence == reason
    exactly = evaluate_class(inputs.model_copy(update={"trades": 10, "days_traded": 7}), POLICY)
    assert exactly.killed and exactly.not_enough_evidence is None

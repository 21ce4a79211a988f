"""Retirement score, promotion gate, decision order and decision events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import decode_event, encode_event
from schemas.envelope import derived_event_id
from schemas.events import AgentKilled, Decision, DecisionMade
from schemas.policy import Policy, Thresholds
from schemas.stats import AgentStats
from streams.agents.decide import (
    DecisionOutcome,
    decide,
    decision_events,
    promotion_gate,
    retirement,
)

POLICY = Policy()
AT = datetime(2024, 3, 1, 12, tzinfo=UTC)
CAUSE = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


def good(**changes: object) -> AgentStats:
    """Stats that pass every promotion gate, with `changes` applied."""
    fields: dict[str, object] = {
        "trades": 20,
        "runs": 20,
        "pnl_sum_bps": 200.0,
        "hit_rate": 0.6,
        "error_rate": 0.0,
        "avg_latency_ms": 500.0,
        "cost_usd": 1.0,
    }
    return AgentStats.model_validate({**fields, **changes})


# --- retirement score ---------------------------------------------------------------------


def test_no_trades_scores_zero_and_keeps() -> None:
    assert retirement(AgentStats(), POLICY) == (0, "KEEP")


@pytest.mark.parametrize(
    ("stats", "score"),
    [
        (AgentStats(trades=9, pnl_sum_bps=-1.0), 0),  # too few trades for +40
        (AgentStats(trades=10, pnl_sum_bps=-1.0), 40),
        (AgentStats(trades=10, pnl_sum_bps=0.0), 0),  # flat is not losing
        (AgentStats(trades=10, pnl_sum_bps=-150.0), 40),  # exactly -150 is not < -150
        (AgentStats(trades=10, pnl_sum_bps=-150.5), 70),
        (AgentStats(trades=1, pnl_sum_bps=-151.0), 30),
        (AgentStats(runs=10, error_rate=0.10), 0),  # exactly 0.10 is not > 0.10
        (AgentStats(runs=10, error_rate=0.11), 20),
        (AgentStats(cost_usd=5.0), 0),  # exactly 5.0 is not > 5.0
        (AgentStats(cost_usd=5.01, pnl_sum_bps=0.0), 10),  # pnl <= 0 includes 0
        (AgentStats(cost_usd=5.01, pnl_sum_bps=0.1), 0),
        (AgentStats(trades=10, pnl_sum_bps=-200.0, error_rate=0.5, cost_usd=9.0), 100),
    ],
)
def test_retirement_components(stats: AgentStats, score: int) -> None:
    assert retirement(stats, POLICY)[0] == score


@pytest.mark.parametrize(
    ("stats", "label"),
    [
        # 40 + 30 + 10 = 80 exactly: RETIRE.
        (AgentStats(trades=10, pnl_sum_bps=-151.0, cost_usd=6.0), "RETIRE"),
        (AgentStats(trades=10, pnl_sum_bps=-151.0), "WATCH"),  # 70
        (AgentStats(trades=10, pnl_sum_bps=-1.0, error_rate=0.2), "WATCH"),  # 60
        (AgentStats(trades=10, pnl_sum_bps=-1.0, cost_usd=6.0), "KEEP"),  # 50
    ],
)
def test_retirement_labels_at_default_thresholds(stats: AgentStats, label: str) -> None:
    assert retirement(stats, POLICY)[1] == label


def test_score_exactly_at_watch_threshold_is_watch() -> None:
    # Default points never sum to 55, so move the threshold onto a reachable score.
    stats = AgentStats(trades=10, pnl_sum_bps=-1.0, cost_usd=6.0)  # 50
    assert retirement(stats, Policy(thresholds=Thresholds(watch_label_at=50)))[1] == "WATCH"
    assert retirement(stats, Policy(thresholds=Thresholds(watch_label_at=51)))[1] == "KEEP"


@given(
    trades=st.integers(0, 100),
    pnl=st.floats(-1000, 1000),
    error_rate=st.none() | st.floats(0, 1),
    cost=st.floats(0, 50),
)
def test_score_is_bounded_and_label_follows_it(
    trades: int, pnl: float, error_rate: float | None, cost: float
) -> None:
    stats = AgentStats(trades=trades, pnl_sum_bps=pnl, error_rate=error_rate, cost_usd=cost)
    score, label = retirement(stats, POLICY)
    assert 0 <= score <= 100 and score % 10 == 0
    expected = "RETIRE" if score >= 80 else "WATCH" if score >= 55 else "KEEP"
    assert label == expected


# --- promotion gate -----------------------------------------------------------------------


def test_gate_passes_at_exact_thresholds() -> None:
    stats = good(pnl_sum_bps=150.0, hit_rate=0.55, error_rate=0.0, avg_latency_ms=900.0)
    assert promotion_gate(stats, 0.8, False, POLICY) == []


@pytest.mark.parametrize(
    ("stats", "mult", "killed", "reason"),
    [
        (good(pnl_sum_bps=149.9), 1.0, False, "pnl_sum 149.9 bps < 150.0 bps"),
        (good(hit_rate=0.549), 1.0, False, "hit_rate 0.549 < 0.550"),
        (good(hit_rate=None), 1.0, False, "hit_rate unknown (no trades)"),
        (good(error_rate=0.01), 1.0, False, "error_rate 0.010 > 0.000"),
        (good(error_rate=None), 1.0, False, "error_rate unknown (no runs)"),
        (good(avg_latency_ms=901.0), 1.0, False, "avg latency 901 ms > 900 ms"),
        (good(), 0.79, False, "confidence multiplier 0.790 < 0.800 (in decay)"),
        (good(), 1.0, True, "on the kill list"),
    ],
)
def test_each_failed_gate_gives_a_readable_reason(
    stats: AgentStats, mult: float, killed: bool, reason: str
) -> None:
    assert promotion_gate(stats, mult, killed, POLICY) == [reason]


def test_unknown_latency_passes_the_gate() -> None:
    assert promotion_gate(good(avg_latency_ms=None), 1.0, False, POLICY) == []


def test_no_trades_fails_every_gate_that_needs_data() -> None:
    reasons = promotion_gate(AgentStats(), 1.0, False, POLICY)
    assert len(reasons) == 3  # pnl, hit rate, error rate; latency unknown passes


# --- decision order -----------------------------------------------------------------------


def test_hold_explains_which_gates_failed() -> None:
    outcome = decide("a", good(pnl_sum_bps=10.0), 1.0, False, POLICY)
    assert outcome.decision == Decision.HOLD
    assert outcome.reasons == ("promotion gate failed: pnl_sum 10.0 bps < 150.0 bps",)


def test_no_trades_holds() -> None:
    outcome = decide("a", AgentStats(), 1.0, False, POLICY)
    assert (outcome.decision, outcome.retirement_score, outcome.retirement_label) == (
        Decision.HOLD,
        0,
        "KEEP",
    )


def test_promote_when_the_gate_passes() -> None:
    outcome = decide("a", good(pnl_sum_bps=150.0, hit_rate=0.55), 0.8, False, POLICY)
    assert outcome.decision == Decision.PROMOTE
    assert outcome.reasons[0].startswith("promotion gate passed")


@pytest.mark.parametrize(
    ("stats", "decision"),
    [
        (AgentStats(trades=3, pnl_sum_bps=-150.0), Decision.HOLD),  # exactly -150 is not KILL
        (AgentStats(trades=3, pnl_sum_bps=-150.1), Decision.KILL),
        (good(error_rate=0.20), Decision.HOLD),  # exactly 0.20 is not KILL
        (good(error_rate=0.21), Decision.KILL),
        (good(error_rate=None, pnl_sum_bps=-10.0), Decision.HOLD),  # unknown never kills
    ],
)
def test_kill_thresholds(stats: AgentStats, decision: Decision) -> None:
    assert decide("a", stats, 1.0, False, POLICY).decision == decision


def test_kill_reasons_name_the_numbers() -> None:
    outcome = decide("a", AgentStats(trades=3, pnl_sum_bps=-160.0), 1.0, False, POLICY)
    assert outcome.reasons == ("pnl_sum -160.0 bps < -150.0 bps",)


def test_retire_overrides_kill() -> None:
    stats = AgentStats(trades=10, pnl_sum_bps=-200.0, cost_usd=6.0)  # KILL and score 80
    outcome = decide("a", stats, 1.0, False, POLICY)
    assert outcome.decision == Decision.RETIRE
    assert outcome.reasons[0] == "retirement score 80 >= 80"
    assert len(outcome.reasons) == 4  # the headline and its three components


def test_killed_overrides_everything() -> None:
    stats = AgentStats(trades=10, pnl_sum_bps=-200.0, cost_usd=6.0)
    outcome = decide("a", stats, 1.0, True, POLICY)
    assert outcome.decision == Decision.KILLED
    assert outcome.reasons == ("on the kill list",)
    assert outcome.retirement_label == "RETIRE"  # still reported for the audit trail


# --- events -------------------------------------------------------------------------------


def outcome_of(decision: Decision) -> DecisionOutcome:
    return DecisionOutcome(
        agent="a",
        decision=decision,
        reasons=("why",),
        retirement_score=0,
        retirement_label="KEEP",
    )


def test_unchanged_decision_emits_nothing() -> None:
    assert decision_events(Decision.HOLD, outcome_of(Decision.HOLD), good(), AT, CAUSE) == []


def test_first_decision_is_a_change_from_nothing() -> None:
    [made] = decision_events(None, outcome_of(Decision.HOLD), good(), AT, CAUSE)
    assert isinstance(made, DecisionMade)
    assert made.previous is None and made.decision == Decision.HOLD
    assert made.event_id == derived_event_id("decision", "a", CAUSE)
    assert made.stats["pnl_sum_bps"] == 200.0


def test_promotion_emits_no_kill() -> None:
    events = decision_events(Decision.HOLD, outcome_of(Decision.PROMOTE), good(), AT, CAUSE)
    assert [type(event) for event in events] == [DecisionMade]


@pytest.mark.parametrize("decision", [Decision.KILL, Decision.RETIRE])
def test_kill_and_retire_put_the_agent_on_the_kill_list(decision: Decision) -> None:
    made, killed = decision_events(Decision.HOLD, outcome_of(decision), good(), AT, CAUSE)
    assert isinstance(killed, AgentKilled)
    assert (killed.target, killed.source, killed.cause_id) == ("a", "auto", made.event_id)
    assert killed.reason == f"{decision}: why"


def test_events_are_deterministic_and_survive_the_wire() -> None:
    first = decision_events(None, outcome_of(Decision.KILL), good(), AT, CAUSE)
    again = decision_events(None, outcome_of(Decision.KILL), good(), AT, CAUSE)
    assert first == again
    assert [decode_event(encode_event(event)) for event in first] == first

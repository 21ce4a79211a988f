"""Retirement score, promotion gate, evidence minimums, the significance gate, decision order
and decision events."""

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
    assert promotion_gate(AgentStats(), 1.0, False, POLICY) == [
        "not enough evidence: 0 of 20 trades",
        "pnl_sum 0.0 bps < 150.0 bps",
        "hit_rate unknown (no trades)",
        "error_rate unknown (no runs)",
    ]  # latency unknown passes


@pytest.mark.parametrize(("trades", "passes"), [(19, False), (20, True)])
def test_the_gate_needs_the_minimum_trades_and_passes_exactly_at_it(
    trades: int, passes: bool
) -> None:
    failed = promotion_gate(good(trades=trades), 1.0, False, POLICY)
    assert failed == ([] if passes else [f"not enough evidence: {trades} of 20 trades"])


def test_a_gate_without_an_evidence_minimum_passes_on_one_trade() -> None:
    no_minimum = Policy(thresholds=Thresholds(promote_min_trades=0))
    assert promotion_gate(good(trades=1), 1.0, False, no_minimum) == []


# --- decision order -----------------------------------------------------------------------


def test_hold_explains_which_gates_failed() -> None:
    outcome = decide("a", good(pnl_sum_bps=10.0), 1.0, None, POLICY)
    assert outcome.decision == Decision.HOLD
    assert outcome.reasons == ("promotion gate failed: pnl_sum 10.0 bps < 150.0 bps",)


def test_no_trades_holds() -> None:
    outcome = decide("a", AgentStats(), 1.0, None, POLICY)
    assert (outcome.decision, outcome.retirement_score, outcome.retirement_label) == (
        Decision.HOLD,
        0,
        "KEEP",
    )


def test_promote_when_the_gate_passes() -> None:
    outcome = decide("a", good(pnl_sum_bps=150.0, hit_rate=0.55), 0.8, None, POLICY)
    assert outcome.decision == Decision.PROMOTE
    assert outcome.reasons[0].startswith("promotion gate passed")


@pytest.mark.parametrize(
    ("stats", "decision"),
    [
        (AgentStats(trades=10, pnl_sum_bps=-150.0), Decision.HOLD),  # exactly -150 is not KILL
        (AgentStats(trades=10, pnl_sum_bps=-150.1), Decision.KILL),
        (good(error_rate=0.20), Decision.HOLD),  # exactly 0.20 is not KILL
        (good(error_rate=0.21), Decision.KILL),
        (good(error_rate=None, pnl_sum_bps=-10.0), Decision.HOLD),  # unknown never kills
    ],
)
def test_kill_thresholds(stats: AgentStats, decision: Decision) -> None:
    assert decide("a", stats, 1.0, None, POLICY).decision == decision


def test_kill_reasons_name_the_numbers() -> None:
    outcome = decide("a", AgentStats(trades=10, pnl_sum_bps=-160.0), 1.0, None, POLICY)
    assert outcome.reasons == ("pnl_sum -160.0 bps < -150.0 bps",)


# --- evidence before verdicts -------------------------------------------------------------


@pytest.mark.parametrize(("trades", "decision"), [(9, Decision.HOLD), (10, Decision.KILL)])
def test_the_pnl_kill_needs_the_minimum_trades_and_applies_exactly_at_it(
    trades: int, decision: Decision
) -> None:
    outcome = decide("a", AgentStats(trades=trades, pnl_sum_bps=-400.0), 1.0, None, POLICY)
    assert outcome.decision == decision


@pytest.mark.parametrize(("runs", "decision"), [(9, Decision.HOLD), (10, Decision.KILL)])
def test_the_error_rate_kill_needs_the_minimum_runs_and_applies_exactly_at_it(
    runs: int, decision: Decision
) -> None:
    stats = AgentStats(runs=runs, errors=runs, error_rate=1.0)
    assert decide("a", stats, 1.0, None, POLICY).decision == decision


def test_one_failed_run_or_one_bad_trade_is_not_enough_evidence_to_kill() -> None:
    first_run = decide("a", AgentStats(runs=1, errors=1, error_rate=1.0), 1.0, None, POLICY)
    first_trade = decide("a", AgentStats(trades=1, pnl_sum_bps=-400.0), 1.0, None, POLICY)

    assert (first_run.decision, first_trade.decision) == (Decision.HOLD, Decision.HOLD)
    assert first_run.reasons[0] == (
        "not enough evidence: 1 of 10 runs to KILL on error_rate 1.000 > 0.200"
    )
    assert first_trade.reasons[0] == (
        "not enough evidence: 1 of 10 trades to KILL on pnl_sum -400.0 bps < -150.0 bps"
    )
    assert "promotion gate failed: not enough evidence: 1 of 20 trades" in first_trade.reasons


def test_each_condition_needs_its_own_evidence() -> None:
    # Ten runs prove the error rate; three trades do not prove the loss.
    stats = AgentStats(trades=3, pnl_sum_bps=-400.0, runs=10, errors=3, error_rate=0.3)

    outcome = decide("a", stats, 1.0, None, POLICY)

    assert (outcome.decision, outcome.reasons) == (Decision.KILL, ("error_rate 0.300 > 0.200",))


def test_minimums_of_zero_judge_on_the_first_trade() -> None:
    literal = Policy(thresholds=Thresholds(kill_min_trades=0, kill_min_runs=0))
    one_loss = AgentStats(trades=1, pnl_sum_bps=-151.0)
    assert decide("a", one_loss, 1.0, None, literal).decision == Decision.KILL


def test_promotion_needs_the_minimum_trades() -> None:
    for trades, decision in ((19, Decision.HOLD), (20, Decision.PROMOTE)):
        outcome = decide("a", good(trades=trades), 1.0, None, POLICY)
        assert outcome.decision == decision
    held = decide("a", good(trades=12), 1.0, None, POLICY)
    assert held.reasons == ("promotion gate failed: not enough evidence: 12 of 20 trades",)


def test_retire_cannot_fire_before_the_kill_minimum_of_trades_with_default_points() -> None:
    # RETIRE (>= 80) needs the +40 (>= 10 trades and losing) under the default points:
    # without it the score is at most 30 + 20 + 10 = 60.
    young = AgentStats(trades=9, pnl_sum_bps=-900.0, runs=1, errors=1, error_rate=1.0, cost_usd=50)
    outcome = decide("a", young, 1.0, None, POLICY)
    assert (outcome.decision, outcome.retirement_score) == (Decision.HOLD, 60)


# --- the significance gate ----------------------------------------------------------------

GATED = Policy(thresholds=Thresholds(significance_gate=True))


def test_with_the_gate_off_significance_decides_nothing() -> None:
    assert decide("a", good(dsr=0.1, psr=0.01), 1.0, None, POLICY).decision == Decision.PROMOTE
    unproven = AgentStats(trades=10, pnl_sum_bps=-10.0, psr=0.0)
    assert decide("a", unproven, 1.0, None, POLICY).decision == Decision.HOLD


@pytest.mark.parametrize(
    ("dsr", "reason"),
    [
        (0.41, "DSR 0.41 < 0.95"),
        (0.9499, "DSR 0.9499 < 0.95"),
        (None, "DSR unknown (fewer than 2 trades, or no variance)"),
    ],
)
def test_the_gate_on_adds_dsr_to_the_promotion_gate(dsr: float | None, reason: str) -> None:
    outcome = decide("a", good(dsr=dsr, psr=0.99), 1.0, None, GATED)
    assert (outcome.decision, outcome.reasons) == (
        Decision.HOLD,
        (f"promotion gate failed: {reason}",),
    )


def test_the_gate_on_promotes_at_exactly_the_minimum_dsr() -> None:
    outcome = decide("a", good(dsr=0.95, psr=0.99), 1.0, None, GATED)
    assert outcome.decision == Decision.PROMOTE
    assert outcome.reasons[0].endswith("DSR 0.95")


@pytest.mark.parametrize(
    ("psr", "trades", "decision"),
    [
        (0.05, 10, Decision.KILL),  # exactly at the line: PSR <= 0.05
        (0.0501, 10, Decision.HOLD),
        (0.01, 9, Decision.HOLD),  # below the kill minimum of trades
        (None, 50, Decision.HOLD),  # unknown never kills
    ],
)
def test_the_gate_on_kills_on_a_low_psr_with_enough_trades(
    psr: float | None, trades: int, decision: Decision
) -> None:
    # A small loss that no other rule kills on.
    stats = AgentStats(trades=trades, pnl_sum_bps=-20.0, psr=psr)
    outcome = decide("a", stats, 1.0, None, GATED)
    assert outcome.decision == decision
    if decision == Decision.KILL:
        assert outcome.reasons == ("PSR(0) 0.05 <= 0.05",)
    if trades == 9:
        assert outcome.reasons[0] == (
            "not enough evidence: 9 of 10 trades to KILL on PSR(0) 0.01 <= 0.05"
        )


def test_retire_overrides_kill() -> None:
    stats = AgentStats(trades=10, pnl_sum_bps=-200.0, cost_usd=6.0)  # KILL and score 80
    outcome = decide("a", stats, 1.0, None, POLICY)
    assert outcome.decision == Decision.RETIRE
    assert outcome.reasons[0] == "retirement score 80 >= 80"
    assert len(outcome.reasons) == 4  # the headline and its three components


def test_killed_overrides_everything_and_says_which_kill() -> None:
    stats = AgentStats(trades=10, pnl_sum_bps=-200.0, cost_usd=6.0)
    kill = "agent a killed by ops (operator): bad fills"
    outcome = decide("a", stats, 1.0, kill, POLICY)
    assert outcome.decision == Decision.KILLED
    assert outcome.reasons == (f"on the kill list: {kill}",)
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

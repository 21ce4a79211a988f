"""Per-agent decision rules (SPEC section 6): retirement score, promotion gate, decision.

Unknown statistics (`None`: no trades, no runs, no significance) never pass a gate
that needs them, but never trigger KILL either: an agent is not punished for
missing data. Nor for too little of it: a KILL condition, or the promotion gate,
applies only once the window holds the policy's minimum evidence (trades, runs);
below it the agent stays HOLD and its reasons say what is missing, so a fleet is
not judged on its first trades.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from schemas.envelope import Event, WireModel, derived_event_id
from schemas.events import AgentKilled, Decision, DecisionMade
from schemas.policy import Policy, Thresholds
from schemas.stats import AgentStats
from streams.core.kill_facts import PRODUCER, kill_fact

RetirementLabel = Literal["KEEP", "WATCH", "RETIRE"]

# Points of the retirement score; the thresholds that trigger them are in the policy.
RETIRE_POINTS_LOSING = 40
RETIRE_POINTS_DEEP_LOSS = 30
RETIRE_POINTS_ERRORS = 20
RETIRE_POINTS_COST = 10

# Decisions that take an agent out of the fleet and put it on the kill list.
AUTO_KILL_DECISIONS = frozenset({Decision.KILL, Decision.RETIRE})


class DecisionOutcome(WireModel):
    """What the rules decided for one agent and why; `reasons` explain `decision`."""

    agent: str
    decision: Decision
    reasons: tuple[str, ...]
    retirement_score: int
    retirement_label: RetirementLabel


def _retirement_points(stats: AgentStats, t: Thresholds) -> list[tuple[int, str]]:
    """List the score components that apply, each with the numbers that made it apply."""
    pnl = stats.pnl_sum_bps
    points: list[tuple[int, str]] = []
    if stats.trades >= t.retire_min_trades and pnl < 0:
        points.append(
            (
                RETIRE_POINTS_LOSING,
                f"{stats.trades} trades (>= {t.retire_min_trades}) and pnl_sum {pnl:.1f} bps < 0",
            )
        )
    if pnl < t.retire_pnl_bps:
        points.append(
            (RETIRE_POINTS_DEEP_LOSS, f"pnl_sum {pnl:.1f} bps < {t.retire_pnl_bps:.1f} bps")
        )
    if stats.error_rate is not None and stats.error_rate > t.retire_error_rate:
        points.append(
            (RETIRE_POINTS_ERRORS, f"error_rate {stats.error_rate:.3f} > {t.retire_error_rate:.3f}")
        )
    if stats.cost_usd > t.retire_cost_usd and pnl <= 0:
        points.append(
            (
                RETIRE_POINTS_COST,
                f"cost {stats.cost_usd:.2f} USD > {t.retire_cost_usd:.2f} USD "
                f"with pnl_sum {pnl:.1f} bps <= 0",
            )
        )
    return points


def _label(score: int, t: Thresholds) -> RetirementLabel:
    if score >= t.retire_label_at:
        return "RETIRE"
    if score >= t.watch_label_at:
        return "WATCH"
    return "KEEP"


def retirement(stats: AgentStats, policy: Policy) -> tuple[int, RetirementLabel]:
    """Return the retirement score (0-100) and its label KEEP / WATCH / RETIRE."""
    score = sum(points for points, _ in _retirement_points(stats, policy.thresholds))
    return score, _label(score, policy.thresholds)


def promotion_gate(
    stats: AgentStats, confidence_mult: float, killed: bool, policy: Policy
) -> list[str]:
    """Return one readable reason per failed gate; an empty list means the gate passes."""
    t = policy.thresholds
    failed: list[str] = []
    if stats.trades < t.promote_min_trades:
        failed.append(f"not enough evidence: {stats.trades} of {t.promote_min_trades} trades")
    if stats.pnl_sum_bps < t.promote_min_pnl_bps:
        failed.append(f"pnl_sum {stats.pnl_sum_bps:.1f} bps < {t.promote_min_pnl_bps:.1f} bps")
    if stats.hit_rate is None:
        failed.append("hit_rate unknown (no trades)")
    elif stats.hit_rate < t.promote_min_hit_rate:
        failed.append(f"hit_rate {stats.hit_rate:.3f} < {t.promote_min_hit_rate:.3f}")
    if stats.error_rate is None:
        failed.append("error_rate unknown (no runs)")
    elif stats.error_rate > t.promote_max_error_rate:
        failed.append(f"error_rate {stats.error_rate:.3f} > {t.promote_max_error_rate:.3f}")
    # SPEC: the latency gate applies "when known", so an unknown latency passes it.
    latency = stats.avg_latency_ms
    if latency is not None and latency > t.promote_max_avg_latency_ms:
        failed.append(f"avg latency {latency:.0f} ms > {t.promote_max_avg_latency_ms:.0f} ms")
    if confidence_mult < t.promote_min_confidence:
        failed.append(
            f"confidence multiplier {confidence_mult:.3f} < {t.promote_min_confidence:.3f} "
            "(in decay)"
        )
    if killed:
        failed.append("on the kill list")
    if t.significance_gate:
        if stats.dsr is None:
            failed.append("DSR unknown (fewer than 2 trades, or no variance)")
        elif stats.dsr < t.promote_min_dsr:
            failed.append(f"DSR {stats.dsr:.4g} < {t.promote_min_dsr:.4g}")
    return failed


def _kill_conditions(stats: AgentStats, t: Thresholds) -> tuple[list[str], list[str]]:
    """The KILL conditions that hold with enough evidence, and those that hold without it
    (each saying how much evidence there is, and how much it needs)."""
    holding: list[tuple[str, int, int, str]] = []  # (why, evidence, minimum, of what)
    pnl = stats.pnl_sum_bps
    if pnl < t.kill_pnl_bps:
        why = f"pnl_sum {pnl:.1f} bps < {t.kill_pnl_bps:.1f} bps"
        holding.append((why, stats.trades, t.kill_min_trades, "trades"))
    if stats.error_rate is not None and stats.error_rate > t.kill_error_rate:
        why = f"error_rate {stats.error_rate:.3f} > {t.kill_error_rate:.3f}"
        holding.append((why, stats.runs, t.kill_min_runs, "runs"))
    if t.significance_gate and stats.psr is not None and stats.psr <= t.kill_max_psr:
        why = f"PSR(0) {stats.psr:.4g} <= {t.kill_max_psr:.4g}"
        holding.append((why, stats.trades, t.kill_min_trades, "trades"))
    proven = [why for why, have, need, _ in holding if have >= need]
    unproven = [
        f"not enough evidence: {have} of {need} {unit} to KILL on {why}"
        for why, have, need, unit in holding
        if have < need
    ]
    return proven, unproven


def decide(
    agent: str, stats: AgentStats, confidence_mult: float, kill: str | None, policy: Policy
) -> DecisionOutcome:
    """Apply the SPEC rules in order, later ones overriding: HOLD, PROMOTE, KILL, RETIRE, KILLED.

    `kill` describes the kill that stops the agent now (its own or its class's, with
    who, why and until when), None when nothing does.
    """
    t = policy.thresholds
    points = _retirement_points(stats, t)
    score = sum(p for p, _ in points)
    label = _label(score, t)

    gate = promotion_gate(stats, confidence_mult, kill is not None, policy)
    proven, unproven = _kill_conditions(stats, t)
    decision = Decision.HOLD
    reasons = unproven + [f"promotion gate failed: {reason}" for reason in gate]
    if not gate:
        decision = Decision.PROMOTE
        passed = (
            f"promotion gate passed: {stats.trades} trades, pnl_sum {stats.pnl_sum_bps:.1f} bps, "
            f"hit_rate {stats.hit_rate or 0.0:.3f}, error_rate {stats.error_rate or 0.0:.3f}, "
            f"confidence multiplier {confidence_mult:.3f}"
        )
        if t.significance_gate:
            passed += f", DSR {stats.dsr or 0.0:.4g}"
        reasons = [passed]
    if proven:
        decision, reasons = Decision.KILL, proven
    if label == "RETIRE":
        decision = Decision.RETIRE
        reasons = [f"retirement score {score} >= {t.retire_label_at}"]
        reasons += [f"+{p}: {why}" for p, why in points]
    if kill is not None:
        decision, reasons = Decision.KILLED, [f"on the kill list: {kill}"]
    return DecisionOutcome(
        agent=agent,
        decision=decision,
        reasons=tuple(reasons),
        retirement_score=score,
        retirement_label=label,
    )


def decision_events(
    previous: Decision | None,
    outcome: DecisionOutcome,
    stats: AgentStats,
    at: datetime,
    cause_id: uuid.UUID | str,
) -> list[Event]:
    """Return the events a decision change emits: a DecisionMade, plus an auto kill.

    Nothing is emitted when the decision is unchanged; the first decision of an
    agent (`previous` None) is a change. Ids derive from the agent and
    `cause_id` (the event that triggered the evaluation), so a redelivery of
    that event produces the same ids.
    """
    if outcome.decision == previous:
        return []
    made = DecisionMade.create(
        event_id=derived_event_id("decision", outcome.agent, cause_id),
        ts=at,
        producer=PRODUCER,
        agent=outcome.agent,
        decision=outcome.decision,
        previous=previous,
        reasons=list(outcome.reasons),
        retirement_score=outcome.retirement_score,
        retirement_label=outcome.retirement_label,
        stats=stats.model_dump(mode="json"),
    )
    events: list[Event] = [made]
    if outcome.decision in AUTO_KILL_DECISIONS:
        events.append(
            kill_fact(
                AgentKilled,
                target=outcome.agent,
                source="auto",
                at=at,
                causes=(made.event_id,),
                reason=f"{outcome.decision}: " + "; ".join(outcome.reasons),
                cause_id=made.event_id,
            )
        )
    return events

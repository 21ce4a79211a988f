"""Capital allocation across agents (SPEC section 6): who gets weight, how much, and at what risk.

Weights come from the eligible agents' scores, normalised to 1, then scaled by
the regime cap so they sum to the cap; the rest is cash. They are never
re-normalised after the cap: that would undo it (the known trap).
"""

from __future__ import annotations

import math
import sys
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.envelope import WireModel, derived_event_id
from schemas.events import AllocationUpdated, Decision
from schemas.policy import Policy
from schemas.stats import BPS, AgentStats
from streams.core.kill_facts import PRODUCER
from streams.core.kill_list import KillList, kill_reason

EXCLUDED_DECISIONS = frozenset({Decision.KILL, Decision.RETIRE, Decision.KILLED})


class CapitalAtRisk(WireModel):
    """USD at risk per agent and for the portfolio, as the allocation implies."""

    nav_usd: float
    risk_budget_usd: float
    per_agent_usd: dict[str, float] = Field(default_factory=dict)
    at_risk_usd: float
    portfolio_cvar_usd: float
    # Where the CVaR figure comes from: the portfolio's CVaR 95, or the NAV fallback.
    cvar_basis: Literal["portfolio_cvar95", "nav_fraction"]


class AllocationResult(WireModel):
    """Capped weights (sum == regime_cap, or empty), cash, capital, and why others got none."""

    weights: dict[str, float] = Field(default_factory=dict)
    regime: str | None = None
    regime_cap: float
    cash_weight: float
    capital: CapitalAtRisk
    method: Literal["quality", "softmax"]
    excluded: dict[str, str] = Field(default_factory=dict)


def exclusion(
    agent: str,
    stats: AgentStats,
    decision: Decision | None,
    strategy_class: str | None,
    kill_list: KillList,
    policy: Policy,
    at: datetime,
) -> str | None:
    """Return why the agent gets no weight, or None when it is eligible.

    An unknown error rate (no runs recorded) excludes the agent: a gate that
    needs a statistic is never passed without it.
    """
    killed = kill_reason(kill_list, agent, strategy_class, at)
    if killed is not None:
        return killed
    if decision in EXCLUDED_DECISIONS:
        return f"decision {decision}"
    max_error_rate = policy.allocation.max_error_rate
    if stats.error_rate is None:
        return "error_rate unknown (no runs)"
    if stats.error_rate > max_error_rate:
        return f"error_rate {stats.error_rate:.3f} > {max_error_rate:.3f}"
    if stats.pnl_sum_bps <= 0:
        return f"pnl_sum {stats.pnl_sum_bps:.1f} bps <= 0"
    return None


def _quality(stats: AgentStats, mult: float) -> float | str:
    """pnl_sum x (0.5 + hit_rate) x confidence multiplier, or why there is none."""
    if stats.hit_rate is None:
        return "hit_rate unknown (no trades)"
    quality = stats.pnl_sum_bps * (0.5 + stats.hit_rate) * mult
    return quality if quality > 0 else f"quality {quality:.3f} <= 0 (multiplier {mult:.3f})"


def _softmax_logit(stats: AgentStats, mult: float, alpha: float) -> float | str:
    """alpha x multiplier / volatility, or why there is none.

    An agent without a positive std of trade PnL (fewer than two trades, or all
    equal) is excluded rather than given a stand-in volatility: with 1 bps it
    would take nearly all the weight from agents whose risk is measured.
    """
    std = stats.std_pnl_bps
    if std is None or std <= 0:
        return "volatility unknown (std_pnl_bps missing or 0)"
    # A vanishing std would make the logit infinite and inf - inf is NaN: clamp to finite.
    return max(-sys.float_info.max, min(sys.float_info.max, alpha * mult / std))


def _normalise(scores: Mapping[str, float]) -> dict[str, float]:
    total = math.fsum(scores.values())
    return {agent: score / total for agent, score in scores.items()}


def _softmax(logits: Mapping[str, float]) -> dict[str, float]:
    top = max(logits.values())  # shift by the max so exp never overflows
    return _normalise({agent: math.exp(logit - top) for agent, logit in logits.items()})


def _capital(
    weights: Mapping[str, float], portfolio_cvar_bps: float | None, policy: Policy
) -> CapitalAtRisk:
    capital = policy.capital
    budget = capital.nav_usd * capital.risk_budget_pct
    per_agent = {
        agent: budget
        * weight
        * capital.per_agent_cap_multiplier.get(agent, capital.default_cap_multiplier)
        for agent, weight in weights.items()
    }
    if portfolio_cvar_bps is None:
        cvar_usd = capital.unknown_cvar_nav_pct * capital.nav_usd
        basis: Literal["portfolio_cvar95", "nav_fraction"] = "nav_fraction"
    else:
        # CVaR is a loss in bps of the deployed capital; only the deployed share is exposed.
        deployed = math.fsum(weights.values())
        cvar_usd = abs(portfolio_cvar_bps) / BPS * capital.nav_usd * deployed
        basis = "portfolio_cvar95"
    return CapitalAtRisk(
        nav_usd=capital.nav_usd,
        risk_budget_usd=budget,
        per_agent_usd=per_agent,
        at_risk_usd=math.fsum(per_agent.values()),
        portfolio_cvar_usd=cvar_usd,
        cvar_basis=basis,
    )


def allocate(
    stats_by_agent: Mapping[str, AgentStats],
    mult_by_agent: Mapping[str, float],
    decisions: Mapping[str, Decision],
    kill_list: KillList,
    strategy_of_agent: Mapping[str, str | None],
    regime: str | None,
    policy: Policy,
    at: datetime,
    portfolio_cvar_bps: float | None = None,
) -> AllocationResult:
    """Allocate weights to the eligible agents, capped by the regime, with capital at risk.

    A missing multiplier is the policy's starting one; agents are visited in
    name order so the result (and its JSON) is the same on every replay.
    """
    method = policy.allocation.method
    scores: dict[str, float] = {}
    excluded: dict[str, str] = {}
    for agent in sorted(stats_by_agent):
        stats = stats_by_agent[agent]
        mult = mult_by_agent.get(agent, policy.confidence.start)
        reason = exclusion(
            agent, stats, decisions.get(agent), strategy_of_agent.get(agent), kill_list, policy, at
        )
        score: float | str
        if reason is not None:
            score = reason
        elif method == "softmax":
            score = _softmax_logit(stats, mult, policy.allocation.softmax_alpha)
        else:
            score = _quality(stats, mult)
        if isinstance(score, str):
            excluded[agent] = score
        else:
            scores[agent] = score

    cap = policy.regime_cap(regime)
    if not scores:
        unit: dict[str, float] = {}
    else:
        unit = _softmax(scores) if method == "softmax" else _normalise(scores)
    weights = {agent: weight * cap for agent, weight in unit.items()}
    return AllocationResult(
        weights=weights,
        regime=regime,
        regime_cap=cap,
        # Not 1 - sum(weights): that sum is the cap up to rounding, and cash should be exact.
        cash_weight=1.0 - cap if weights else 1.0,
        capital=_capital(weights, portfolio_cvar_bps, policy),
        method=method,
        excluded=excluded,
    )


def with_portfolio_cvar(
    result: AllocationResult, portfolio_cvar_bps: float | None, policy: Policy
) -> AllocationResult:
    """`result` with its capital at risk under the portfolio's CVaR: what `allocate` gives with
    that CVaR, since only the capital reads it, without weighing every agent again."""
    capital = _capital(result.weights, portfolio_cvar_bps, policy)
    return result.model_copy(update={"capital": capital})


def allocation_changed(
    previous: AllocationResult | AllocationUpdated | None,
    current: AllocationResult,
    tolerance: float = 1e-9,
) -> bool:
    """Tell the caller whether to emit: weights or the regime cap moved beyond `tolerance`."""
    if previous is None:
        return True
    if abs(previous.regime_cap - current.regime_cap) > tolerance:
        return True
    if previous.weights.keys() != current.weights.keys():
        return True
    return any(
        abs(previous.weights[agent] - weight) > tolerance
        for agent, weight in current.weights.items()
    )


def allocation_event(
    result: AllocationResult,
    at: datetime,
    cause_id: uuid.UUID | str,
    contributions: Mapping[str, float],
) -> AllocationUpdated:
    """Return the AllocationUpdated for `result`, reporting the agents' contributions; its id
    derives from the triggering event."""
    return AllocationUpdated.create(
        event_id=derived_event_id("allocation", cause_id),
        ts=at,
        producer=PRODUCER,
        weights=dict(result.weights),
        regime=result.regime,
        regime_cap=result.regime_cap,
        cash_weight=result.cash_weight,
        capital=result.capital.model_dump(mode="json"),
        contributions=dict(contributions),
    )

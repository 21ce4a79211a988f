"""Strategy-class kill: a class is killed when enough of four conditions hold over its agents.

The four conditions (SPEC section 6), each with the evidence it was judged on:

- `losing_periods`: PnL < 0 in each of the last N periods (N =
  `strategy_losing_periods`, each `strategy_period_days` long, ending at the
  evaluation time). A period without trades has PnL 0, which is not a loss, so
  a class younger than N periods cannot meet it.
- `low_confidence`: the mean confidence multiplier of its agents is below
  `strategy_min_mean_confidence` (a class without agents does not meet it).
- `cost_exceeds_value`: cost in USD exceeds the value delivered. Each signal is
  valued as if it put the per-order risk budget to work, so value in USD =
  max(0, pnl_sum_bps) / 10 000 x `order_risk_budget_usd`.
- `regime_mismatch`: losses are concentrated in regimes the class was not meant
  for: at least `MIN_MISMATCHED_LOSSES` losing trades there, carrying at least
  `strategy_mismatch_share` of the class's loss in bps. A trade's regime is the one
  in force at its signal's time (the signal's own, else the `regimes` log's); the
  regimes a class is meant for are declared in policy `class_regimes`. Without a
  declaration there is nothing to mismatch, so the condition cannot hold (and its
  evidence says so); a loss in an unknown regime is not counted as outside.

Evidence before verdicts, as for agents: a class is judged only once its window holds
`kill_min_trades` trades spread over at least one period (`strategy_period_days` from
its oldest trade in the window to now). A class of LLM agents two days old has cost
more than it earned and has decaying multipliers, and that says nothing yet.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import Field

from schemas.envelope import UtcDatetime, WireModel
from schemas.events import StrategyKilled
from schemas.policy import Policy
from schemas.stats import BPS
from streams.core.day_window import DayBucket, MergedDays
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import KillList

MIN_MISMATCHED_LOSSES = 2
# The regime label of trades whose regime is not known: neither meant for nor outside.
UNKNOWN_REGIME = "UNKNOWN"


class ClassTrade(WireModel):
    """One reconciled trade of an agent of the class."""

    signal_id: uuid.UUID
    exit_ts: UtcDatetime
    pnl_bps: float
    regime: str | None = None

    @property
    def at(self) -> datetime:
        return self.exit_ts

    def sort_key(self) -> tuple[datetime, uuid.UUID]:
        return (self.exit_ts, self.signal_id)


class ClassTotals(WireModel):
    """What the conditions sum over a class's trades: their count, PnL, and PnL, losses
    and their count by regime."""

    trades: int = 0
    pnl_sum_bps: float = 0.0
    pnl_by_regime: dict[str, float] = Field(default_factory=dict)
    loss_bps_by_regime: dict[str, float] = Field(default_factory=dict)  # sizes, >= 0
    losses_by_regime: dict[str, int] = Field(default_factory=dict)

    def plus(self, trades: Iterable[ClassTrade]) -> ClassTotals:
        pnl_sum = self.pnl_sum_bps
        pnl_by_regime = dict(self.pnl_by_regime)
        loss_bps = dict(self.loss_bps_by_regime)
        losses = dict(self.losses_by_regime)
        count = self.trades
        for trade in trades:
            count += 1
            pnl_sum += trade.pnl_bps
            regime = trade.regime or UNKNOWN_REGIME
            pnl_by_regime[regime] = pnl_by_regime.get(regime, 0.0) + trade.pnl_bps
            if trade.pnl_bps < 0:
                loss_bps[regime] = loss_bps.get(regime, 0.0) - trade.pnl_bps
                losses[regime] = losses.get(regime, 0) + 1
        return ClassTotals(
            trades=count,
            pnl_sum_bps=pnl_sum,
            pnl_by_regime=pnl_by_regime,
            loss_bps_by_regime=loss_bps,
            losses_by_regime=losses,
        )

    @staticmethod
    def concat(parts: Iterable[ClassTotals]) -> ClassTotals:
        pnl_sum = 0.0
        trades = 0
        pnl_by_regime: dict[str, float] = {}
        loss_bps: dict[str, float] = {}
        losses: dict[str, int] = {}
        for part in parts:
            trades += part.trades
            pnl_sum += part.pnl_sum_bps
            for regime, pnl in part.pnl_by_regime.items():
                pnl_by_regime[regime] = pnl_by_regime.get(regime, 0.0) + pnl
            for regime, size in part.loss_bps_by_regime.items():
                loss_bps[regime] = loss_bps.get(regime, 0.0) + size
            for regime, count in part.losses_by_regime.items():
                losses[regime] = losses.get(regime, 0) + count
        return ClassTotals(
            trades=trades,
            pnl_sum_bps=pnl_sum,
            pnl_by_regime=pnl_by_regime,
            loss_bps_by_regime=loss_bps,
            losses_by_regime=losses,
        )


class ClassDay(DayBucket[ClassTrade, ClassTotals]):
    @classmethod
    def fold(cls, totals: ClassTotals | None, facts: Iterable[ClassTrade]) -> ClassTotals:
        return (ClassTotals() if totals is None else totals).plus(facts)


# A class's window merged by calendar block, as the agent stats are (streams.core.day_window).
_CLASS_WINDOWS = MergedDays(ClassTotals.concat, 4096)


class ClassInputs(WireModel):
    """Everything the four conditions look at, summarised for one class."""

    strategy_class: str
    # The evidence: trades in the window, and days from its oldest trade day to now.
    trades: int = 0
    days_traded: int = 0
    period_pnls_bps: tuple[float, ...] = ()  # oldest first, the last one ends at `at`
    agent_mults: dict[str, float] = Field(default_factory=dict)
    cost_usd: float = 0.0
    pnl_sum_bps: float = 0.0
    pnl_by_regime: dict[str, float] = Field(default_factory=dict)
    loss_bps_by_regime: dict[str, float] = Field(default_factory=dict)  # sizes, >= 0
    losses_by_regime: dict[str, int] = Field(default_factory=dict)
    intended_regimes: tuple[str, ...] = ()  # from policy `class_regimes`; () = none declared


class ConditionResult(WireModel):
    holds: bool
    evidence: dict[str, Any] = Field(default_factory=dict)


class StrategyVerdict(WireModel):
    strategy_class: str
    killed: bool
    conditions: dict[str, ConditionResult]
    # Why the conditions do not count yet, if they do not ("not enough evidence: ...").
    not_enough_evidence: str | None = None

    def reason(self) -> str:
        holding = [name for name, result in self.conditions.items() if result.holds]
        listed = ", ".join(holding) or "none"
        return f"{len(holding)} of {len(self.conditions)} conditions hold: {listed}"


def summarise_class(
    strategy_class: str,
    days: Mapping[str, ClassDay],
    agent_mults: Mapping[str, float],
    cost_usd: float,
    at: datetime,
    policy: Policy,
    intended_regimes: Iterable[str] = (),
) -> ClassInputs:
    """Summarise a class's trades in its rolling window (`window_days` ending at `at`)
    into the inputs of the conditions.

    Period k (0 the newest) is (at - (k + 1) x d, at - k x d]; trades of the window
    outside the last N periods count in the other conditions, not in the periods.
    """
    t = policy.thresholds
    n, length = t.strategy_losing_periods, timedelta(days=t.strategy_period_days)
    start = None if t.window_days == 0 else at - timedelta(days=t.window_days)
    window = _CLASS_WINDOWS.window(days, start, at)
    periods = tuple(
        _CLASS_WINDOWS.window(days, at - (back + 1) * length, at - back * length).pnl_sum_bps
        for back in reversed(range(n))
    )
    oldest = next((day for day in days if start is None or day >= start.date().isoformat()), None)
    days_traded = 0 if oldest is None else (at.date() - date.fromisoformat(oldest)).days + 1
    return ClassInputs(
        strategy_class=strategy_class,
        trades=window.trades,
        days_traded=days_traded,
        period_pnls_bps=periods,
        agent_mults=dict(sorted(agent_mults.items())),
        cost_usd=cost_usd,
        pnl_sum_bps=window.pnl_sum_bps,
        pnl_by_regime=dict(sorted(window.pnl_by_regime.items())),
        loss_bps_by_regime=dict(sorted(window.loss_bps_by_regime.items())),
        losses_by_regime=dict(sorted(window.losses_by_regime.items())),
        intended_regimes=tuple(sorted(intended_regimes)),
    )


def _losing_periods(inputs: ClassInputs, policy: Policy) -> ConditionResult:
    n = policy.thresholds.strategy_losing_periods
    last = inputs.period_pnls_bps[-n:] if n > 0 else ()
    holds = n > 0 and len(last) == n and all(pnl < 0 for pnl in last)
    return ConditionResult(
        holds=holds,
        evidence={
            "periods_needed": n,
            "period_days": policy.thresholds.strategy_period_days,
            "period_pnls_bps": list(last),
        },
    )


def _low_confidence(inputs: ClassInputs, policy: Policy) -> ConditionResult:
    threshold = policy.thresholds.strategy_min_mean_confidence
    mults = list(inputs.agent_mults.values())
    mean = math.fsum(mults) / len(mults) if mults else None
    return ConditionResult(
        holds=mean is not None and mean < threshold,
        evidence={"mean_confidence": mean, "threshold": threshold, "agents": len(mults)},
    )


def _cost_exceeds_value(inputs: ClassInputs, policy: Policy) -> ConditionResult:
    value_usd = max(0.0, inputs.pnl_sum_bps) / BPS * policy.capital.order_risk_budget_usd
    return ConditionResult(
        holds=inputs.cost_usd > value_usd,
        evidence={
            "cost_usd": inputs.cost_usd,
            "value_usd": value_usd,
            "pnl_sum_bps": inputs.pnl_sum_bps,
        },
    )


def _regime_mismatch(inputs: ClassInputs, policy: Policy) -> ConditionResult:
    share_needed = policy.thresholds.strategy_mismatch_share
    intended = sorted(inputs.intended_regimes)
    total = math.fsum(inputs.loss_bps_by_regime.values())
    if not intended:
        return ConditionResult(
            holds=False,
            evidence={
                "intended_regimes": [],
                "total_loss_bps": total,
                "note": f"no intended regimes declared for class {inputs.strategy_class}",
            },
        )
    outside = [r for r in inputs.loss_bps_by_regime if r not in intended and r != UNKNOWN_REGIME]
    mismatched = math.fsum(inputs.loss_bps_by_regime[r] for r in outside)
    count = sum(inputs.losses_by_regime.get(r, 0) for r in outside)
    share = mismatched / total if total > 0 else 0.0
    return ConditionResult(
        holds=total > 0 and count >= MIN_MISMATCHED_LOSSES and share >= share_needed,
        evidence={
            "intended_regimes": intended,
            "mismatched_loss_bps": mismatched,
            "total_loss_bps": total,
            "mismatched_losses": count,
            "share": share,
            "share_needed": share_needed,
        },
    )


def evaluate_class(inputs: ClassInputs, policy: Policy) -> StrategyVerdict:
    """Judge the four conditions; the class is killed when enough of them hold."""
    conditions = {
        "losing_periods": _losing_periods(inputs, policy),
        "low_confidence": _low_confidence(inputs, policy),
        "cost_exceeds_value": _cost_exceeds_value(inputs, policy),
        "regime_mismatch": _regime_mismatch(inputs, policy),
    }
    holding = sum(result.holds for result in conditions.values())
    missing = _missing_evidence(inputs, policy)
    return StrategyVerdict(
        strategy_class=inputs.strategy_class,
        killed=missing is None and holding >= policy.thresholds.strategy_conditions_to_kill,
        conditions=conditions,
        not_enough_evidence=missing,
    )


def _missing_evidence(inputs: ClassInputs, policy: Policy) -> str | None:
    t = policy.thresholds
    if inputs.trades < t.kill_min_trades:
        return f"not enough evidence: {inputs.trades} of {t.kill_min_trades} trades"
    if inputs.days_traded < t.strategy_period_days:
        return (
            f"not enough evidence: traded {inputs.days_traded} of {t.strategy_period_days} days"
        )
    return None


def strategy_kill_events(
    verdict: StrategyVerdict, kill_list: KillList, at: datetime, cause_id: uuid.UUID | str
) -> list[StrategyKilled]:
    """Return the StrategyKilled (source auto, with the evidence) a verdict calls for.

    Nothing when the verdict spares the class or the class is already on the
    list (a timed kill counts until it expires), so re-evaluating is harmless.
    """
    current = kill_list.strategy_classes.get(verdict.strategy_class)
    if not verdict.killed or (current is not None and current.active(at)):
        return []
    return [
        kill_fact(
            StrategyKilled,
            target=verdict.strategy_class,
            source="auto",
            at=at,
            causes=(cause_id,),
            reason=verdict.reason(),
            evidence=verdict.model_dump(mode="json")["conditions"],
        )
    ]

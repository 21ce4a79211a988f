"""The policy: every threshold of SPEC section 6, with its default.

Defaults live here and in the versioned file `streams/config/policy-v1.json`;
changes travel as `policy.updated` events, so every decision is made, and
replayed, under the policy in force at its event time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import WireModel


class Thresholds(WireModel):
    horizons_hours: tuple[int, ...] = (1, 4, 24)
    focus_horizon_hours: int = 24
    # Rolling window for stats used by decisions, confidence and allocation; 0 = lifetime.
    window_days: int = 30
    # Promotion gate (all must hold).
    promote_min_pnl_bps: float = 150.0
    promote_min_hit_rate: float = 0.55
    promote_max_error_rate: float = 0.0
    promote_max_avg_latency_ms: float = 900.0
    promote_min_confidence: float = 0.8
    # KILL rule.
    kill_pnl_bps: float = -150.0
    kill_error_rate: float = 0.20
    # Retirement score.
    retire_min_trades: int = 10
    retire_pnl_bps: float = -150.0
    retire_error_rate: float = 0.10
    retire_cost_usd: float = 5.0
    retire_label_at: int = 80
    watch_label_at: int = 55
    # Drawdown breach and the execution haircut.
    max_drawdown_bps: float = 250.0
    haircut_drawdown_bps: float = 150.0
    haircut: float = 0.5
    # Strategy-class kill: any `strategy_conditions_to_kill` of the four conditions.
    strategy_losing_periods: int = 3
    strategy_period_days: int = 7
    strategy_min_mean_confidence: float = 0.8
    strategy_mismatch_share: float = 0.6
    strategy_conditions_to_kill: int = 2
    # Reconciliation: an entry or exit price older than this many hours is stale.
    max_exit_staleness_hours: float = 2.0
    # A signal this far behind the newest price is refused (TOO_OLD), not reconciled;
    # every price is kept, so this is a policy choice, not a storage limit.
    max_signal_age_days: int = Field(default=400, ge=1, le=36_500)
    # Closed market (stale exit): exit at the first price after the horizon, as a
    # trader would, or give no PnL.
    stale_exit: Literal["next_open", "skip"] = "next_open"


class ConfidenceRule(WireModel):
    start: float = 1.0
    history: int = 30
    recent: int = 5
    severe_loss_bps: float = -50.0
    severe_factor: float = 0.85
    mild_factor: float = 0.93
    gain_bps: float = 50.0
    gain_factor: float = 1.03
    floor: float = 0.20
    ceiling: float = 1.20


class Capital(WireModel):
    nav_usd: float = 1_000_000.0
    risk_budget_pct: float = 0.02
    per_agent_cap_multiplier: dict[str, float] = Field(default_factory=dict)
    default_cap_multiplier: float = 1.0
    unknown_cvar_nav_pct: float = 0.01
    order_risk_budget_usd: float = 1_000.0
    max_position_usd: float = 250.0


class Allocation(WireModel):
    method: Literal["quality", "softmax"] = "quality"
    softmax_alpha: float = 1.0
    max_error_rate: float = 0.05
    # Weights are recomputed from new trades and assessments at most once per this many
    # minutes of event time (0: on every one). A regime, policy or kill change, or an
    # agent's decision changing, reallocates at once. Without a cadence every trade would
    # rewrite every agent's weight: work and events growing with the fleet, per trade.
    rebalance_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)


DEFAULT_REGIME_CAPS: dict[str, float] = {
    "RISK_OFF": 0.20,
    "HIGH_VOL": 0.35,
    "MIXED": 0.60,
    "RISK_ON": 1.00,
}


class Policy(WireModel):
    version: int = 1
    thresholds: Thresholds = Field(default_factory=Thresholds)
    confidence: ConfidenceRule = Field(default_factory=ConfidenceRule)
    capital: Capital = Field(default_factory=Capital)
    allocation: Allocation = Field(default_factory=Allocation)
    regime_caps: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_REGIME_CAPS))
    unknown_regime_cap: float = 0.50

    def regime_cap(self, regime: str | None) -> float:
        """Cap on total deployed weight; an unknown or missing regime gets the cautious default."""
        if regime is None:
            return self.unknown_regime_cap
        return self.regime_caps.get(regime, self.unknown_regime_cap)

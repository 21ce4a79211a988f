"""Per-agent (or per-class, or portfolio) statistics as they travel in events and reports.

Computed by `streams.agents.stats`; read by the supervisor's rules. `None` means
"not known" (no trades, no runs), never zero. The report-only figures
(`cvar95_bps`, `p95_latency_ms`, `information_coefficient`, `smart_sharpe`) need
every trade of the window, so they are None in the stats rules compute per event
(`rule_stats_at`) and filled in by reports (`stats_at`).
"""

from __future__ import annotations

from schemas.envelope import WireModel

# Basis points in one unit of return: every PnL here is in bps.
BPS = 10_000.0


class AgentStats(WireModel):
    trades: int = 0
    runs: int = 0
    errors: int = 0
    pnl_sum_bps: float = 0.0
    hit_rate: float | None = None
    error_rate: float | None = None
    avg_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    max_drawdown_bps: float = 0.0
    cvar95_bps: float | None = None
    mean_pnl_bps: float | None = None
    std_pnl_bps: float | None = None
    sharpe: float | None = None
    sortino: float | None = None
    smart_sharpe: float | None = None
    profit_factor: float | None = None
    expectancy_bps: float | None = None
    information_coefficient: float | None = None
    # Edge significance (SPEC section 6): the shape of the trade PnLs, the lag-1
    # autocorrelation in trade order (overlapping horizons), PSR(0), and DSR against the
    # expected best Sharpe of `trials` agents of the strategy class.
    skewness: float | None = None
    kurtosis: float | None = None
    autocorr_lag1: float | None = None
    psr: float | None = None
    dsr: float | None = None
    trials: int | None = None
    # LLM cost per realized bps: cost_usd / pnl_sum_bps when the PnL is positive.
    cost_per_bps_usd: float | None = None

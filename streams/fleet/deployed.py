"""The portfolio as deployed (SPEC section 6): each trade scaled by its agent's weight at entry.

The allocator's weights are what the fleet puts to work, so the drawdown that stops
promoted agents, and each agent's contribution, are measured on the trades scaled by
those weights; the undeployed rest is cash and earns 0. A trade's weight is the one in
force at its signal's time (when an order would have been sized), from the allocations
this processor emitted (`WeightsAt`), not the weight when it exits: an agent promoted
after a loss did not carry that loss.

A weighted trade is one fact of a day bucket (streams.core.day_window) whose totals are
the series (cumulative PnL and its running peak) and the PnL per agent.
The breach reads the series alone, merged by its own `MergedDays`, so its cost per trade
does not grow with the fleet; contributions merge the per-agent sums, on each emitted
allocation and on read; the attribution of a breach walks the window's trades, only when
a breach kills.

Leave-one-out contribution: the portfolio without an agent keeps every other weight and
leaves that agent's weight in cash, so the difference between the two is exactly the
agent's weighted PnL over the window: its per-agent sum.
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from pydantic import Field

from schemas.envelope import UtcDatetime, WireModel
from schemas.events import SignalReconciled
from streams.core.day_window import (
    DayBucket,
    MergedDays,
    day_of,
    days_between,
    evict_days,
    put_day,
    within,
)

# A delayed exit waits for a closed market to reopen, so a trade can exit well after its
# horizon; weights are kept this long before the oldest signal a window can still hold.
EXIT_DELAY_KEPT = timedelta(days=7)


class WeightsAt(WireModel):
    """The weights of an allocation this processor emitted: in force from `ts` to the next."""

    ts: UtcDatetime
    weights: dict[str, float] = Field(default_factory=dict)


def _weights_time(entry: WeightsAt) -> datetime:
    return entry.ts


def signal_time(trade: SignalReconciled) -> datetime:
    """When the trade's signal was emitted: a reconciliation's `ts` is that time plus its
    horizon (`entry_ts` is the price the entry took, which may be older)."""
    return trade.ts - timedelta(hours=trade.horizon_hours)


def weights_at(history: tuple[WeightsAt, ...], at: datetime) -> Mapping[str, float]:
    """The weights of the newest allocation at or before `at`; none (all cash) before the first."""
    index = bisect_right(history, at, key=_weights_time)
    return history[index - 1].weights if index else {}


def with_weights(
    history: tuple[WeightsAt, ...],
    at: datetime,
    weights: Mapping[str, float],
    keep_from: datetime | None,
) -> tuple[WeightsAt, ...]:
    """The history with an emitted allocation, in time order (after any emitted at the same
    time: the later emission is the newer), without the entries no longer in force at or
    after `keep_from` (None: keep all)."""
    index = bisect_right(history, at, key=_weights_time)
    history = (*history[:index], WeightsAt(ts=at, weights=dict(weights)), *history[index:])
    if keep_from is None:
        return history
    in_force = bisect_right(history, keep_from, key=_weights_time) - 1
    return history[in_force:] if in_force > 0 else history


def weights_kept_from(window_horizon: datetime | None, focus_horizon_hours: int) -> datetime | None:
    """The oldest time a trade the window still accepts can have been signalled at: its
    exit is after the window's horizon, its signal a horizon earlier, or a delayed exit's
    closure earlier still (`EXIT_DELAY_KEPT`). None without a window (lifetime)."""
    if window_horizon is None:
        return None
    return window_horizon - timedelta(hours=focus_horizon_hours) - EXIT_DELAY_KEPT


class DeployedTrade(WireModel):
    """One focus-horizon trade as deployed: its PnL times its agent's weight at entry."""

    event_id: uuid.UUID
    signal_id: uuid.UUID
    exit_ts: UtcDatetime
    agent: str
    pnl_bps: float

    @classmethod
    def of(cls, trade: SignalReconciled, weight: float) -> DeployedTrade:
        # + 0.0: a loss in cash is 0, not -0.
        return cls.model_construct(
            event_id=trade.event_id,
            signal_id=trade.signal_id,
            exit_ts=trade.exit_ts,
            agent=trade.agent,
            pnl_bps=trade.realized_pnl_bps * weight + 0.0,
        )

    @property
    def at(self) -> datetime:
        return self.exit_ts

    def sort_key(self) -> tuple[datetime, uuid.UUID, uuid.UUID]:
        """The agent stats' trade order, so the series is the portfolio's, weighted."""
        return (self.exit_ts, self.signal_id, self.event_id)


class DeployedTotals(WireModel):
    """Cumulative PnL and its running peak (from 0), and the PnL per agent, of consecutive
    weighted trades. The current drawdown needs only the first two, so the series carries
    none of the agent stats' moments: it is folded again on every trade."""

    cum_bps: float = 0.0
    peak_bps: float = 0.0
    pnl_by_agent_bps: dict[str, float] = Field(default_factory=dict)

    def plus(self, trades: Iterable[DeployedTrade]) -> DeployedTotals:
        cum, peak = self.cum_bps, self.peak_bps
        by_agent = dict(self.pnl_by_agent_bps)
        for trade in trades:
            cum += trade.pnl_bps
            peak = max(peak, cum)
            by_agent[trade.agent] = by_agent.get(trade.agent, 0.0) + trade.pnl_bps
        return DeployedTotals(cum_bps=cum, peak_bps=peak, pnl_by_agent_bps=by_agent)

    @staticmethod
    def concat(parts: Iterable[DeployedTotals]) -> DeployedTotals:
        parts = tuple(parts)
        by_agent: dict[str, float] = {}
        for part in parts:
            for agent, pnl in part.pnl_by_agent_bps.items():
                by_agent[agent] = by_agent.get(agent, 0.0) + pnl
        cum, peak = _joined_series(parts)
        return DeployedTotals(
            cum_bps=cum, peak_bps=peak, pnl_by_agent_bps=dict(sorted(by_agent.items()))
        )


def _joined_series(parts: Iterable[DeployedTotals]) -> tuple[float, float]:
    """(cumulative PnL, running peak) of consecutive parts: each later part's series is
    shifted by the cumulative PnL before it."""
    cum = peak = 0.0
    for part in parts:
        peak = max(peak, cum + part.peak_bps)
        cum += part.cum_bps
    return cum, peak


def _series_concat(parts: Iterable[DeployedTotals]) -> DeployedTotals:
    """`concat` without the per-agent sums: what the breach reads on every trade, at a cost
    that does not grow with the fleet."""
    cum, peak = _joined_series(parts)
    return DeployedTotals(cum_bps=cum, peak_bps=peak)


class DeployedDay(DayBucket[DeployedTrade, DeployedTotals]):
    @classmethod
    def fold(cls, totals: DeployedTotals | None, facts: Iterable[DeployedTrade]) -> DeployedTotals:
        return (DeployedTotals() if totals is None else totals).plus(facts)


_SERIES_WINDOWS = MergedDays(_series_concat, 1024)
_CONTRIBUTION_WINDOWS = MergedDays(DeployedTotals.concat, 1024)


def with_deployed(
    days: dict[str, DeployedDay], trade: DeployedTrade, horizon: datetime | None
) -> dict[str, DeployedDay]:
    """`days` with a new trade (the caller has checked it is new and in the window), and
    without the facts at or before `horizon` (None: keep all)."""
    day = day_of(trade.exit_ts)
    bucket = days.get(day)
    bucket = DeployedDay.of((trade,)) if bucket is None else bucket.with_fact(trade)
    days = put_day(days, day, bucket)
    return days if horizon is None else evict_days(days, horizon)


def drawdown_bps(days: Mapping[str, DeployedDay], start: datetime | None, end: datetime) -> float:
    """How far the cumulative deployed PnL of (start, end] stands below its running peak at
    `end` (the peak starts at 0): the current drawdown, which recovers as the series does."""
    series = _SERIES_WINDOWS.window(days, start, end)
    return series.peak_bps - series.cum_bps


def contributions_bps(
    days: Mapping[str, DeployedDay], start: datetime | None, end: datetime
) -> dict[str, float]:
    """Each agent's leave-one-out contribution over (start, end], in name order."""
    return _CONTRIBUTION_WINDOWS.window(days, start, end).pnl_by_agent_bps


class DrawdownAttribution(WireModel):
    """The current drawdown episode: from the running peak (the last time the series stood
    at its high; None if it never rose above 0 in the window) to its lowest point since,
    and each agent's weighted PnL over that stretch (they sum to -peak_to_trough_bps)."""

    peak_at: UtcDatetime | None
    trough_at: UtcDatetime | None
    peak_to_trough_bps: float
    by_agent_bps: dict[str, float] = Field(default_factory=dict)


def attribute_drawdown(
    days: Mapping[str, DeployedDay], start: datetime | None, end: datetime
) -> DrawdownAttribution:
    """Walk the window's trades in series order to find the peak and the trough after it.

    Reads every trade of the window: only when a breach kills."""
    trades = [
        t
        for day in days_between(days, start, end)[1]
        for t in day.facts
        if within(t.exit_ts, start, end)
    ]
    cum = peak = trough = 0.0
    peak_index = trough_index = -1  # -1: before the window's first trade
    for index, trade in enumerate(trades):
        cum += trade.pnl_bps
        if cum >= peak:
            peak, trough, peak_index, trough_index = cum, cum, index, index
        elif cum < trough:
            trough, trough_index = cum, index
    by_agent: dict[str, float] = {}
    for trade in trades[peak_index + 1 : trough_index + 1]:
        by_agent[trade.agent] = by_agent.get(trade.agent, 0.0) + trade.pnl_bps
    return DrawdownAttribution(
        peak_at=trades[peak_index].exit_ts if peak_index >= 0 else None,
        trough_at=trades[trough_index].exit_ts if trough_index >= 0 else None,
        peak_to_trough_bps=peak - trough,
        by_agent_bps=dict(sorted(by_agent.items())),
    )

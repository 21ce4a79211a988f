"""The dashboard's panels (SPEC section 9), each a frozen model built from the fleet
projection, so the server only serves and pushes them and a test can check every figure
without a browser.

The figures are the meta report's (`projections.reports.meta`): the portfolio, the agents'
rows, the allocation, the kill list and the lineage are its sections, taken as they are,
so the page and `metasup report meta` never disagree. What only a page needs is added
here: the trading mode, the curves, each agent's health and a feed.

Spans: like the report, everything is as of the projection's clock (the newest event time
the workers derived). The curves cover the policy's rolling window at that clock (the
whole log when `window_days` is 0), the span the report's figures are over, so a curve
ends where the figure beside it stands: the portfolio's last point is the deployed PnL,
its deepest drawdown the deployed maximum drawdown, and each agent's last point is its
window PnL.

Agent names and reasons are carried as plain strings: the page must render them as
text (they are data from outside and can hold markup).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime
from itertools import accumulate
from typing import Any, Final, Literal

from projections.fleet import FleetProjection, TradeFact
from projections.reports.meta import (
    AgentRow,
    AllocationView,
    FleetSummary,
    KillHistoryRow,
    KillListView,
    LineageView,
    MetaReport,
    ReportMeta,
    deployed_pnls,
    meta_report,
)
from schemas.envelope import UtcDatetime, WireModel
from schemas.events import Decision, DecisionMade
from streams.core.day_window import day_of
from streams.core.fleet_state import policy_at

# At most this many points per curve: enough for a chart as wide as a screen.
MAX_CURVE_POINTS: Final = 500
# The fewest points a downsampled curve can have: its two ends and one bucket's three
# extremes.
MIN_CURVE_POINTS: Final = 5
# The newest decisions and kills the feed shows.
FEED_SIZE: Final = 50

TradingMode = Literal["shadow", "live"]


# --- portfolio --------------------------------------------------------------------------


class PortfolioPanel(WireModel):
    meta: ReportMeta
    fleet: FleetSummary
    # The mode of the newest order intent on `orders` (None before the first order): what
    # the router did with signals last, shadow or live.
    mode: TradingMode | None
    mode_since: UtcDatetime | None  # that order's event time


def portfolio_panel(projection: FleetProjection, report: MetaReport) -> PortfolioPanel:
    order = projection.last_order
    return PortfolioPanel(
        meta=report.meta,
        fleet=report.fleet,
        mode=order.mode if order is not None else None,
        mode_since=order.ts if order is not None else None,
    )


# --- curves -----------------------------------------------------------------------------


class CurvePoint(WireModel):
    trade: int  # the trade's number in the span, from 1
    ts: UtcDatetime  # its exit time
    equity_bps: float  # cumulative PnL after it
    drawdown_bps: float  # how far below the running peak (which starts at 0) that is


class Curve(WireModel):
    trades: int  # trades in the span; the points may be fewer (downsampled)
    points: list[CurvePoint]


class CurvesPanel(WireModel):
    start: UtcDatetime | None  # exclusive; None: from the first trade
    end: UtcDatetime | None  # inclusive: the projection's clock
    max_points: int
    # The portfolio as deployed: each trade's PnL times its agent's weight at signal time.
    portfolio: Curve
    # Each agent's own trades, unweighted; every agent the log names, in name order.
    agents: dict[str, Curve]


def downsample(points: Sequence[CurvePoint], max_points: int) -> list[CurvePoint]:
    """At most `max_points` of `points`, in order, keeping both ends, the highest and lowest
    equity and the deepest drawdown: a fall is never hidden by sampling.

    The points between the ends are cut into equal runs; each run keeps its own lowest
    and highest equity and its deepest drawdown (the first of equals), so the extremes of
    the whole curve are kept wherever they fall, and the same points give the same sample.
    """
    if max_points < MIN_CURVE_POINTS:
        raise ValueError(f"max_points must be at least {MIN_CURVE_POINTS}, not {max_points}")
    if len(points) <= max_points:
        return list(points)
    inner = len(points) - 2
    buckets = (max_points - 2) // 3
    kept = {0, len(points) - 1}
    for bucket in range(buckets):
        run = range(1 + bucket * inner // buckets, 1 + (bucket + 1) * inner // buckets)
        kept.add(min(run, key=lambda i: points[i].equity_bps))
        kept.add(max(run, key=lambda i: points[i].equity_bps))
        kept.add(max(run, key=lambda i: points[i].drawdown_bps))
    return [points[i] for i in sorted(kept)]


def curve(trades: Sequence[TradeFact], pnls: Sequence[float], max_points: int) -> Curve:
    """The cumulative PnL and drawdown after each of `trades` (whose PnLs are `pnls`)."""
    points = []
    peak = 0.0
    for number, (trade, equity) in enumerate(zip(trades, accumulate(pnls), strict=True), 1):
        peak = max(peak, equity)
        points.append(
            CurvePoint(
                trade=number, ts=trade.exit_ts, equity_bps=equity, drawdown_bps=peak - equity
            )
        )
    return Curve(trades=len(points), points=downsample(points, max_points))


def curves_panel(projection: FleetProjection, max_points: int = MAX_CURVE_POINTS) -> CurvesPanel:
    trades = projection.window_trades()
    by_agent: dict[str, list[TradeFact]] = {agent: [] for agent in projection.agents()}
    for trade in trades:
        by_agent.setdefault(trade.agent, []).append(trade)
    return CurvesPanel(
        start=projection.window_start(),
        end=projection.clock,
        max_points=max_points,
        portfolio=curve(trades, deployed_pnls(projection, trades), max_points),
        agents={
            agent: curve(own, [t.pnl_bps for t in own], max_points)
            for agent, own in sorted(by_agent.items())
        },
    )


# --- allocation -------------------------------------------------------------------------


class AllocationSlice(WireModel):
    label: str  # the agent, or "cash" when `cash` (an agent may be named "cash")
    weight: float
    cash: bool = False


class AllocationPanel(WireModel):
    allocation: AllocationView | None
    # Every agent with a weight, largest first, then cash: the slices of a pie. Before the
    # first allocation everything is in cash.
    slices: list[AllocationSlice]
    capital: dict[str, Any]


def allocation_panel(report: MetaReport) -> AllocationPanel:
    view = report.allocation
    cash = AllocationSlice(label="cash", weight=view.cash_weight if view else 1.0, cash=True)
    agents = [
        AllocationSlice(label=agent, weight=weight)
        for agent, weight in (view.weights.items() if view else ())
        if weight > 0
    ]
    return AllocationPanel(allocation=view, slices=[*agents, cash], capital=report.capital)


# --- agents -----------------------------------------------------------------------------


class BudgetBurn(WireModel):
    """The agent's LLM cost on the clock's UTC day against the daily budget in force."""

    day: str  # ISO UTC day
    cost_usd: float  # the day's executed runs folded so far
    budget_usd: float | None  # None: the policy sets no daily budget
    burn: float | None  # cost / budget (1.0 is the whole budget); None without a budget


class AgentHealth(WireModel):
    errors: int  # run errors over the window
    error_rate: float | None  # errors per run over the window
    # Rejected records that named the agent (a raw value that is a JSON object with an
    # `agent` field); a record too broken to name one is counted only in the fleet's total.
    deadletter: int
    budget: BudgetBurn | None  # None before the clock starts
    # Records the agent's consumer partition is behind: a broker figure, so the server
    # fills it (`model_copy(update=...)`); None when unknown.
    consumer_lag: int | None = None


class AgentPanelRow(AgentRow):
    """The meta report's row of the agent, and its health."""

    health: AgentHealth


class AgentsPanel(WireModel):
    rows: list[AgentPanelRow]  # in name order, as the report lists them


def budget_burn(projection: FleetProjection, agent: str) -> BudgetBurn | None:
    at = projection.clock
    if at is None:
        return None
    day = day_of(at)
    stats = projection.stats.get(agent)
    bucket = stats.run_days.get(day) if stats is not None else None
    cost = bucket.totals.cost_usd if bucket is not None else 0.0
    budget = policy_at(projection.fleet, at).thresholds.daily_budget_usd
    return BudgetBurn(
        day=day,
        cost_usd=cost,
        budget_usd=budget,
        burn=cost / budget if budget is not None else None,
    )


def agents_panel(projection: FleetProjection, report: MetaReport) -> AgentsPanel:
    return AgentsPanel(
        rows=[
            AgentPanelRow(
                **dict(row),
                health=AgentHealth(
                    errors=row.stats.errors,
                    error_rate=row.stats.error_rate,
                    deadletter=projection.deadletter_agents.get(row.agent, 0),
                    budget=budget_burn(projection, row.agent),
                ),
            )
            for row in report.agents
        ]
    )


# --- feed -------------------------------------------------------------------------------


class DecisionEntry(WireModel):
    agent: str
    decision: Decision
    previous: Decision | None
    reasons: list[str]
    retirement_label: str


class FeedItem(WireModel):
    ts: UtcDatetime
    kind: Literal["decision", "kill"]
    decision: DecisionEntry | None = None
    kill: KillHistoryRow | None = None  # a kill or revive fact the supervisor signed


class FeedPanel(WireModel):
    items: list[FeedItem]  # newest first
    size: int  # at most this many


def _decision_item(made: DecisionMade) -> FeedItem:
    return FeedItem(
        ts=made.ts,
        kind="decision",
        decision=DecisionEntry(
            agent=made.agent,
            decision=made.decision,
            previous=made.previous,
            reasons=list(made.reasons),
            retirement_label=made.retirement_label,
        ),
    )


def feed_panel(
    projection: FleetProjection, kill_list: KillListView, size: int = FEED_SIZE
) -> FeedPanel:
    """The newest decisions and kill-list changes, newest first. At one time a kill comes
    above the decision that caused it, and later facts of the log above earlier ones.
    Facts whose signature did not verify changed nothing: they stay in the kill list's
    audit trail and out of the feed."""
    ranked: list[tuple[tuple[datetime, int, int], DecisionMade | KillHistoryRow]] = [
        ((made.ts, 0, seq), made) for seq, made in enumerate(projection.decision_history)
    ]
    ranked += [
        ((row.ts, 1, seq), row)
        for seq, row in enumerate(kill_list.history)
        if row.signature_verified
    ]
    newest = heapq.nlargest(size, ranked, key=lambda ranked_fact: ranked_fact[0])
    items = [
        _decision_item(fact)
        if isinstance(fact, DecisionMade)
        else FeedItem(ts=fact.ts, kind="kill", kill=fact)
        for _, fact in newest
    ]
    return FeedPanel(items=items, size=size)


# --- all of them ------------------------------------------------------------------------


class DashboardState(WireModel):
    """Every panel of the page; each field is also served on its own."""

    portfolio: PortfolioPanel
    curves: CurvesPanel
    allocation: AllocationPanel
    agents: AgentsPanel
    kill_list: KillListView
    lineage: LineageView
    feed: FeedPanel


def dashboard_state(
    projection: FleetProjection,
    max_points: int = MAX_CURVE_POINTS,
    feed_size: int = FEED_SIZE,
) -> DashboardState:
    """All panels as of the projection's clock: the same records give the same bytes
    (`projections.reports.meta.report_json`)."""
    report = meta_report(projection)
    return DashboardState(
        portfolio=portfolio_panel(projection, report),
        curves=curves_panel(projection, max_points),
        allocation=allocation_panel(report),
        agents=agents_panel(projection, report),
        kill_list=report.kill_list,
        lineage=report.lineage,
        feed=feed_panel(projection, report.kill_list, feed_size),
    )

"""Failure forensics (SPEC section 7): where the window's losses came from.

The worst losing focus-horizon trades of the window are joined with their run's telemetry
by run_id. A trade whose run is not on the log (never reported, or the read stopped before
it) keeps its place with the telemetry missing: a join must not hide a loss. Winners are
no failures, so a window with fewer losses than `WORST_TRADES` lists fewer trades.

Hypotheses are computed from the window's figures and stated only when they hold by the
thresholds below, each with the figures that support it. They point where to look; none
is a verdict, and none changes anything.
"""

from __future__ import annotations

import statistics
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from projections.fleet import FleetProjection, MultiplierAt, RunTelemetry, TradeFact
from projections.reports.markup import (
    MISSING,
    latency,
    md_table,
    md_text,
    printable,
    ratio,
    signed_bps,
    text_table,
    usd,
)
from schemas.envelope import UtcDatetime, WireModel, format_utc
from schemas.policy import Policy
from streams.core.fleet_state import default_policy, policy_at, regime_at

WORST_TRADES = 25
EXAMPLE_RUNS = 3  # per agent: the runs behind its worst losses

# Losses concentrated in a regime: the agent loses there at least REGIME_LIFT times as
# often as overall (the regime's share of its losses over its share of its trades), on
# at least REGIME_MIN_LOSSES losses, so that two unlucky trades are not a pattern.
REGIME_LIFT = 1.5
REGIME_MIN_LOSSES = 3

# A latency or cost spike: the median over the runs behind losing trades is at least
# SPIKE_RATIO times the median over the runs behind winning ones, with SPIKE_MIN_RUNS runs
# on each side (a median of fewer says little).
SPIKE_RATIO = 1.5
SPIKE_MIN_RUNS = 3

# A multiplier too sticky: STICKY_MIN_STREAK consecutive losses after each of which the
# agent's confidence multiplier was still at least STICKY_SHARE of its ceiling. The rule
# reads only the last few PnLs, so earlier gains can keep a losing agent near full size.
STICKY_MIN_STREAK = 3
STICKY_SHARE = 0.9

HypothesisKind = Literal["regime_concentration", "latency_spike", "cost_spike", "sticky_multiplier"]
# The run figures a spike is looked for in: kind, what it is called, the figure, its format.
_SPIKES: tuple[
    tuple[HypothesisKind, str, Callable[[RunTelemetry], float], Callable[[float | None], str]],
    ...,
] = (
    ("latency_spike", "latency", lambda run: run.latency_ms, latency),
    ("cost_spike", "LLM cost", lambda run: run.cost_usd, usd),
)


class RunView(WireModel):
    ts: UtcDatetime
    latency_ms: float
    tokens: int
    cost_usd: float
    errors: int


class WorstTrade(WireModel):
    rank: int
    agent: str
    strategy_class: str | None
    symbol: str
    direction: str
    pnl_bps: float
    signal_ts: UtcDatetime
    exit_ts: UtcDatetime
    regime: str | None  # in force at the signal's time
    signal_id: uuid.UUID
    run_id: uuid.UUID
    run: RunView | None  # None: the run is not on the log


class Hypothesis(WireModel):
    kind: HypothesisKind
    statement: str
    threshold: str  # what it held by
    figures: dict[str, float | int | str]


class AgentForensics(WireModel):
    agent: str
    strategy_class: str | None
    trades: int
    losses: int
    loss_bps: float  # the sum of its losses (negative)
    avg_loss_bps: float
    runs: int  # its runs in the window
    median_latency_ms: float | None
    median_tokens: float | None
    error_rate: float | None  # errors per run
    missing_runs: int  # losing trades whose run is not on the log
    example_runs: list[uuid.UUID]
    hypotheses: list[Hypothesis]


class ForensicsReport(WireModel):
    generated_at: UtcDatetime | None  # the newest receipt time read, as in the meta report
    event_time: UtcDatetime | None  # the report's clock: the window ends here
    window_start: UtcDatetime | None  # None: the policy's window is the lifetime
    window_days: int
    focus_horizon_hours: int
    trades: int
    losses: int
    worst: list[WorstTrade]
    agents: list[AgentForensics]  # most lost first


# --- the report -------------------------------------------------------------------------


def forensics_report(projection: FleetProjection) -> ForensicsReport:
    """The forensics of the policy's window at the report's clock."""
    at = projection.clock
    policy = policy_at(projection.fleet, at) if at is not None else default_policy()
    trades = projection.window_trades()

    def regime_of(trade: TradeFact) -> str | None:
        return trade.regime or regime_at(projection.fleet, trade.signal_ts)

    losses = sorted((t for t in trades if t.pnl_bps < 0), key=_worst_first)
    by_agent: dict[str, list[TradeFact]] = {}
    for trade in trades:
        by_agent.setdefault(trade.agent, []).append(trade)
    runs = _window_runs(projection)
    agents = [
        _agent_forensics(projection, policy, agent_trades, runs.get(agent, []), regime_of)
        for agent, agent_trades in sorted(by_agent.items())
        if any(t.pnl_bps < 0 for t in agent_trades)
    ]
    agents.sort(key=lambda row: (row.loss_bps, row.agent))
    return ForensicsReport(
        generated_at=projection.received_until,
        event_time=at,
        window_start=projection.window_start(),
        window_days=policy.thresholds.window_days,
        focus_horizon_hours=policy.thresholds.focus_horizon_hours,
        trades=len(trades),
        losses=len(losses),
        worst=[
            _worst_trade(rank, trade, projection.runs.get(trade.run_id), regime_of(trade))
            for rank, trade in enumerate(losses[:WORST_TRADES], start=1)
        ],
        agents=agents,
    )


def _worst_first(trade: TradeFact) -> tuple[float, datetime, uuid.UUID]:
    """Lowest PnL first; equal PnLs in trade order (exit time, then signal id)."""
    return (trade.pnl_bps, trade.exit_ts, trade.signal_id)


def _window_runs(projection: FleetProjection) -> dict[str, list[RunTelemetry]]:
    """Each agent's runs whose time is in the window, as the stats count them."""
    start, end = projection.window_start(), projection.clock
    runs: dict[str, list[RunTelemetry]] = {}
    if end is None:
        return runs
    for run in projection.runs.values():
        if (start is None or run.ts > start) and run.ts <= end:
            runs.setdefault(run.agent, []).append(run)
    return runs


def _worst_trade(
    rank: int, trade: TradeFact, run: RunTelemetry | None, regime: str | None
) -> WorstTrade:
    return WorstTrade(
        rank=rank,
        agent=trade.agent,
        strategy_class=trade.strategy_class,
        symbol=trade.symbol,
        direction=trade.direction,
        pnl_bps=trade.pnl_bps,
        signal_ts=trade.signal_ts,
        exit_ts=trade.exit_ts,
        regime=regime,
        signal_id=trade.signal_id,
        run_id=trade.run_id,
        run=None if run is None else _run_view(run),
    )


def _run_view(run: RunTelemetry) -> RunView:
    return RunView(
        ts=run.ts,
        latency_ms=run.latency_ms,
        tokens=run.tokens,
        cost_usd=run.cost_usd,
        errors=run.errors,
    )


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _agent_forensics(
    projection: FleetProjection,
    policy: Policy,
    trades: list[TradeFact],
    runs: list[RunTelemetry],
    regime_of: Callable[[TradeFact], str | None],
) -> AgentForensics:
    agent = trades[0].agent
    losses = sorted((t for t in trades if t.pnl_bps < 0), key=_worst_first)
    telemetry = projection.runs
    examples = list(dict.fromkeys(t.run_id for t in losses))[:EXAMPLE_RUNS]
    loss_bps = sum(t.pnl_bps for t in losses)
    hypotheses = _regime_concentration(trades, losses, regime_of)
    losing_runs = {t.run_id: telemetry[t.run_id] for t in losses if t.run_id in telemetry}
    winning_runs = {
        t.run_id: telemetry[t.run_id]
        for t in trades
        if t.pnl_bps > 0 and t.run_id in telemetry and t.run_id not in losing_runs
    }
    for kind, what, figure, show in _SPIKES:
        spike = _spike(
            kind,
            what,
            [figure(run) for run in losing_runs.values()],
            [figure(run) for run in winning_runs.values()],
            show,
        )
        hypotheses += [spike] if spike is not None else []
    sticky = _sticky_multiplier(
        trades,
        sorted(projection.multipliers.get(agent, []), key=lambda change: change.ts),
        timedelta(hours=policy.thresholds.focus_horizon_hours),
        policy.confidence.ceiling,
    )
    hypotheses += [sticky] if sticky is not None else []
    return AgentForensics(
        agent=agent,
        strategy_class=projection.strategy_class.get(agent),
        trades=len(trades),
        losses=len(losses),
        loss_bps=loss_bps,
        avg_loss_bps=loss_bps / len(losses),
        runs=len(runs),
        median_latency_ms=_median([run.latency_ms for run in runs]),
        median_tokens=_median([run.tokens for run in runs]),
        error_rate=sum(run.errors for run in runs) / len(runs) if runs else None,
        missing_runs=sum(1 for t in losses if t.run_id not in telemetry),
        example_runs=examples,
        hypotheses=hypotheses,
    )


# --- hypotheses -------------------------------------------------------------------------


def _regime_concentration(
    trades: list[TradeFact],
    losses: list[TradeFact],
    regime_of: Callable[[TradeFact], str | None],
) -> list[Hypothesis]:
    """Every known regime the agent loses in markedly more often than overall, most
    concentrated first."""
    trades_in = Counter(regime_of(t) for t in trades)
    losses_in = Counter(regime_of(t) for t in losses)
    found = []
    for regime, lost in losses_in.items():
        if regime is None or lost < REGIME_MIN_LOSSES:
            continue
        loss_share = lost / len(losses)
        trade_share = trades_in[regime] / len(trades)
        lift = loss_share / trade_share
        if lift < REGIME_LIFT:
            continue
        statement = (
            f"losses concentrated in {regime}: {lost} of {len(losses)} losses "
            f"({loss_share:.0%}) against {trades_in[regime]} of {len(trades)} trades "
            f"({trade_share:.0%}), {lift:.2f} times its share"
        )
        figures: dict[str, float | int | str] = {
            "regime": regime,
            "losses_in_regime": lost,
            "losses": len(losses),
            "trades_in_regime": trades_in[regime],
            "trades": len(trades),
            "loss_share": loss_share,
            "trade_share": trade_share,
            "lift": lift,
        }
        threshold = f"lift >= {REGIME_LIFT} on >= {REGIME_MIN_LOSSES} losses in the regime"
        found.append(
            Hypothesis(
                kind="regime_concentration",
                statement=statement,
                threshold=threshold,
                figures=figures,
            )
        )
    found.sort(key=lambda h: (-float(h.figures["lift"]), str(h.figures["regime"])))
    return found


def _spike(
    kind: HypothesisKind,
    what: str,
    losing: list[float],
    winning: list[float],
    show: Callable[[float | None], str],
) -> Hypothesis | None:
    if len(losing) < SPIKE_MIN_RUNS or len(winning) < SPIKE_MIN_RUNS:
        return None
    on_losses, on_wins = statistics.median(losing), statistics.median(winning)
    if on_losses <= 0 or on_losses < SPIKE_RATIO * on_wins:
        return None
    figures: dict[str, float | int | str] = {
        "losing_runs": len(losing),
        "winning_runs": len(winning),
        "median_losing": float(on_losses),
        "median_winning": float(on_wins),
    }
    times = ""
    if on_wins > 0:
        figures["ratio"] = on_losses / on_wins
        times = f", {on_losses / on_wins:.2f} times"
    statement = (
        f"{what} spikes on losing runs: median {show(on_losses)} over {len(losing)} runs "
        f"behind losses against {show(on_wins)} over {len(winning)} behind wins{times}"
    )
    threshold = f"ratio >= {SPIKE_RATIO} with >= {SPIKE_MIN_RUNS} runs on each side"
    return Hypothesis(kind=kind, statement=statement, threshold=threshold, figures=figures)


def _multiplier_after(history: list[MultiplierAt], at: datetime) -> float | None:
    index = bisect_right(history, at, key=lambda change: change.ts)
    return history[index - 1].mult if index else None


def _sticky_multiplier(
    trades: list[TradeFact],
    history: list[MultiplierAt],
    horizon: timedelta,
    ceiling: float,
) -> Hypothesis | None:
    """The longest run of consecutive losses after each of which the multiplier stayed
    near its ceiling. A loss is booked at its signal time plus the horizon; the multiplier
    after it is the newest update at or before then (its own, stamped at that time)."""
    line = STICKY_SHARE * ceiling
    longest: list[tuple[TradeFact, float]] = []
    streak: list[tuple[TradeFact, float]] = []
    for trade in trades:
        mult = _multiplier_after(history, trade.signal_ts + horizon)
        if trade.pnl_bps < 0 and mult is not None and mult >= line:
            streak.append((trade, mult))
            if len(streak) > len(longest):
                longest = streak
        else:
            streak = []
    if len(longest) < STICKY_MIN_STREAK:
        return None
    lowest = min(mult for _, mult in longest)
    lost = sum(trade.pnl_bps for trade, _ in longest)
    first, last = longest[0][0].exit_ts, longest[-1][0].exit_ts
    statement = (
        f"confidence multiplier too sticky: {len(longest)} consecutive losses "
        f"({signed_bps(lost)} bps, {format_utc(first)} to {format_utc(last)}) left it at "
        f"{lowest:.3f} or more, near its ceiling {ceiling:.2f}"
    )
    threshold = (
        f">= {STICKY_MIN_STREAK} consecutive losses with the multiplier >= "
        f"{STICKY_SHARE} x ceiling ({line:.3f})"
    )
    figures: dict[str, float | int | str] = {
        "consecutive_losses": len(longest),
        "loss_bps": lost,
        "lowest_multiplier": lowest,
        "ceiling": ceiling,
        "line": line,
        "first_exit": format_utc(first),
        "last_exit": format_utc(last),
    }
    return Hypothesis(
        kind="sticky_multiplier", statement=statement, threshold=threshold, figures=figures
    )


# --- renderers --------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return MISSING if value is None else format_utc(value)


def _window_line(report: ForensicsReport) -> str:
    if report.event_time is None:
        return "Nothing reconciled yet: no trade to examine."
    span = (
        f"{_when(report.window_start)} to {_when(report.event_time)} ({report.window_days} days)"
        if report.window_start is not None
        else f"lifetime to {_when(report.event_time)}"
    )
    return (
        f"Window {span}, {report.focus_horizon_hours} h horizon: {report.trades} trades, "
        f"{_losses(report.losses)}. Log read to {_when(report.generated_at)}."
    )


def _trade_cells(trade: WorstTrade, escape: Callable[[str], str]) -> list[str]:
    """Cells of one worst trade, the names from outside through `escape`."""
    run = trade.run
    telemetry = (
        [latency(run.latency_ms), str(run.tokens), usd(run.cost_usd), str(run.errors)]
        if run is not None
        else ["not on the log", MISSING, MISSING, MISSING]
    )
    return [
        str(trade.rank),
        escape(trade.agent),
        signed_bps(trade.pnl_bps),
        format_utc(trade.exit_ts),
        MISSING if trade.regime is None else escape(trade.regime),
        escape(trade.symbol),
        trade.direction,
        str(trade.run_id)[:8],
        *telemetry,
    ]


_TRADE_HEADERS = (
    "#>", "agent", "pnl bps>", "exit", "regime", "symbol", "side", "run",
    "latency>", "tokens>", "cost>", "errors>",
)  # fmt: skip


def _losses(count: int) -> str:
    return f"{count} loss" if count == 1 else f"{count} losses"


def _agent_summary(row: AgentForensics) -> str:
    tokens = MISSING if row.median_tokens is None else f"{row.median_tokens:.0f}"
    missing = f", {row.missing_runs} with no run on the log" if row.missing_runs else ""
    return (
        f"{_losses(row.losses)} of {row.trades} trades{missing}: {signed_bps(row.loss_bps)} bps, "
        f"average {signed_bps(row.avg_loss_bps)} bps. {row.runs} runs: median latency "
        f"{latency(row.median_latency_ms)}, median tokens {tokens}, "
        f"error rate {ratio(row.error_rate)}."
    )


def forensics_markdown(report: ForensicsReport) -> str:
    """For a pull request or a wiki page; every name and reason escaped (`md_text`)."""
    lines = ["# Failure forensics", "", _window_line(report), ""]
    lines += [f"## {len(report.worst)} worst trades", ""]
    if report.worst:
        rows = [_trade_cells(trade, md_text) for trade in report.worst]
        lines.append(md_table(_TRADE_HEADERS, rows))
    else:
        lines += ["No losing trade in the window.", ""]
    lines += ["## Agents with losses", ""]
    for row in report.agents:
        group = f" ({md_text(row.strategy_class)})" if row.strategy_class else ""
        lines += [f"### {md_text(row.agent)}{group}", "", _agent_summary(row), ""]
        lines.append("Example runs: " + ", ".join(f"`{run}`" for run in row.example_runs))
        lines.append("")
        if row.hypotheses:
            lines += [
                f"- **{h.kind.replace('_', ' ')}**: {md_text(h.statement)} (holds by {h.threshold})"
                for h in row.hypotheses
            ]
        else:
            lines.append("No hypothesis holds by the thresholds.")
        lines.append("")
    if not report.agents:
        lines += ["None.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def forensics_text(report: ForensicsReport) -> str:
    """For a terminal or a plain-text mail."""
    lines = ["FAILURE FORENSICS", printable(_window_line(report)), ""]
    lines.append(f"{len(report.worst)} worst trades:")
    if report.worst:
        table = text_table(_TRADE_HEADERS, [_trade_cells(t, printable) for t in report.worst], "  ")
        lines.append(table.rstrip("\n"))
    else:
        lines.append("  no losing trade in the window")
    lines += ["", "Agents with losses:"]
    for row in report.agents:
        group = f" ({row.strategy_class})" if row.strategy_class else ""
        lines.append(printable(f"  {row.agent}{group}: {_agent_summary(row)}"))
        lines.append("    example runs: " + ", ".join(str(run) for run in row.example_runs))
        lines += [
            printable(f"    hypothesis: {h.statement} (holds by {h.threshold})")
            for h in row.hypotheses
        ] or ["    no hypothesis holds by the thresholds"]
    if not report.agents:
        lines.append("  none")
    return "\n".join(lines) + "\n"

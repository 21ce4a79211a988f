"""Per-agent statistics as a pure fold: bounded, idempotent, exact (SPEC section 6).

One `StatsState` per table key. The key may be an agent, a strategy class or
"portfolio": the fold never looks at `agent`, so the caller decides what is pooled.

Time. Every fact has a *fact time*: a trade's `exit_ts` (when its PnL became real)
and a run's `ts` (when it completed). The state's `watermark` is the newest fact
time it has accepted and its *horizon* is `watermark - window`. Trades and runs at
or before the horizon are evicted, because no window ending at or after the
watermark can hold them. So `stats_at(state, as_of, window_days)` is exact for
every `as_of >= watermark`; an earlier `as_of` may lack evicted facts.

Idempotence. Each event is applied at most once. An event whose id is already in
the window, at the same fact time, is a duplicate (found by bisection in its day,
since the fact order ends with the id; a record that reuses an id with another
fact time is a different fact). An event whose fact time is at or before the horizon is
ignored, because the ids that would say whether it was already seen are gone.
The price of that rule: a fact that arrives more than a window later than newer
facts is missing from the lifetime figures too (with SPEC's 30-day window, a
reconciliation a month late).

Cost per event. The window is kept in UTC-day buckets (`streams.core.day_window`),
each sorted and carrying the totals of its facts in that order. Folding a fact touches
its own day only (an event's fact time never changes, so its duplicate can only be in
that day); eviction drops whole days and trims the one day the horizon cuts. The store
(`streams.runtime.sharded_store`, spec `STATS_SHARDS`) then writes that day alone.

Rules and reports. `rule_stats_at` gives every figure a rule decides on, merged
from the day totals: the two days the window cuts, and the days between merged by
calendar block (remembered while the window slides): its cost is about three merges
per month of window, whatever the trades, so rules (per event) must call it.
`stats_at` adds the report-only figures (CVaR95, p95 latency, IC, smart Sharpe), which
need every trade of the window: reports and projections call it, on read, never once
per event.

Lifetime. Counts, sums, Welford's running mean and variance, and the running peak
and max drawdown of cumulative PnL, all updated in fold order: log order, which
is exit order because reconciliations are emitted as prices pass the exit time.
All of it is O(1) in size.

The lifetime has no tails: `lifetime_stats` reports `cvar95_bps` and
`p95_latency_ms` as None. The state lives in a Faust table, and every update
writes it to the table's Kafka changelog, so it must stay bounded. CVaR95 and p95
latency are order statistics over ceil(5% of n) values, and n keeps growing, so
no bounded buffer keeps them exact. Example: fold -10 then -5. Now n = 2 and the
tail holds one value, -10, so -5 would be dropped. After 19 more trades of 0,
n = 21, the tail holds two values, and the right ones are -10 and -5. Exact
lifetime tails therefore come from the projections, which read the whole log:
they call `tail_stats` over the full history. The window tails in `stats_at`
stay exact, since the window keeps its facts.

`window_days == 0` means no window: nothing is evicted, the retained trades and
runs are the lifetime ones, and they grow without bound (the one unbounded case).
Pass the same `window_days` to every call for one state. A smaller window is exact
at once. A larger one becomes exact only after new facts have filled it.
"""

from __future__ import annotations

import heapq
import math
import statistics
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from pydantic import Field

from schemas.envelope import Event, UtcDatetime, WireModel, to_utc
from schemas.events import Direction, RunCompleted, SignalReconciled
from schemas.policy import Thresholds
from schemas.stats import AgentStats
from streams.core.day_window import (
    DayBucket,
    MergedDays,
    day_of,
    days_between,
    evict_days,
    put_day,
    within,
)

# How `streams.runtime.sharded_store` splits a StatsState: one shard per day of trades and of
# runs. Paths are relative to the state; a container prefixes them (e.g. "stats.").
STATS_SHARDS: dict[str, str] = {"trade_days": "days", "run_days": "days"}


class Trade(WireModel):
    """What the stats use from one focus-horizon reconciliation."""

    event_id: uuid.UUID
    signal_id: uuid.UUID
    exit_ts: UtcDatetime
    pnl_bps: float
    # The forecast that the information coefficient scores: +confidence for LONG,
    # -confidence for SHORT.
    signed_confidence: float

    @classmethod
    def of(cls, rec: SignalReconciled) -> Trade:
        sign = 1.0 if rec.direction is Direction.LONG else -1.0
        # Built from a validated event: nothing to validate again.
        return cls.model_construct(
            event_id=rec.event_id,
            signal_id=rec.signal_id,
            exit_ts=rec.exit_ts,
            pnl_bps=rec.realized_pnl_bps,
            signed_confidence=sign * rec.confidence,
        )

    @property
    def at(self) -> datetime:
        """The fact time: when the PnL became real."""
        return self.exit_ts

    def sort_key(self) -> tuple[datetime, uuid.UUID, uuid.UUID]:
        """Trade order: exit time, then signal id; the event id only breaks exact ties."""
        return (self.exit_ts, self.signal_id, self.event_id)


class Run(WireModel):
    """What the stats use from one executed run."""

    event_id: uuid.UUID
    ts: UtcDatetime
    latency_ms: float
    errors: int
    cost_usd: float
    tokens_in: int
    tokens_out: int

    @classmethod
    def of(cls, run: RunCompleted) -> Run:
        return cls.model_construct(
            event_id=run.event_id,
            ts=run.ts,
            latency_ms=run.latency_ms,
            errors=run.errors,
            cost_usd=run.cost_usd,
            tokens_in=run.tokens_in,
            tokens_out=run.tokens_out,
        )

    @property
    def at(self) -> datetime:
        return self.ts

    def sort_key(self) -> tuple[datetime, uuid.UUID]:
        return (self.ts, self.event_id)


class TradeTotals(WireModel):
    """Running sums over trades, in the order they were added; O(1) per trade.

    The lifetime keeps one of these, and so does each day of the window, over the
    day's trades in trade order. A window is the `concat` of its days, so it gets
    the same figures whatever order the facts arrived in.
    """

    count: int = 0
    hits: int = 0
    pnl_sum_bps: float = 0.0
    # Welford: running mean, and sum of squared deviations from it. This is stable where
    # a sum of squares minus a squared sum would cancel catastrophically.
    mean_bps: float = 0.0
    m2: float = 0.0
    gains_bps: float = 0.0
    losses_bps: float = 0.0  # |sum of the non-positive pnls|
    downside_sq: float = 0.0  # sum of min(pnl, 0)^2
    cum_bps: float = 0.0
    peak_bps: float = 0.0  # starts at 0: a first loss is already a drawdown
    # The lowest cumulative pnl, from 0: what a drawdown carried in from earlier
    # segments falls to inside this one (see `concat`).
    trough_bps: float = 0.0
    max_drawdown_bps: float = 0.0

    def plus(self, pnls: Iterable[float]) -> TradeTotals:
        """Return the totals with `pnls` appended, in the given order."""
        count, hits, pnl_sum = self.count, self.hits, self.pnl_sum_bps
        mean, m2 = self.mean_bps, self.m2
        gains, losses, downside_sq = self.gains_bps, self.losses_bps, self.downside_sq
        cum, peak, trough = self.cum_bps, self.peak_bps, self.trough_bps
        max_drawdown = self.max_drawdown_bps
        for pnl in pnls:
            count += 1
            pnl_sum += pnl
            delta = pnl - mean
            mean += delta / count
            m2 += delta * (pnl - mean)
            if pnl > 0:
                hits += 1
                gains += pnl
            else:
                losses -= pnl
                downside_sq += pnl * pnl
            cum += pnl
            peak = max(peak, cum)
            trough = min(trough, cum)
            max_drawdown = max(max_drawdown, peak - cum)
        return TradeTotals(
            count=count,
            hits=hits,
            pnl_sum_bps=pnl_sum,
            mean_bps=mean,
            m2=m2,
            gains_bps=gains,
            losses_bps=losses,
            downside_sq=downside_sq,
            cum_bps=cum,
            peak_bps=peak,
            trough_bps=trough,
            max_drawdown_bps=max_drawdown,
        )

    @staticmethod
    def concat(segments: Iterable[TradeTotals]) -> TradeTotals:
        """The totals of consecutive segments' trades taken as one sequence.

        Counts and sums add; mean and m2 merge as in Chan et al. (the parallel form
        of Welford). Cumulative PnL of the right segment is shifted by the left's
        `cum`, so the drawdown is max(dd_left, dd_right, peak_left - (cum_left +
        trough_right)) and the peak max(peak_left, cum_left + peak_right).
        """
        count = hits = 0
        pnl_sum = mean = m2 = gains = losses = downside_sq = 0.0
        cum = peak = trough = max_drawdown = 0.0
        for part in segments:
            if not part.count:
                continue
            if not count:
                mean, m2 = part.mean_bps, part.m2
            else:
                total = count + part.count
                delta = part.mean_bps - mean
                mean += delta * part.count / total
                m2 += part.m2 + delta * delta * count * part.count / total
            count += part.count
            hits += part.hits
            pnl_sum += part.pnl_sum_bps
            gains += part.gains_bps
            losses += part.losses_bps
            downside_sq += part.downside_sq
            max_drawdown = max(max_drawdown, part.max_drawdown_bps, peak - (cum + part.trough_bps))
            peak = max(peak, cum + part.peak_bps)
            trough = min(trough, cum + part.trough_bps)
            cum += part.cum_bps
        return TradeTotals(
            count=count,
            hits=hits,
            pnl_sum_bps=pnl_sum,
            mean_bps=mean,
            m2=m2,
            gains_bps=gains,
            losses_bps=losses,
            downside_sq=downside_sq,
            cum_bps=cum,
            peak_bps=peak,
            trough_bps=trough,
            max_drawdown_bps=max_drawdown,
        )


class RunTotals(WireModel):
    """Running sums over executed runs; O(1) per run."""

    count: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0

    def plus(self, runs: Iterable[Run]) -> RunTotals:
        """Return the totals with `runs` added one by one, so that appending a run to a
        day gives the very floats a recomputation of the day would."""
        count, errors, latency, cost = self.count, self.errors, self.latency_sum_ms, self.cost_usd
        tokens_in, tokens_out = self.tokens_in, self.tokens_out
        for run in runs:
            count += 1
            errors += run.errors
            latency += run.latency_ms
            cost += run.cost_usd
            tokens_in += run.tokens_in
            tokens_out += run.tokens_out
        return RunTotals(
            count=count,
            errors=errors,
            latency_sum_ms=latency,
            cost_usd=cost,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )

    @staticmethod
    def concat(parts: Iterable[RunTotals]) -> RunTotals:
        """The totals of several groups of runs together."""
        count = errors = tokens_in = tokens_out = 0
        latency = cost = 0.0
        for part in parts:
            count += part.count
            errors += part.errors
            latency += part.latency_sum_ms
            cost += part.cost_usd
            tokens_in += part.tokens_in
            tokens_out += part.tokens_out
        return RunTotals(
            count=count,
            errors=errors,
            latency_sum_ms=latency,
            cost_usd=cost,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )


class TradeDay(DayBucket[Trade, TradeTotals]):
    @classmethod
    def fold(cls, totals: TradeTotals | None, facts: Iterable[Trade]) -> TradeTotals:
        return (TradeTotals() if totals is None else totals).plus(t.pnl_bps for t in facts)


class RunDay(DayBucket[Run, RunTotals]):
    @classmethod
    def fold(cls, totals: RunTotals | None, facts: Iterable[Run]) -> RunTotals:
        return (RunTotals() if totals is None else totals).plus(facts)


# Remembered runs of days, per kind of memo (from the left, from the right, joined):
# about ten live ones for each key a worker assesses (agents, portfolio) with a 90-day
# window, so 1,000 agents fit. A live run that is pushed out is merged again, to the
# same bits; entries hold their days weakly, so the memo keeps no evicted day alive.
_TRADE_WINDOWS = MergedDays(TradeTotals.concat, 32768)
_RUN_WINDOWS = MergedDays(RunTotals.concat, 32768)


class StatsState(WireModel):
    """The fold's state for one key. Frozen and JSON round-trippable: it lives in a Faust table.

    `trade_days` and `run_days` are keyed by ISO UTC day, in day order, and hold
    only days with facts after the horizon.
    """

    watermark: datetime | None = None  # newest fact time accepted
    trade_days: dict[str, TradeDay] = Field(default_factory=dict)
    run_days: dict[str, RunDay] = Field(default_factory=dict)
    lifetime_trades: TradeTotals = Field(default_factory=TradeTotals)
    lifetime_runs: RunTotals = Field(default_factory=RunTotals)

    def trades(self) -> Iterator[Trade]:
        """The retained trades in trade order."""
        for day in self.trade_days.values():
            yield from day.facts

    def runs(self) -> Iterator[Run]:
        """The retained runs in run order."""
        for day in self.run_days.values():
            yield from day.facts


def apply_run(state: StatsState, run: RunCompleted, window_days: int) -> StatsState:
    """Fold a completed run; one refused by the kill switch never executed and is not counted."""
    if run.skipped_reason is not None:
        return state
    window = _window(window_days)
    if _is_late(state, run.ts, window):
        return state
    day = day_of(run.ts)
    bucket = state.run_days.get(day)
    facts = Run.of(run)
    if bucket is not None and bucket.has(facts):
        return state
    bucket = RunDay.of((facts,)) if bucket is None else bucket.with_fact(facts)
    state = state.model_copy(
        update={
            "run_days": put_day(state.run_days, day, bucket),
            "lifetime_runs": state.lifetime_runs.plus([facts]),
        }
    )
    return _advance(state, facts.ts, window)


def apply_reconciled(
    state: StatsState, rec: SignalReconciled, window_days: int, focus_horizon_hours: int
) -> StatsState:
    """Fold a reconciliation. Only the focus horizon counts, so a signal is one trade."""
    if rec.horizon_hours != focus_horizon_hours:
        return state
    window = _window(window_days)
    if _is_late(state, rec.exit_ts, window):
        return state
    day = day_of(rec.exit_ts)
    bucket = state.trade_days.get(day)
    trade = Trade.of(rec)
    if bucket is not None and bucket.has(trade):
        return state
    bucket = TradeDay.of((trade,)) if bucket is None else bucket.with_fact(trade)
    state = state.model_copy(
        update={
            "trade_days": put_day(state.trade_days, day, bucket),
            "lifetime_trades": state.lifetime_trades.plus([trade.pnl_bps]),
        }
    )
    return _advance(state, trade.exit_ts, window)


def apply_event(state: StatsState, event: Event, thresholds: Thresholds) -> StatsState:
    """Fold any event under the policy in force; events the stats do not use change nothing."""
    if isinstance(event, RunCompleted):
        return apply_run(state, event, thresholds.window_days)
    if isinstance(event, SignalReconciled):
        return apply_reconciled(
            state, event, thresholds.window_days, thresholds.focus_horizon_hours
        )
    return state


def rule_stats_at(state: StatsState, as_of: datetime, window_days: int) -> AgentStats:
    """The figures rules decide on, over trades with exit_ts, and runs with ts, in
    (as_of - window, as_of]; the report-only ones (`cvar95_bps`, `p95_latency_ms`,
    `information_coefficient`, `smart_sharpe`) are None.

    Exact for `as_of >= state.watermark` (see the module docstring). With
    `window_days == 0` the window is the whole retained history up to `as_of`.
    Trades are taken in trade order (exit_ts, signal_id), which fixes the drawdown.
    Whole days inside the window contribute their totals; only a day the window
    cuts is summed trade by trade.
    """
    start, end = _bounds(as_of, window_days)
    trades = _TRADE_WINDOWS.window(state.trade_days, start, end)
    runs = _RUN_WINDOWS.window(state.run_days, start, end)
    return _summarize(trades, runs)


def window_drawdown_bps(state: StatsState, as_of: datetime, window_days: int) -> float:
    """The max drawdown of `rule_stats_at`, from the trades alone: what order sizing and
    the breach read, at half the cost."""
    return _TRADE_WINDOWS.window(state.trade_days, *_bounds(as_of, window_days)).max_drawdown_bps


def window_cvar95_bps(state: StatsState, as_of: datetime, window_days: int) -> float | None:
    """The CVaR95 of `stats_at`, alone: capital at risk reads it for every allocation it
    emits. The worst ceil(5% of n) of the window by partial selection, not a full sort:
    the same values in the same order, so the same bits."""
    pnls = [t.pnl_bps for t in _window_trades(state, *_bounds(as_of, window_days))]
    return cvar95(heapq.nsmallest((len(pnls) + 19) // 20, pnls))


def stats_at(state: StatsState, as_of: datetime, window_days: int) -> AgentStats:
    """`rule_stats_at` plus the report-only figures, which read every trade and run of
    the window: CVaR95, p95 latency, the information coefficient and the smart Sharpe
    ratio (its autocorrelation is taken in trade order). For reports, not per event.
    """
    stats = rule_stats_at(state, as_of, window_days)
    start, end = _bounds(as_of, window_days)
    trades = _window_trades(state, start, end)
    latencies = (
        r.latency_ms
        for day in days_between(state.run_days, start, end)[1]
        for r in day.facts
        if within(r.ts, start, end)
    )
    pnls = [t.pnl_bps for t in trades]
    cvar95_bps, p95_latency_ms = tail_stats(pnls, latencies)
    return stats.model_copy(
        update={
            "cvar95_bps": cvar95_bps,
            "p95_latency_ms": p95_latency_ms,
            "information_coefficient": information_coefficient(trades),
            "smart_sharpe": smart_sharpe(stats.sharpe, pnls),
        }
    )


def _window_trades(state: StatsState, start: datetime | None, end: datetime) -> list[Trade]:
    """The trades with exit_ts in (start, end], in trade order."""
    return [
        t
        for day in days_between(state.trade_days, start, end)[1]
        for t in day.facts
        if within(t.exit_ts, start, end)
    ]


def lifetime_stats(state: StatsState) -> AgentStats:
    """Stats over every accepted event, from the exact lifetime accumulators.

    `cvar95_bps`, `p95_latency_ms`, `information_coefficient` and `smart_sharpe`
    are None. They need the whole sample, and the bounded state does not keep it:
    the projections compute the tails over the full log with `tail_stats` (see the
    module docstring).
    """
    return _summarize(state.lifetime_trades, state.lifetime_runs)


def tail_stats(
    pnls: Iterable[float], latencies: Iterable[float]
) -> tuple[float | None, float | None]:
    """(CVaR95 of `pnls`, p95 of `latencies`), in any order; None for an empty side.

    The same formulas as the window figures of `stats_at`: `cvar95` and `p95`.
    Pure, for the projections that read the whole log to compute the lifetime tails.
    """
    return cvar95(sorted(pnls)), p95(sorted(latencies))


def _summarize(trades: TradeTotals, runs: RunTotals) -> AgentStats:
    """Turn the totals into the reported figures. None means "not known", never zero.

    Formulas (n = trades, pnl in bps):
      hit_rate = #(pnl > 0) / n; error_rate = errors / runs;
      mean = pnl_sum / n; std = sample standard deviation (divides by n - 1);
      sharpe = mean / std; sortino = mean / sqrt(sum(min(pnl, 0)^2) / n);
      profit_factor = gross gains / |gross losses| (None without a losing trade);
      expectancy = hit_rate * avg_win - (1 - hit_rate) * avg_loss_abs;
      max drawdown = max over trades of (peak - cumulative pnl), the peak starting
      at 0, reported as a positive number of bps.
    The tails (`cvar95`, `p95`, via `tail_stats`) are not totals: None here.
    """
    n = trades.count
    hit_rate = trades.hits / n if n else None
    # max(.., 0): Welford can leave m2 a hair below zero for equal values.
    std = math.sqrt(max(trades.m2, 0.0) / (n - 1)) if n >= 2 else None
    mean = trades.mean_bps if n else None
    downside_deviation = math.sqrt(trades.downside_sq / n) if n else None
    return AgentStats(
        trades=n,
        runs=runs.count,
        errors=runs.errors,
        pnl_sum_bps=trades.pnl_sum_bps,
        hit_rate=hit_rate,
        error_rate=_ratio(runs.errors, runs.count),
        avg_latency_ms=_ratio(runs.latency_sum_ms, runs.count),
        cost_usd=runs.cost_usd,
        tokens_in=runs.tokens_in,
        tokens_out=runs.tokens_out,
        max_drawdown_bps=trades.max_drawdown_bps,
        mean_pnl_bps=mean,
        std_pnl_bps=std,
        sharpe=_ratio(mean, std),
        sortino=_ratio(mean, downside_deviation),
        profit_factor=_ratio(trades.gains_bps, trades.losses_bps),
        expectancy_bps=expectancy(trades),
    )


def expectancy(trades: TradeTotals) -> float | None:
    """Expectancy = hit_rate * avg_win - (1 - hit_rate) * avg_loss_abs.

    A non-winning trade (pnl <= 0) counts as a loss, so this is algebraically the
    mean pnl. It is reported under its own name because traders read it that way.
    """
    n = trades.count
    if not n:
        return None
    losers = n - trades.hits
    hit_rate = trades.hits / n
    avg_win = trades.gains_bps / trades.hits if trades.hits else 0.0
    avg_loss_abs = trades.losses_bps / losers if losers else 0.0
    return hit_rate * avg_win - (1 - hit_rate) * avg_loss_abs


def cvar95(pnls_ascending: Sequence[float]) -> float | None:
    """CVaR95 = mean of the worst ceil(5% of n) pnls (at least one trade when n >= 1)."""
    n = len(pnls_ascending)
    if not n:
        return None
    worst = (n + 19) // 20  # ceil(n / 20) in integers: 0.05 * n is not exact in floats
    return statistics.fmean(pnls_ascending[:worst])


def p95(values_ascending: Sequence[float]) -> float | None:
    """p95 by nearest rank: the value at rank ceil(0.95 n), counting from 1.

    Nearest rank rather than interpolation: the result is always a latency that
    was actually observed.
    """
    n = len(values_ascending)
    if not n:
        return None
    rank = (95 * n + 99) // 100  # ceil(0.95 n) in integers
    return values_ascending[rank - 1]


def information_coefficient(trades: Sequence[Trade]) -> float | None:
    """IC = Spearman rank correlation of (direction sign * confidence) with realized pnl.

    It asks whether the agent's conviction ranks its outcomes. None with fewer than
    3 trades or when either side is constant.
    """
    if len(trades) < 3:
        return None
    forecasts = _ranks([t.signed_confidence for t in trades])
    outcomes = _ranks([t.pnl_bps for t in trades])
    return _pearson(forecasts, outcomes)


def smart_sharpe(sharpe: float | None, pnls: Sequence[float]) -> float | None:
    """Smart Sharpe = sharpe / penalty, with quantstats' autocorrelation penalty.

    penalty = sqrt(1 + 2 * sum_{k=1}^{n-1} (1 - k/n) * rho_k), where quantstats
    (`stats.autocorr_penalty`) sets rho_k = |rho_1|^k, rho_1 being the lag-1
    Pearson autocorrelation of the pnl series in trade order. That AR(1) form keeps
    the penalty >= 1. Raw per-lag autocorrelations could make the root negative.
    None when the Sharpe ratio or rho_1 is undefined (fewer than 3 trades, constant
    lagged series).
    """
    if sharpe is None:
        return None
    rho_1 = _pearson(pnls[:-1], pnls[1:])
    if rho_1 is None:
        return None
    n, coef = len(pnls), abs(rho_1)
    penalty = math.sqrt(1 + 2 * math.fsum((1 - k / n) * coef**k for k in range(1, n)))
    return sharpe / penalty


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r, or None where it is undefined (fewer than 2 points, a constant side)."""
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when that is not a finite number (a denominator
    of 1e-308 would give infinity, which no stat may carry)."""
    if numerator is None or not denominator:
        return None
    ratio = numerator / denominator
    return ratio if math.isfinite(ratio) else None


def _window(window_days: int) -> timedelta | None:
    if window_days < 0:
        raise ValueError(f"window_days must be >= 0 (0 = lifetime), got {window_days}")
    return timedelta(days=window_days) if window_days else None


def _bounds(as_of: datetime, window_days: int) -> tuple[datetime | None, datetime]:
    """(start, end) of the window (start, end]; no start for the lifetime."""
    end = to_utc(as_of)
    window = _window(window_days)
    return (None if window is None else end - window), end


def _is_late(state: StatsState, fact_ts: datetime, window: timedelta | None) -> bool:
    """True for a fact at or before the horizon (see the module docstring)."""
    return (
        window is not None and state.watermark is not None and (fact_ts <= state.watermark - window)
    )


def _advance(state: StatsState, fact_ts: datetime, window: timedelta | None) -> StatsState:
    """Move the watermark to `fact_ts` if it is newer, and evict what the horizon passed."""
    if state.watermark is not None and fact_ts <= state.watermark:
        return state  # the horizon did not move, and the new fact is after it
    if window is None:
        return state.model_copy(update={"watermark": fact_ts})
    horizon = fact_ts - window
    return state.model_copy(
        update={
            "watermark": fact_ts,
            "trade_days": evict_days(state.trade_days, horizon),
            "run_days": evict_days(state.run_days, horizon),
        }
    )

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
`stats_at` adds the report-only figures (CVaR95, p95 latency, IC, which need every
trade of the window, and the smart Sharpe): reports and projections call it, on read,
never once per event.

Lifetime. Counts, sums, Welford's running mean and central moments up to the fourth,
the lag-1 pairs' moments, and the running peak and max drawdown of cumulative PnL,
all updated in fold order: log order, which is exit order because reconciliations
are emitted as prices pass the exit time.
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

import math
import statistics
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from pydantic import Field

from schemas.envelope import Event, UtcDatetime, WireModel, to_utc
from schemas.events import Direction, RunCompleted, SignalReconciled
from schemas.policy import Thresholds
from schemas.stats import AgentStats
from streams.agents.significance import autocorrelation_penalty
from streams.core.day_window import (
    DayBucket,
    IdentityMemo,
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
    # Welford: running mean, and sums of the 2nd, 3rd and 4th powers of the deviations
    # from it (Pébay 2008). This is stable where a sum of squares minus a squared sum
    # would cancel catastrophically.
    mean_bps: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0
    gains_bps: float = 0.0
    losses_bps: float = 0.0  # |sum of the non-positive pnls|
    downside_sq: float = 0.0  # sum of min(pnl, 0)^2
    cum_bps: float = 0.0
    peak_bps: float = 0.0  # starts at 0: a first loss is already a drawdown
    # The lowest cumulative pnl, from 0: what a drawdown carried in from earlier
    # segments falls to inside this one (see `concat`).
    trough_bps: float = 0.0
    max_drawdown_bps: float = 0.0
    # The lag-1 pairs (pnl_i, pnl_i+1) in trade order, for the autocorrelation. Their
    # leads are every pnl but the last, their lags every pnl but the first; each side
    # keeps a Welford mean and m2, and the pairs their co-moment. Joining two segments
    # adds one pair, (last of the left, first of the right).
    first_bps: float = 0.0
    last_bps: float = 0.0
    lead_mean_bps: float = 0.0
    lead_m2: float = 0.0
    lag_mean_bps: float = 0.0
    lag_m2: float = 0.0
    lag_comoment: float = 0.0  # sum of (lead - lead mean) * (lag - lag mean)

    def plus(self, pnls: Iterable[float]) -> TradeTotals:
        """Return the totals with `pnls` appended, in the given order.

        One value at a time: Welford's update for the pairs, Terriberry's (Welford's
        extended to m3 and m4) for the moments; `concat` merges whole groups. Kept
        inline, not as a merge with a group of one: this runs for every trade of a day
        the window cuts, on every event.
        """
        count, hits, pnl_sum = self.count, self.hits, self.pnl_sum_bps
        mean, m2, m3, m4 = self.mean_bps, self.m2, self.m3, self.m4
        gains, losses, downside_sq = self.gains_bps, self.losses_bps, self.downside_sq
        cum, peak, trough = self.cum_bps, self.peak_bps, self.trough_bps
        max_drawdown = self.max_drawdown_bps
        first, last = self.first_bps, self.last_bps
        lead_mean, lag_mean = self.lead_mean_bps, self.lag_mean_bps
        lead_m2, lag_m2, comoment = self.lead_m2, self.lag_m2, self.lag_comoment
        for pnl in pnls:
            if count:  # the pair (last, pnl) joins the `count - 1` before it
                lead_delta, lag_delta = last - lead_mean, pnl - lag_mean
                lead_mean += lead_delta / count
                lag_mean += lag_delta / count
                lead_m2 += lead_delta * (last - lead_mean)
                lag_m2 += lag_delta * (pnl - lag_mean)
                comoment += lead_delta * (pnl - lag_mean)
            else:
                first = pnl
            last = pnl
            before = count
            count += 1
            delta = pnl - mean
            delta_n = delta / count
            delta_n2 = delta_n * delta_n
            term = delta * delta_n * before
            mean += delta_n
            m4 += term * delta_n2 * (count * count - 3 * count + 3)
            m4 += 6 * delta_n2 * m2 - 4 * delta_n * m3
            m3 += term * delta_n * (count - 2) - 3 * delta_n * m2
            m2 += term
            pnl_sum += pnl
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
            m3=m3,
            m4=m4,
            gains_bps=gains,
            losses_bps=losses,
            downside_sq=downside_sq,
            cum_bps=cum,
            peak_bps=peak,
            trough_bps=trough,
            max_drawdown_bps=max_drawdown,
            first_bps=first,
            last_bps=last,
            lead_mean_bps=lead_mean,
            lag_mean_bps=lag_mean,
            lead_m2=lead_m2,
            lag_m2=lag_m2,
            lag_comoment=comoment,
        )

    @staticmethod
    def concat(segments: Iterable[TradeTotals]) -> TradeTotals:
        """The totals of consecutive segments' trades taken as one sequence.

        Counts and sums add; the mean and the central moment sums merge as in Chan
        et al. and Pébay (2008), the parallel forms of Welford; the lag-1 pairs are
        the left's, the right's and (last_left, first_right), merged the same way.
        Cumulative PnL of the right segment is shifted by the left's `cum`, so the
        drawdown is max(dd_left, dd_right, peak_left - (cum_left + trough_right))
        and the peak max(peak_left, cum_left + peak_right).
        """
        count = hits = 0
        pnl_sum = gains = losses = downside_sq = 0.0
        cum = peak = trough = max_drawdown = 0.0
        mean = m2 = m3 = m4 = first = last = 0.0
        pairs: _Pairs = (0.0, 0.0, 0.0, 0.0, 0.0)
        for part in segments:
            if not part.count:
                continue
            if count:
                bridge = (last, part.first_bps, 0.0, 0.0, 0.0)
                pairs = _merged_pairs(count - 1, pairs, 1, bridge)
                pairs = _merged_pairs(count, pairs, part.count - 1, part.lag1_pairs())
                # Pébay (2008) eqs. 3.1 and 2.1, the higher moments first: they read
                # the m2 and m3 from before the merge.
                n_a, n_b = count, part.count
                n = n_a + n_b
                delta = part.mean_bps - mean
                delta_n = delta / n
                m4 += (
                    part.m4
                    + delta * delta_n**3 * n_a * n_b * (n_a * n_a - n_a * n_b + n_b * n_b)
                    + 6 * delta_n * delta_n * (n_a * n_a * part.m2 + n_b * n_b * m2)
                    + 4 * delta_n * (n_a * part.m3 - n_b * m3)
                )
                m3 += (
                    part.m3
                    + delta * delta_n * delta_n * n_a * n_b * (n_a - n_b)
                    + 3 * delta_n * (n_a * part.m2 - n_b * m2)
                )
                m2 += part.m2 + delta * delta_n * n_a * n_b
                mean += delta_n * n_b
            else:
                first, pairs = part.first_bps, part.lag1_pairs()
                mean, m2, m3, m4 = part.mean_bps, part.m2, part.m3, part.m4
            last = part.last_bps
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
        lead_mean, lag_mean, lead_m2, lag_m2, comoment = pairs
        return TradeTotals(
            count=count,
            hits=hits,
            pnl_sum_bps=pnl_sum,
            mean_bps=mean,
            m2=m2,
            m3=m3,
            m4=m4,
            gains_bps=gains,
            losses_bps=losses,
            downside_sq=downside_sq,
            cum_bps=cum,
            peak_bps=peak,
            trough_bps=trough,
            max_drawdown_bps=max_drawdown,
            first_bps=first,
            last_bps=last,
            lead_mean_bps=lead_mean,
            lag_mean_bps=lag_mean,
            lead_m2=lead_m2,
            lag_m2=lag_m2,
            lag_comoment=comoment,
        )

    def lag1_pairs(self) -> _Pairs:
        """The lag-1 pairs' moments, as `_merged_pairs` takes them."""
        return (
            self.lead_mean_bps,
            self.lag_mean_bps,
            self.lead_m2,
            self.lag_m2,
            self.lag_comoment,
        )


# The moments of a group of lag-1 pairs: the means and m2s of their leads and lags, and
# their co-moment.
_Pairs = tuple[float, float, float, float, float]


def _merged_pairs(count: int, pairs: _Pairs, other_count: int, other: _Pairs) -> _Pairs:
    """Two groups of pairs, of `count` and `other_count` pairs, as one (Chan et al., and
    its two-variable form for the co-moment)."""
    if not other_count:
        return pairs
    if not count:
        return other
    lead_mean, lag_mean, lead_m2, lag_m2, comoment = pairs
    other_lead_mean, other_lag_mean, other_lead_m2, other_lag_m2, other_comoment = other
    n = count + other_count
    lead_delta, lag_delta = other_lead_mean - lead_mean, other_lag_mean - lag_mean
    weight = count * other_count / n
    return (
        lead_mean + lead_delta * other_count / n,
        lag_mean + lag_delta * other_count / n,
        lead_m2 + other_lead_m2 + lead_delta * lead_delta * weight,
        lag_m2 + other_lag_m2 + lag_delta * lag_delta * weight,
        comoment + other_comoment + lead_delta * lag_delta * weight,
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
    return apply_trade(state, Trade.of(rec), window_days)


def apply_trade(state: StatsState, trade: Trade, window_days: int) -> StatsState:
    """Fold one focus-horizon trade (a redelivered one changes nothing)."""
    window = _window(window_days)
    if _is_late(state, trade.exit_ts, window):
        return state
    day = day_of(trade.exit_ts)
    bucket = state.trade_days.get(day)
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


# Each whole day's pnls sorted once, remembered by the day's identity (held weakly).
_SORTED_PNLS: IdentityMemo[list[float]] = IdentityMemo(32768)


def window_cvar95_bps(state: StatsState, as_of: datetime, window_days: int) -> float | None:
    """The CVaR95 of `stats_at`, alone: capital at risk reads it for every allocation it
    emits, and a fleet that lives emits one per rebalance. The worst ceil(5% of n) of the
    window come from each day's pnls sorted once (`_smallest`), not from a pass over
    every trade of the window (86 ms at 292,000 trades; this: 4 ms): the same values in
    the same order, so the same bits."""
    start, end = _bounds(as_of, window_days)
    days = [_sorted_pnls(day, start, end) for day in days_between(state.trade_days, start, end)[1]]
    return cvar95(_smallest(days, (sum(map(len, days)) + 19) // 20))


def _sorted_pnls(day: TradeDay, start: datetime | None, end: datetime) -> list[float]:
    """The day's pnls in (start, end], ascending; a day wholly inside is sorted once."""
    facts = day.facts
    if not (within(facts[0].exit_ts, start, end) and within(facts[-1].exit_ts, start, end)):
        return sorted(t.pnl_bps for t in facts if within(t.exit_ts, start, end))
    key, known = _SORTED_PNLS.get((day,))
    if known is None:
        known = _SORTED_PNLS.put(key, (day,), sorted(t.pnl_bps for t in facts))
    return known


def _smallest(ascending_lists: Sequence[list[float]], k: int) -> list[float]:
    """The k smallest values of ascending lists, ascending. A value line found by
    bisection, with at least k values at or below it, cuts each list to a prefix; only
    those prefixes are merged. The search stops at a line with exactly k values at or
    below it: any lower line that keeps k values keeps those same k."""
    lists = [values for values in ascending_lists if values]
    if not k or not lists:
        return []
    low, high = min(v[0] for v in lists), max(v[-1] for v in lists)
    for _ in range(64):  # holds throughout: at least k values <= high
        middle = (low + high) / 2
        if not low < middle < high:
            break
        below = sum(bisect_right(values, middle) for values in lists)
        if below >= k:
            high = middle
            if below == k:
                break
        else:
            low = middle
    return sorted(v for values in lists for v in values[: bisect_right(values, high)])[:k]


def stats_at(state: StatsState, as_of: datetime, window_days: int) -> AgentStats:
    """`rule_stats_at` plus the report-only figures: CVaR95, p95 latency and the
    information coefficient, which read every trade and run of the window, and the
    smart Sharpe ratio (from the rule figures). For reports, not per event.

    `psr`, `dsr` and `trials` stay None: they need the trials of the agent's strategy
    class, which the caller knows (`streams.agents.significance.with_significance`).
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
            "smart_sharpe": smart_sharpe(stats),
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
    are None, as in `rule_stats_at`. The first three need the whole sample, and the
    bounded state does not keep it: the projections compute the tails over the full
    log with `tail_stats` (see the module docstring).
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
      at 0, reported as a positive number of bps;
      skewness = (m3 / n) / (m2 / n)^1.5 and kurtosis = (m4 / n) / (m2 / n)^2 (population
      moments; kurtosis not excess, 3 for a normal), None without variance;
      autocorr_lag1 = Pearson's r of (pnl_1 .. pnl_n-1) with (pnl_2 .. pnl_n) in trade
      order, None with fewer than 3 trades or a constant side;
      cost_per_bps_usd = cost_usd / pnl_sum, None unless the pnl is positive.
    The tails (`cvar95`, `p95`, via `tail_stats`) are not totals: None here.
    """
    n = trades.count
    hit_rate = trades.hits / n if n else None
    std = math.sqrt(trades.m2 / (n - 1)) if n >= 2 else None
    mean = trades.mean_bps if n else None
    downside_deviation = math.sqrt(trades.downside_sq / n) if n else None
    # m2 > 0 exactly when the pnls differ: equal values leave every merge term at 0.
    varies = n >= 2 and trades.m2 > 0
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
        skewness=_ratio(trades.m3 / n, (trades.m2 / n) ** 1.5) if varies else None,
        kurtosis=_ratio(trades.m4 / n, (trades.m2 / n) ** 2) if varies else None,
        autocorr_lag1=lag1_autocorrelation(trades),
        cost_per_bps_usd=_ratio(runs.cost_usd, trades.pnl_sum_bps)
        if trades.pnl_sum_bps > 0
        else None,
    )


def lag1_autocorrelation(trades: TradeTotals) -> float | None:
    """Pearson's r of the lag-1 pairs, from their co-moment and side m2s. None where it
    is undefined: fewer than 2 pairs, or a constant side (whose m2 is then exactly 0)."""
    if trades.lead_m2 <= 0 or trades.lag_m2 <= 0:
        return None
    r = trades.lag_comoment / (math.sqrt(trades.lead_m2) * math.sqrt(trades.lag_m2))
    return max(-1.0, min(1.0, r))  # |r| <= 1 (Cauchy-Schwarz), up to rounding


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


def smart_sharpe(stats: AgentStats) -> float | None:
    """Smart Sharpe = sharpe / penalty, with quantstats' autocorrelation penalty.

    penalty = sqrt(1 + 2 * sum_{k=1}^{n-1} (1 - k/n) * rho_k), where quantstats
    (`stats.autocorr_penalty`) sets rho_k = |rho_1|^k, rho_1 being the lag-1
    Pearson autocorrelation of the pnl series in trade order (`autocorr_lag1`).
    That AR(1) form keeps the penalty >= 1. Raw per-lag autocorrelations could make
    the root negative. Summed in closed form (`autocorrelation_penalty`). None when
    the Sharpe ratio or rho_1 is undefined (fewer than 3 trades, constant lagged
    series).
    """
    if stats.sharpe is None or stats.autocorr_lag1 is None:
        return None
    return stats.sharpe / autocorrelation_penalty(stats.trades, stats.autocorr_lag1)


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

"""The stats fold: hand-checked formulas, window edges, and the fold laws.

Laws (Hypothesis): a duplicate changes nothing; per-key states do not care how
keys interleave; the window after any arrival order equals a fresh fold of only
the in-window facts and a from-scratch computation; the lifetime figures equal a
from-scratch computation over every accepted fact, except the tails (CVaR95, p95
latency), which the bounded state leaves to `tail_stats` over the full log.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Event
from schemas.events import Direction, RegimeChanged, RunCompleted, SignalReconciled
from schemas.policy import Thresholds
from schemas.stats import AgentStats
from streams.agents.stats import (
    StatsState,
    TradeTotals,
    _smallest,
    apply_event,
    apply_reconciled,
    apply_run,
    lifetime_stats,
    rule_stats_at,
    stats_at,
    tail_stats,
    window_cvar95_bps,
    window_drawdown_bps,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = Thresholds()  # 30-day window, 24 h focus horizon
WINDOW = timedelta(days=POLICY.window_days)
FOCUS = POLICY.focus_horizon_hours
AGENTS = ("alpha", "beta", "gamma")
FAST = settings(max_examples=60, deadline=None)
TAILS = ("cvar95_bps", "p95_latency_ms")  # not kept by the lifetime: see `tail_stats`
Fact = RunCompleted | SignalReconciled


def reconciled(
    exit_ts: datetime,
    pnl: float,
    *,
    direction: Direction = Direction.LONG,
    confidence: float = 0.5,
    horizon: int = FOCUS,
    agent: str = "alpha",
    event_id: uuid.UUID | None = None,
    signal_id: uuid.UUID | None = None,
) -> SignalReconciled:
    return SignalReconciled.create(
        event_id=event_id or uuid.uuid4(),
        ts=exit_ts,
        signal_id=signal_id or uuid.uuid4(),
        run_id=uuid.UUID(int=1),
        agent=agent,
        symbol="BTCUSDT",
        direction=direction,
        horizon_hours=horizon,
        entry_ts=exit_ts - timedelta(hours=horizon),
        entry_price=100.0,
        exit_ts=exit_ts,
        exit_price=100.0,
        realized_pnl_bps=pnl,
        confidence=confidence,
    )


def completed(
    ts: datetime,
    latency_ms: float = 100.0,
    *,
    errors: int = 0,
    cost_usd: float = 0.0,
    tokens_in: int = 0,
    tokens_out: int = 0,
    skipped_reason: str | None = None,
    agent: str = "alpha",
    event_id: uuid.UUID | None = None,
) -> RunCompleted:
    return RunCompleted.create(
        event_id=event_id or uuid.uuid4(),
        ts=ts,
        agent=agent,
        run_id=uuid.uuid4(),
        started_at=ts - timedelta(milliseconds=latency_ms),
        latency_ms=latency_ms,
        errors=errors,
        cost_usd=cost_usd,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        skipped_reason=skipped_reason,
    )


def fold(events: Iterable[Event], state: StatsState | None = None) -> StatsState:
    state = state or StatsState()
    for event in events:
        state = apply_event(state, event, POLICY)
    return state


def fold_by_agent(events: Iterable[Fact]) -> dict[str, StatsState]:
    states: dict[str, StatsState] = {}
    for event in events:
        states[event.agent] = apply_event(states.get(event.agent, StatsState()), event, POLICY)
    return states


# --- Hand-checked formulas --------------------------------------------------------------------

# Five trades in exit order, pnl and signed confidence (direction sign * confidence):
#   pnl:    10,  -20,   30,   -5,   15
#   signed: 0.9, -0.5,  0.8,  -0.2, 0.6
HAND_TRADES = [
    (10.0, Direction.LONG, 0.9),
    (-20.0, Direction.SHORT, 0.5),
    (30.0, Direction.LONG, 0.8),
    (-5.0, Direction.SHORT, 0.2),
    (15.0, Direction.LONG, 0.6),
]


def hand_state() -> StatsState:
    return fold(
        reconciled(T0 + i * HOUR, pnl, direction=direction, confidence=confidence)
        for i, (pnl, direction, confidence) in enumerate(HAND_TRADES)
    )


def test_trade_formulas_by_hand() -> None:
    stats = stats_at(hand_state(), T0 + 4 * HOUR, POLICY.window_days)

    assert stats.trades == 5
    assert stats.pnl_sum_bps == 30.0  # 10 - 20 + 30 - 5 + 15
    assert stats.hit_rate == 0.6  # 3 of 5 above zero
    # cumulative 10, -10, 20, 15, 30; peak 10, 10, 20, 20, 30; drawdown 0, 20, 0, 5, 0
    assert stats.max_drawdown_bps == 20.0
    assert stats.cvar95_bps == -20.0  # ceil(5% of 5) = 1 worst trade
    assert stats.mean_pnl_bps == 6.0  # 30 / 5
    # deviations 4, -26, 24, -11, 9; squares 16 + 676 + 576 + 121 + 81 = 1470; / (5 - 1)
    assert stats.std_pnl_bps == pytest.approx(math.sqrt(367.5))
    assert stats.sharpe == pytest.approx(6 / math.sqrt(367.5))  # 0.31298
    # downside: (400 + 25) / 5 = 85, over all five trades
    assert stats.sortino == pytest.approx(6 / math.sqrt(85))  # 0.65079
    assert stats.profit_factor == pytest.approx(2.2)  # (10 + 30 + 15) / (20 + 5)
    # 0.6 * (55 / 3) - 0.4 * (25 / 2) = 11 - 5
    assert stats.expectancy_bps == pytest.approx(6.0)
    # ranks of signed confidence 5, 1, 4, 2, 3; of pnl 3, 1, 5, 2, 4; d^2 = 4+0+1+0+1 = 6
    # Spearman = 1 - 6 * 6 / (5 * (25 - 1)) = 0.7
    assert stats.information_coefficient == pytest.approx(0.7)
    # lag-1 pairs a = 10, -20, 30, -5 (mean 3.75) and b = -20, 30, -5, 15 (mean 5):
    # sum of cross deviations -1100, of squares 1368.75 and 1450
    rho = 1100 / math.sqrt(1368.75 * 1450)  # |rho_1| = 0.78081
    penalty = math.sqrt(1 + 2 * (0.8 * rho + 0.6 * rho**2 + 0.4 * rho**3 + 0.2 * rho**4))
    assert stats.smart_sharpe == pytest.approx(6 / math.sqrt(367.5) / penalty)  # 0.16705


def test_lifetime_matches_the_window_when_nothing_was_evicted() -> None:
    state = hand_state()
    window = stats_at(state, T0 + 4 * HOUR, POLICY.window_days)

    unknown = dict.fromkeys(("information_coefficient", "smart_sharpe", *TAILS))
    expected = window.model_copy(update=unknown)
    assert lifetime_stats(state).model_dump() == pytest.approx(expected.model_dump())
    assert window.cvar95_bps == -20.0


def test_run_formulas_by_hand() -> None:
    runs = [
        completed(T0, 100.0, cost_usd=0.25, tokens_in=10, tokens_out=1),
        completed(T0 + HOUR, 200.0, errors=1, cost_usd=0.25, tokens_in=20, tokens_out=2),
        completed(T0 + 2 * HOUR, 300.0, cost_usd=0.5, tokens_in=30, tokens_out=3),
        completed(T0 + 3 * HOUR, 1000.0, tokens_in=40, tokens_out=4),
    ]
    state = fold(runs)

    window, lifetime = stats_at(state, T0 + 3 * HOUR, POLICY.window_days), lifetime_stats(state)
    for stats in (window, lifetime):
        assert (stats.runs, stats.errors) == (4, 1)
        assert stats.error_rate == 0.25  # 1 error / 4 runs
        assert stats.avg_latency_ms == 400.0  # 1600 / 4
        assert stats.cost_usd == 1.0
        assert (stats.tokens_in, stats.tokens_out) == (100, 10)
        assert stats.trades == 0 and stats.hit_rate is None
    assert window.p95_latency_ms == 1000.0  # nearest rank ceil(0.95 * 4) = 4th of 4
    assert lifetime.p95_latency_ms is None  # the projection's job: see `tail_stats`


@pytest.mark.parametrize(
    ("count", "expected"),
    [(1, 1.0), (20, 19.0), (21, 20.0)],  # ranks ceil(0.95), ceil(19), ceil(19.95)
)
def test_p95_latency_is_nearest_rank(count: int, expected: float) -> None:
    state = fold(completed(T0 + i * HOUR, float(i + 1)) for i in range(count))

    assert stats_at(state, T0 + count * HOUR, 30).p95_latency_ms == expected
    assert tail_stats([], reversed([float(i + 1) for i in range(count)])) == (None, expected)


def test_cost_per_realized_bps() -> None:
    runs = [completed(T0, cost_usd=0.75), completed(T0 + HOUR, cost_usd=0.75)]
    winning = fold([*runs, reconciled(T0, 20.0), reconciled(T0 + HOUR, 10.0)])
    losing = fold([*runs, reconciled(T0, 20.0), reconciled(T0 + HOUR, -25.0)])

    assert rule_stats_at(winning, T0 + HOUR, 30).cost_per_bps_usd == 0.05  # 1.5 USD / 30 bps
    assert rule_stats_at(losing, T0 + HOUR, 30).cost_per_bps_usd is None  # nothing realized


def test_tail_stats_over_the_full_history_are_exact() -> None:
    # The module docstring's example: -10 then -5, then 19 trades of 0. At n = 21,
    # ceil(5% of 21) = 2, so CVaR95 = (-10 - 5) / 2. The order given does not matter.
    pnls = [-10.0, -5.0] + [0.0] * 19
    state = fold(reconciled(T0 + i * HOUR, pnl) for i, pnl in enumerate(pnls))

    assert stats_at(state, T0 + 20 * HOUR, 30).cvar95_bps == -7.5
    assert lifetime_stats(state).cvar95_bps is None  # bounded state: no lifetime tail
    assert tail_stats(pnls, []) == (-7.5, None)
    assert tail_stats(pnls[::-1], []) == (-7.5, None)
    # With 20 trades the tail is one trade.
    assert tail_stats(pnls[:20], []) == (-10.0, None)
    # Both sides at once, from generators: p95 of 1..21 is rank ceil(19.95) = 20.
    assert tail_stats(iter(pnls), (float(i) for i in range(21, 0, -1))) == (-7.5, 20.0)
    assert tail_stats([], []) == (None, None)


def test_tail_stats_use_the_window_formulas() -> None:
    # Nothing evicted: the tails over the whole history are the window's tails.
    rng = random.Random(7)
    pnls = [rng.uniform(-100, 100) for _ in range(57)]
    latencies = [rng.uniform(10, 5000) for _ in range(43)]
    events: list[Event] = [reconciled(T0 + i * HOUR, pnl) for i, pnl in enumerate(pnls)]
    events += [completed(T0 + i * HOUR, latency) for i, latency in enumerate(latencies)]
    window = stats_at(fold(events), T0 + 60 * HOUR, 30)

    assert tail_stats(pnls, latencies) == (window.cvar95_bps, window.p95_latency_ms)


def test_the_serialized_state_stays_bounded() -> None:
    # 2 000 trades and runs over 200 days, a 30-day window: the state is about the
    # size of one folded from the last 30 days alone, not 200 / 30 times it.
    rng = random.Random(0)
    step = 200 * DAY / 2000
    events: list[Fact] = []
    for i in range(2000):
        ts = T0 + (i + 1) * step
        events.append(reconciled(ts, rng.uniform(-100, 100)))
        events.append(completed(ts, rng.uniform(10, 5000)))
    full = fold(events)
    assert full.watermark is not None
    recent = fold(e for e in events if fact_time(e) > full.watermark - WINDOW)

    assert lifetime_stats(full).trades == 2000
    assert full.trade_days == recent.trade_days
    assert 0 < len(list(recent.trades())) < 2000 * 31 // 200
    size, recent_size = len(full.model_dump_json()), len(recent.model_dump_json())
    assert size < 1.1 * recent_size


def test_ratios_without_losses_or_spread_are_unknown() -> None:
    stats = stats_at(fold([reconciled(T0, 5.0), reconciled(T0 + HOUR, 5.0)]), T0 + HOUR, 30)

    assert stats.std_pnl_bps == 0.0
    assert stats.sharpe is None  # std 0
    assert stats.sortino is None  # no trade at or below zero
    assert stats.profit_factor is None  # no losses
    assert stats.information_coefficient is None  # fewer than 3 trades
    assert stats.expectancy_bps == 5.0  # 1.0 * 5 - 0 * 0


def test_no_facts_means_unknown_not_zero() -> None:
    assert stats_at(StatsState(), T0, 30) == AgentStats()
    assert lifetime_stats(StatsState()) == AgentStats()
    assert tail_stats([], []) == (None, None)


# --- What the fold accepts --------------------------------------------------------------------


def test_window_is_open_at_the_start_and_closed_at_the_end() -> None:
    state = fold([reconciled(T0, 1.0), reconciled(T0 + DAY, 2.0), reconciled(T0 + 30 * DAY, 4.0)])

    # (T0, T0 + 30 d]: the trade at T0 is out, the one at T0 + 30 d is in.
    assert stats_at(state, T0 + 30 * DAY, 30).pnl_sum_bps == 6.0
    assert stats_at(state, T0 + 30 * DAY - HOUR, 30).pnl_sum_bps == 2.0


def test_eviction_keeps_only_facts_after_the_horizon() -> None:
    state = fold(
        [
            reconciled(T0, 1.0),
            completed(T0),
            reconciled(T0 + DAY, 2.0),
            reconciled(T0 + 31 * DAY, 4.0),
        ]
    )

    # watermark T0 + 31 d, horizon T0 + 1 d: facts at or before it are gone
    assert [t.pnl_bps for t in state.trades()] == [4.0]
    assert list(state.runs()) == []
    assert list(state.trade_days) == ["2024-02-01"]  # whole days before the horizon's go
    assert lifetime_stats(state).trades == 3
    assert lifetime_stats(state).runs == 1


def test_a_fact_at_or_before_the_horizon_is_ignored_everywhere() -> None:
    state = fold([reconciled(T0 + 31 * DAY, 4.0)])  # horizon T0 + 1 d

    assert fold([reconciled(T0 + DAY, 2.0), completed(T0 + DAY)], state) == state
    later = fold([reconciled(T0 + DAY + HOUR, 2.0)], state)
    assert lifetime_stats(later).pnl_sum_bps == 6.0
    assert stats_at(later, T0 + 31 * DAY, 30).pnl_sum_bps == 6.0


def test_other_horizons_skipped_runs_and_other_events_change_nothing() -> None:
    state = fold([reconciled(T0, 1.0), completed(T0)])

    ignored: list[Event] = [
        reconciled(T0 + HOUR, 5.0, horizon=4),
        completed(T0 + HOUR, skipped_reason="agent killed"),
        RegimeChanged.create(ts=T0 + HOUR, regime="RISK_ON"),
    ]
    assert fold(ignored, state) == state


def test_zero_window_days_means_lifetime() -> None:
    state = StatsState()
    for i, pnl in enumerate([1.0, 2.0, 4.0]):
        state = apply_reconciled(state, reconciled(T0 + i * 100 * DAY, pnl), 0, FOCUS)
    state = apply_run(state, completed(T0), 0)

    assert len(list(state.trades())) == 3  # nothing evicted
    assert stats_at(state, T0 + 200 * DAY, 0).pnl_sum_bps == 7.0
    assert stats_at(state, T0 + 100 * DAY, 0).pnl_sum_bps == 3.0  # up to as_of only
    with pytest.raises(ValueError, match="window_days"):
        stats_at(state, T0, -1)


def test_trades_with_equal_exit_times_are_ordered_by_signal_id() -> None:
    # Both orders of arrival give the same trade order, hence the same drawdown.
    first = reconciled(T0, 10.0, signal_id=uuid.UUID(int=1))
    second = reconciled(T0, -30.0, signal_id=uuid.UUID(int=2))
    stats = [stats_at(fold(order), T0, 30) for order in ([first, second], [second, first])]

    assert stats[0] == stats[1]
    assert stats[0].max_drawdown_bps == 30.0  # cumulative 10, -20 from a peak of 10


# --- Fold laws ----------------------------------------------------------------------------------


@st.composite
def facts(draw: st.DrawFn) -> list[Fact]:
    """Up to 30 facts over 90 days, with unique, deterministic ids."""
    events: list[Fact] = []
    for i in range(draw(st.integers(0, 30))):
        ts = T0 + draw(st.integers(0, 90 * 24)) * HOUR
        agent = draw(st.sampled_from(AGENTS))
        event_id = uuid.UUID(int=i + 1)
        if draw(st.booleans()):
            event: Fact = reconciled(
                ts,
                float(draw(st.integers(-100, 100))),
                direction=draw(st.sampled_from(Direction)),
                confidence=draw(st.sampled_from([0.1, 0.5, 0.9])),
                horizon=draw(st.sampled_from([FOCUS, FOCUS, 4])),
                agent=agent,
                event_id=event_id,
                signal_id=uuid.UUID(int=10_000 + i),
            )
        else:
            event = completed(
                ts,
                float(draw(st.integers(0, 2000))),
                errors=draw(st.integers(0, 2)),
                cost_usd=draw(st.sampled_from([0.0, 0.25, 0.5])),
                tokens_in=draw(st.integers(0, 50)),
                tokens_out=draw(st.integers(0, 50)),
                skipped_reason=draw(st.sampled_from([None, None, None, "agent killed"])),
                agent=agent,
                event_id=event_id,
            )
        events.append(event)
    return events


@st.composite
def arrivals(draw: st.DrawFn) -> list[Fact]:
    """Facts in any order, some delivered twice."""
    events = draw(facts())
    copies = draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    return draw(st.permutations(events + copies))


def fact_time(event: Fact) -> datetime:
    return event.exit_ts if isinstance(event, SignalReconciled) else event.ts


def counts(event: Fact) -> bool:
    if isinstance(event, SignalReconciled):
        return event.horizon_hours == FOCUS
    return event.skipped_reason is None


def unique(events: Iterable[Fact]) -> list[Fact]:
    return list({event.event_id: event for event in events}.values())


def accepted(events: Sequence[Fact]) -> list[Fact]:
    """The documented acceptance rule, written out: new id, after the current horizon."""
    seen: set[uuid.UUID] = set()
    newest: datetime | None = None
    kept = []
    for event in events:
        if not counts(event) or event.event_id in seen:
            continue
        if newest is not None and fact_time(event) <= newest - WINDOW:
            continue
        seen.add(event.event_id)
        newest = max(newest or fact_time(event), fact_time(event))
        kept.append(event)
    return kept


def from_scratch(events: Sequence[Fact]) -> dict[str, Any]:
    """The SPEC formulas computed directly on the facts, in the order given."""
    pnls = [e.realized_pnl_bps for e in events if isinstance(e, SignalReconciled)]
    runs = [e for e in events if isinstance(e, RunCompleted)]
    n = len(pnls)
    cumulative = peak = drawdown = 0.0
    for pnl in pnls:
        cumulative += pnl
        peak = max(peak, cumulative)
        drawdown = max(drawdown, peak - cumulative)
    mean = statistics.fmean(pnls) if n else None
    std = statistics.stdev(pnls) if n >= 2 else None
    downside = math.sqrt(sum(min(p, 0.0) ** 2 for p in pnls) / n) if n else None
    losses = -sum(p for p in pnls if p < 0)
    latencies = sorted(r.latency_ms for r in runs)
    deviations = [p - mean for p in pnls] if mean is not None else []
    m2, m3, m4 = (math.fsum(d**power for d in deviations) for power in (2, 3, 4))
    varies = len(set(pnls)) > 1
    figures = {
        "trades": n,
        "runs": len(runs),
        "errors": sum(r.errors for r in runs),
        "pnl_sum_bps": sum(pnls),
        "hit_rate": sum(p > 0 for p in pnls) / n if n else None,
        "error_rate": sum(r.errors for r in runs) / len(runs) if runs else None,
        "avg_latency_ms": statistics.fmean(latencies) if runs else None,
        "p95_latency_ms": latencies[math.ceil(95 * len(runs) / 100) - 1] if runs else None,
        "cost_usd": sum(r.cost_usd for r in runs),
        "tokens_in": sum(r.tokens_in for r in runs),
        "tokens_out": sum(r.tokens_out for r in runs),
        "max_drawdown_bps": drawdown,
        "cvar95_bps": statistics.fmean(sorted(pnls)[: math.ceil(n / 20)]) if n else None,
        "mean_pnl_bps": mean,
        "std_pnl_bps": std,
        "sharpe": mean / std if mean is not None and std else None,
        "sortino": mean / downside if mean is not None and downside else None,
        "profit_factor": sum(p for p in pnls if p > 0) / losses if losses else None,
        "expectancy_bps": mean,  # the expectancy formula reduces to the mean
        "skewness": (m3 / n) / (m2 / n) ** 1.5 if varies else None,
        "kurtosis": (m4 / n) / (m2 / n) ** 2 if varies else None,
        "autocorr_lag1": correlation(pnls[:-1], pnls[1:]),
    }
    # A sum that is zero but for rounding has a sign that depends on the order of the
    # additions: no cost per bps to compare then.
    cost, pnl_sum = sum(r.cost_usd for r in runs), sum(pnls)
    if abs(pnl_sum) > 1e-9:
        figures["cost_per_bps_usd"] = cost / pnl_sum if pnl_sum > 0 else None
    return figures


def assert_matches(stats: AgentStats, expected: dict[str, Any]) -> None:
    actual = stats.model_dump(include=set(expected))
    for name, value in expected.items():
        assert actual[name] == (value if value is None else pytest.approx(value, abs=1e-9)), name


def assert_lifetime_matches(stats: AgentStats, events: Sequence[Fact]) -> None:
    """Everything but the tails from the fold; the tails None there, exact from `tail_stats`."""
    expected = from_scratch(events)
    assert_matches(stats, {k: v for k, v in expected.items() if k not in TAILS})
    assert (stats.cvar95_bps, stats.p95_latency_ms) == (None, None)
    tails = tail_stats(
        (e.realized_pnl_bps for e in events if isinstance(e, SignalReconciled)),
        (e.latency_ms for e in events if isinstance(e, RunCompleted)),
    )
    assert tails == tuple(
        None if expected[k] is None else pytest.approx(expected[k], abs=1e-9) for k in TAILS
    )


@FAST
@given(arrivals(), st.data())
def test_a_duplicate_changes_nothing(events: list[Event], data: st.DataObject) -> None:
    state = fold(events)
    if events:
        again = data.draw(st.sampled_from(events))
        assert apply_event(state, again, POLICY) == state
    assert fold(e for event in events for e in (event, event)) == state


@FAST
@given(facts(), st.data())
def test_keys_do_not_care_how_their_events_interleave(
    events: list[Fact], data: st.DataObject
) -> None:
    # Re-interleave: keep each agent's own order, shuffle which agent goes next.
    queues = {agent: [e for e in events if e.agent == agent] for agent in AGENTS}
    turns = data.draw(st.permutations([e.agent for e in events]))
    interleaved = [queues[agent].pop(0) for agent in turns]

    assert fold_by_agent(interleaved) == fold_by_agent(events)


@FAST
@given(facts())
def test_one_fold_serves_any_key_such_as_the_portfolio(
    events: list[Fact],
) -> None:
    # Lifetime totals of the portfolio are the sums of its agents' totals.
    events = sorted(events, key=fact_time)  # in time order, so nothing is late
    portfolio = lifetime_stats(fold(events))
    agents = [lifetime_stats(state) for state in fold_by_agent(events).values()]

    assert portfolio.trades == sum(a.trades for a in agents)
    assert portfolio.runs == sum(a.runs for a in agents)
    assert portfolio.pnl_sum_bps == pytest.approx(sum(a.pnl_sum_bps for a in agents))


@FAST
@given(arrivals(), st.data())
def test_window_equals_a_fresh_fold_of_only_the_in_window_facts(
    events: list[Fact], data: st.DataObject
) -> None:
    state = fold(events)
    if state.watermark is None:
        return
    start, end = state.watermark - WINDOW, state.watermark
    in_window = [e for e in unique(events) if counts(e) and start < fact_time(e) <= end]
    fresh = fold(data.draw(st.permutations(in_window)))

    assert (state.trade_days, state.run_days) == (fresh.trade_days, fresh.run_days)
    window = stats_at(state, end, POLICY.window_days)
    assert window == stats_at(fresh, end, POLICY.window_days)
    by_trade_order = sorted(
        in_window, key=lambda e: (fact_time(e), getattr(e, "signal_id", e.event_id))
    )
    assert_matches(window, from_scratch(by_trade_order))


@FAST
@given(arrivals())
def test_lifetime_equals_a_computation_over_every_accepted_fact(
    events: list[Fact],
) -> None:
    assert_lifetime_matches(lifetime_stats(fold(events)), accepted(events))


@FAST
@given(facts())
def test_in_time_order_every_fact_counts_in_the_lifetime(
    events: list[Fact],
) -> None:
    in_order = sorted(events, key=fact_time)

    assert_lifetime_matches(
        lifetime_stats(fold(in_order + in_order[::2])), [e for e in in_order if counts(e)]
    )


@FAST
@given(arrivals())
def test_state_survives_a_json_round_trip(events: list[Event]) -> None:
    state = fold(events)
    wire = orjson.loads(orjson.dumps(state.model_dump(mode="json")))

    assert StatsState.model_validate(wire) == state


# --- Incremental window = recomputation ---------------------------------------------------------

REPORT_ONLY = ("cvar95_bps", "p95_latency_ms", "information_coefficient", "smart_sharpe")
pnl_values = st.integers(-10_000, 10_000).map(lambda cents: cents / 100)


@FAST
@given(st.lists(pnl_values, max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_concat_of_segments_equals_one_sequence(pnls: list[float], cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(pnls)]
    segments = [TradeTotals().plus(pnls[a:b]) for a, b in itertools.pairwise(bounds)]
    merged, sequential = TradeTotals.concat(segments), TradeTotals().plus(pnls)

    for name, value in sequential.model_dump().items():
        assert getattr(merged, name) == pytest.approx(value, rel=1e-9, abs=1e-9), name


@FAST
@given(st.lists(pnl_values, max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_merged_moments_equal_a_two_pass_computation(pnls: list[float], cuts: list[int]) -> None:
    # The shape and autocorrelation sums of segments merged by `concat` against their
    # definitions over the whole sequence, each about its own mean, in exact arithmetic.
    bounds = [0, *sorted(cuts), len(pnls)]
    merged = TradeTotals.concat(
        TradeTotals().plus(pnls[a:b]) for a, b in itertools.pairwise(bounds)
    )

    def deviations(values: Sequence[float]) -> list[Fraction]:
        exact = [Fraction(v) for v in values]
        mean = sum(exact, Fraction(0)) / len(exact) if exact else Fraction(0)
        return [v - mean for v in exact]

    def comoment(xs: list[Fraction], ys: list[Fraction]) -> tuple[float, float]:
        """(sum of x y, sum of |x y|): the second scales the rounding error allowed."""
        products = [x * y for x, y in zip(xs, ys, strict=True)]
        return float(sum(products)), float(sum(abs(p) for p in products))

    ds, lead_ds, lag_ds = deviations(pnls), deviations(pnls[:-1]), deviations(pnls[1:])
    squares = [d * d for d in ds]
    expected = {
        "m2": comoment(ds, ds),
        "m3": comoment(ds, squares),
        "m4": comoment(squares, squares),
        "lead_m2": comoment(lead_ds, lead_ds),
        "lag_m2": comoment(lag_ds, lag_ds),
        "lag_comoment": comoment(lead_ds, lag_ds),
    }
    for name, (value, scale) in expected.items():
        assert getattr(merged, name) == pytest.approx(value, rel=1e-9, abs=1e-12 * scale), name
    assert (merged.first_bps, merged.last_bps) == ((pnls[0], pnls[-1]) if pnls else (0.0, 0.0))


@st.composite
def dense_arrivals(draw: st.DrawFn) -> tuple[int, list[Fact]]:
    """(window_days, facts) for a short window: many facts a day, so days are cut by the
    window's start and end, delivered in any order with copies."""
    window_days = draw(st.integers(1, 3))
    events: list[Fact] = []
    for i in range(draw(st.integers(0, 60))):
        ts = T0 + draw(st.integers(0, 6 * 24 * 60)) * timedelta(minutes=1)
        if draw(st.booleans()):
            events.append(
                reconciled(
                    ts,
                    draw(pnl_values),
                    direction=draw(st.sampled_from(Direction)),
                    confidence=draw(st.sampled_from([0.1, 0.5, 0.9])),
                    event_id=uuid.UUID(int=i + 1),
                    signal_id=uuid.UUID(int=draw(st.integers(10_000, 10_003))),
                )
            )
        else:
            events.append(
                completed(
                    ts,
                    float(draw(st.integers(0, 2000))),
                    errors=draw(st.integers(0, 2)),
                    cost_usd=draw(st.sampled_from([0.0, 0.1, 0.25])),
                    tokens_in=draw(st.integers(0, 50)),
                    tokens_out=draw(st.integers(0, 50)),
                    event_id=uuid.UUID(int=i + 1),
                )
            )
    copies = draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    return window_days, draw(st.permutations(events + copies))


def retained(events: Sequence[Fact], window: timedelta) -> list[Fact]:
    """The documented acceptance rule, then eviction: what the state still holds."""
    seen: set[uuid.UUID] = set()
    newest: datetime | None = None
    kept = []
    for event in events:
        if event.event_id in seen or (newest is not None and fact_time(event) <= newest - window):
            continue
        seen.add(event.event_id)
        newest = max(newest or fact_time(event), fact_time(event))
        kept.append(event)
    return [e for e in kept if newest is not None and fact_time(e) > newest - window]


def recomputed(events: Sequence[Fact], start: datetime, end: datetime) -> dict[str, Any]:
    """Every figure, straight from the facts in (start, end] taken in trade order."""
    in_window = [e for e in events if start < fact_time(e) <= end]
    trades = sorted(
        (e for e in in_window if isinstance(e, SignalReconciled)),
        key=lambda e: (e.exit_ts, e.signal_id, e.event_id),
    )
    expected = from_scratch([*trades, *(e for e in in_window if isinstance(e, RunCompleted))])
    signed = [(1.0 if e.direction is Direction.LONG else -1.0) * e.confidence for e in trades]
    pnls = [e.realized_pnl_bps for e in trades]
    ic = correlation(ranked(signed), ranked(pnls)) if len(trades) >= 3 else None
    rho_1 = correlation(pnls[:-1], pnls[1:])
    smart = None
    if expected["sharpe"] is not None and rho_1 is not None:
        n = len(pnls)
        penalty = math.sqrt(1 + 2 * sum((1 - k / n) * abs(rho_1) ** k for k in range(1, n)))
        smart = expected["sharpe"] / penalty
    return {**expected, "information_coefficient": ic, "smart_sharpe": smart}


def ranked(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing the mean of the ranks they span."""
    return [
        sum(v < value for v in values) + (sum(v == value for v in values) + 1) / 2
        for value in values
    ]


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r; None for fewer than 2 points or a constant side (checked exactly: a
    mean that rounds away from the constant would leave a correlation of noise)."""
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return statistics.correlation(xs, ys)


def assert_close(stats: AgentStats, expected: dict[str, Any]) -> None:
    actual = stats.model_dump(include=set(expected))
    for name, value in expected.items():
        close = value if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)
        assert actual[name] == close, name


@settings(max_examples=150, deadline=None)
@given(dense_arrivals(), st.integers(-2 * 24, 2 * 24))
def test_window_figures_equal_a_recomputation_from_scratch(
    case: tuple[int, list[Fact]], hours_from_watermark: int
) -> None:
    window_days, events = case
    policy = Thresholds(window_days=window_days)
    state = StatsState()
    for event in events:
        state = apply_event(state, event, policy)
    if state.watermark is None:
        return
    window = timedelta(days=window_days)
    as_of = state.watermark + hours_from_watermark * HOUR
    expected = recomputed(retained(events, window), as_of - window, as_of)

    rule = rule_stats_at(state, as_of, window_days)
    assert_close(rule, {k: v for k, v in expected.items() if k not in REPORT_ONLY})
    assert [getattr(rule, name) for name in REPORT_ONLY] == [None] * len(REPORT_ONLY)
    assert window_drawdown_bps(state, as_of, window_days) == rule.max_drawdown_bps
    full = stats_at(state, as_of, window_days)
    assert_close(full, expected)
    assert window_cvar95_bps(state, as_of, window_days) == full.cvar95_bps
    assert full.model_copy(update=dict.fromkeys(REPORT_ONLY)) == rule


def test_a_fact_rewrites_only_its_own_day() -> None:
    # Three days of trades and runs; a late trade on the first day leaves the other
    # days' buckets untouched (the same objects), which is what the store relies on.
    state = fold(
        e for d in range(3) for e in (reconciled(T0 + d * DAY, d), completed(T0 + d * DAY))
    )
    late = fold([reconciled(T0 + HOUR, 9.0)], state)

    assert [late.trade_days[d] is state.trade_days[d] for d in sorted(state.trade_days)] == [
        False,
        True,
        True,
    ]
    assert late.run_days is state.run_days
    assert [t.pnl_bps for t in late.trades()] == [0.0, 9.0, 1.0, 2.0]


def test_a_window_start_inside_a_day_sums_only_that_days_later_trades() -> None:
    # 1-day window ending at T0 + 1 d + 12 h: the first day counts from its noon on.
    state = StatsState()
    for hour, pnl in [(6, -50.0), (13, 10.0), (20, -4.0), (30, 6.0), (36, 1.0)]:
        state = apply_reconciled(state, reconciled(T0 + hour * HOUR, pnl), 2, FOCUS)

    stats = rule_stats_at(state, T0 + 36 * HOUR, 1)
    assert (stats.trades, stats.pnl_sum_bps) == (4, 13.0)  # 10 - 4 + 6 + 1
    assert stats.max_drawdown_bps == 4.0  # cumulative 10, 6, 12, 13


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from([-5.0, -1.0, 0.0, 0.5, 2.0, 1e6]), max_size=30), max_size=8),
    st.integers(0, 60),
)
def test_the_k_smallest_of_sorted_days_are_those_of_a_full_sort(
    days: list[list[float]], k: int
) -> None:
    """Ties, empty days, k beyond the count: the CVaR's selection equals a full sort."""
    ascending = [sorted(day) for day in days]
    assert _smallest(ascending, k) == sorted(v for day in days for v in day)[:k]

"""Window totals remembered across events are the very bits a cold computation gives.

Rules decide from `MergedDays.window`; a worker that restarts (cold memo) must decide
exactly as the one that ran all along (warm memo), or live and replay would differ.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.agents.stats import Trade, TradeDay, TradeTotals
from streams.core.day_window import MergedDays, day_of, evict_days, put_day

T0 = datetime(2024, 1, 25, tzinfo=UTC)  # days of three months, so blocks and months turn
HOUR = timedelta(hours=1)


def trade(hours: int, pnl: float) -> Trade:
    exit_ts = T0 + hours * HOUR
    signal_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{hours}/{pnl}")
    return Trade(
        event_id=signal_id, signal_id=signal_id, exit_ts=exit_ts, pnl_bps=pnl, signed_confidence=0.5
    )


facts = st.lists(
    st.tuples(st.integers(0, 70 * 24), st.floats(-500, 500, allow_nan=False)),
    min_size=1,
    max_size=120,
    unique_by=lambda fact: fact[0],
)


@settings(max_examples=80, deadline=None)
@given(facts, st.integers(1, 40), st.integers(1, 64))
def test_a_warm_window_equals_a_cold_one_bit_for_bit(
    arrivals: list[tuple[int, float]], window_days: int, memo_size: int
) -> None:
    warm = MergedDays(TradeTotals.concat, memo_size)
    window = timedelta(days=window_days)
    days: dict[str, TradeDay] = {}
    for hours, pnl in sorted(arrivals):
        fact = trade(hours, pnl)
        bucket = days.get(day_of(fact.exit_ts))
        bucket = TradeDay.of((fact,)) if bucket is None else bucket.with_fact(fact)
        days = evict_days(put_day(days, day_of(fact.exit_ts), bucket), fact.exit_ts - window)
        # The warm memo sees the window after every fact, as a live worker does.
        warm_totals = warm.window(days, fact.exit_ts - window, fact.exit_ts)
        cold_totals = MergedDays(TradeTotals.concat, 1024).window(
            days, fact.exit_ts - window, fact.exit_ts
        )
        assert warm_totals == cold_totals
        kept = [t.pnl_bps for day in days.values() for t in day.facts]
        assert warm_totals.count == len(kept)
        assert warm_totals.pnl_sum_bps == pytest.approx(sum(kept), rel=1e-9, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(-500, 500, allow_nan=False)),
        min_size=1,
        max_size=40,
        unique=True,
    ),
    st.randoms(use_true_random=False),
)
def test_a_day_built_in_any_order_equals_the_day_built_at_once(
    facts_in_order: list[tuple[int, float]], shuffler: random.Random
) -> None:
    # Few distinct hours, so that many facts share a time, as trades exiting together do.
    trades = [trade(hours, pnl) for hours, pnl in facts_in_order]
    arrivals = trades[:]
    shuffler.shuffle(arrivals)
    day = TradeDay.of((arrivals[0],))
    for fact in arrivals[1:]:
        day = day.with_fact(fact)
    at_once = TradeDay.of(tuple(sorted(trades, key=Trade.sort_key)))
    assert day == at_once  # facts, totals and the totals before the last time, bit for bit

"""The reconciliation rule: exact PnL, no guesses, and outcomes that do not depend on arrival order.

The order guarantee tested here (and stated in `streams.reconcile.rule`): the set
of outcomes equals the one computed from the complete price history when
(1) signals are interleaved anywhere into the price stream, however late (up to
`max_signal_age_days`), and (2) prices are in time order around every horizon end
e = t0 + h (all prices before e, then one at e, then the first one after e, then
later ones), though they may be shuffled freely elsewhere. Duplicates of signals
and prices change nothing. A price that arrives after a later price already
closed its horizon is not used; a test pins that limit down.
"""

from __future__ import annotations

import csv
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Event, derived_event_id
from schemas.events import Direction, PriceObserved, RegimeChanged, SignalEmitted, SignalReconciled
from schemas.policy import Thresholds
from streams.reconcile import rule
from streams.reconcile.rule import (
    BOOK_SHARDS,
    PRODUCER,
    Outcome,
    PendingSignal,
    PricePoint,
    SymbolBook,
    Unreconcilable,
    UnreconcilableReason,
    apply_event,
    apply_price,
    apply_signal,
    pnl_bps,
)
from streams.runtime.sharded_store import ShardedStore

BTC_FILE = Path("/work/shared/data/bitfinex-1h-btc-usd.csv")
SYMBOL = "BTCUSDT"
T = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
POLICY = Thresholds()  # horizons 1, 4, 24 h; staleness 2 h; stale exits wait for the next price
SKIP = Thresholds(stale_exit="skip")


def price(ts: datetime, value: float) -> PriceObserved:
    return PriceObserved.create(ts=ts, symbol=SYMBOL, price=value, interval="1h")


def signal(
    ts: datetime, direction: Direction = Direction.LONG, event_id: uuid.UUID | None = None
) -> SignalEmitted:
    return SignalEmitted.create(
        event_id=event_id or uuid.uuid4(),
        ts=ts,
        agent="momentum-1",
        run_id=uuid.UUID(int=7),
        symbol=SYMBOL,
        direction=direction,
        confidence=0.7,
        score_final=0.4,
        regime="RISK_ON",
        strategy_class="momentum",
    )


def run(
    events: Iterable[Event], thresholds: Thresholds = POLICY
) -> tuple[SymbolBook, list[Outcome]]:
    book, emitted = SymbolBook(), []
    for event in events:
        book, outcomes = apply_event(book, event, thresholds)
        emitted += outcomes
    return book, emitted


def pending(book: SymbolBook) -> list[PendingSignal]:
    return [entry for day in sorted(book.pending) for entry in book.pending[day]]


def stored_prices(book: SymbolBook) -> list[PricePoint]:
    return [point for day in sorted(book.prices) for point in book.prices[day]]


def by_horizon(outcomes: Iterable[Outcome]) -> dict[int, Outcome]:
    return {outcome.horizon_hours: outcome for outcome in outcomes}


def reconciled(outcome: Outcome) -> SignalReconciled:
    assert isinstance(outcome, SignalReconciled), outcome
    return outcome


def as_set(outcomes: Iterable[Outcome]) -> set[str]:
    """Compare outcomes by every field, event ids included."""
    return {outcome.model_dump_json() for outcome in outcomes}


def oracle(
    prices: Sequence[PriceObserved], signals: Sequence[SignalEmitted], thresholds: Thresholds
) -> set[str]:
    """Outcomes computed the slow way from the complete, de-duplicated price history."""
    history = sorted({p.ts: p.price for p in prices}.items())
    newest = history[-1][0] if history else None
    staleness = timedelta(hours=thresholds.max_exit_staleness_hours)

    def latest(at: datetime) -> tuple[datetime, float] | None:
        before = [point for point in history if point[0] <= at]
        return before[-1] if before else None

    def first_after(at: datetime) -> tuple[datetime, float]:
        return next(point for point in history if point[0] > at)

    expected: list[Outcome] = []
    for s in {s.event_id: s for s in signals}.values():
        for h in thresholds.horizons_hours:
            end = s.ts + timedelta(hours=h)
            if newest is None or newest < end:
                continue
            entry, exit_ = latest(s.ts), latest(end)
            delayed = False
            if entry is None or exit_ is None:
                reason = UnreconcilableReason.NO_ENTRY_PRICE
            elif s.ts - entry[0] > staleness:
                reason = UnreconcilableReason.STALE_ENTRY
            elif end - exit_[0] > staleness and thresholds.stale_exit == "skip":
                reason = UnreconcilableReason.STALE_EXIT
            elif end - exit_[0] > staleness:
                reason, delayed, exit_ = None, True, first_after(end)
            else:
                reason = None
            if reason is not None or entry is None or exit_ is None:
                expected.append(
                    Unreconcilable(
                        signal_id=s.event_id,
                        agent=s.agent,
                        symbol=s.symbol,
                        horizon_hours=h,
                        reason=reason or UnreconcilableReason.NO_ENTRY_PRICE,
                    )
                )
                continue
            long_pnl = (exit_[1] / entry[1] - 1) * 10_000
            short_pnl = (entry[1] / exit_[1] - 1) * 10_000
            expected.append(
                SignalReconciled.create(
                    event_id=derived_event_id(s.event_id, h),
                    ts=end,
                    producer=PRODUCER,
                    signal_id=s.event_id,
                    run_id=s.run_id,
                    agent=s.agent,
                    symbol=s.symbol,
                    direction=s.direction,
                    horizon_hours=h,
                    entry_ts=entry[0],
                    entry_price=entry[1],
                    exit_ts=exit_[0],
                    exit_price=exit_[1],
                    exit_delayed=delayed,
                    realized_pnl_bps=long_pnl if s.direction is Direction.LONG else short_pnl,
                    regime=s.regime,
                    confidence=s.confidence,
                    score_final=s.score_final,
                    strategy_class=s.strategy_class,
                )
            )
    return as_set(expected)


@st.composite
def price_streams(draw: st.DrawFn) -> list[PriceObserved]:
    """Hourly prices over up to two days, with gaps (so some prices are stale)."""
    hours = draw(st.integers(min_value=0, max_value=48))
    present = draw(st.lists(st.booleans(), min_size=hours, max_size=hours))
    values = draw(st.lists(st.floats(min_value=50, max_value=150), min_size=hours, max_size=hours))
    return [
        price(T + i * HOUR, v)
        for i, (keep, v) in enumerate(zip(present, values, strict=True))
        if keep
    ]


signals_strategy = st.lists(
    st.builds(
        signal,
        # Half-hour steps: some signals and horizon ends fall exactly on a price.
        ts=st.integers(min_value=-6, max_value=96).map(lambda k: T + k * HOUR / 2),
        direction=st.sampled_from(Direction),
        event_id=st.uuids(),
    ),
    max_size=6,
    unique_by=lambda s: s.event_id,
)


def interleave(
    data: st.DataObject, prices: list[PriceObserved], signals: list[SignalEmitted]
) -> list[Event]:
    """Insert each signal anywhere into the price stream, then redeliver some events."""
    events: list[Event] = list(prices)
    for s in signals:
        events.insert(data.draw(st.integers(0, len(events))), s)
    if events:
        for _ in range(data.draw(st.integers(0, 4))):
            duplicate = data.draw(st.sampled_from(events))
            first = events.index(duplicate)
            events.insert(data.draw(st.integers(first + 1, len(events))), duplicate)
    return events


# Both closed-market policies, and a staleness bound that reaches back across midnight.
policies = st.sampled_from(
    [POLICY, SKIP, Thresholds(max_exit_staleness_hours=30.0, stale_exit="skip")]
)


@settings(max_examples=300, deadline=None)
@given(prices=price_streams(), signals=signals_strategy, thresholds=policies, data=st.data())
def test_outcomes_do_not_depend_on_when_signals_arrive_and_duplicates_change_nothing(
    prices: list[PriceObserved],
    signals: list[SignalEmitted],
    thresholds: Thresholds,
    data: st.DataObject,
) -> None:
    events = interleave(data, prices, signals)

    book, outcomes = run(events, thresholds)

    assert as_set(outcomes) == oracle(prices, signals, thresholds)
    assert as_set(outcomes) == as_set(run([*signals, *prices], thresholds)[1])
    keys = [(o.signal_id, o.horizon_hours) for o in outcomes]
    assert len(keys) == len(set(keys)), "a (signal, horizon) was settled twice"
    # Whatever is not settled is still pending, so nothing is lost either.
    open_pairs = {(p.signal.event_id, h) for p in pending(book) for h in p.open_horizons}
    all_pairs = {(s.event_id, h) for s in signals for h in POLICY.horizons_hours}
    assert open_pairs | set(keys) == all_pairs
    assert not open_pairs & set(keys)


def horizon_end_blocks(
    prices: list[PriceObserved], signals: list[SignalEmitted]
) -> list[list[PriceObserved]]:
    """Split the stream so no block straddles a horizon end; a price exactly at one is its
    own block, and so is the first price after one (the exit if the market was closed)."""
    ends = {s.ts + timedelta(hours=h) for s in signals for h in POLICY.horizons_hours}
    times = sorted(p.ts for p in prices)
    firsts_after = {times[i] for end in ends if (i := bisect_right(times, end)) < len(times)}
    bounds = sorted(ends | firsts_after)

    def block(ts: datetime) -> int:
        i = bisect_left(bounds, ts)
        return 2 * i + 1 if i < len(bounds) and bounds[i] == ts else 2 * i

    blocks: dict[int, list[PriceObserved]] = {}
    for p in prices:
        blocks.setdefault(block(p.ts), []).append(p)
    return [blocks[key] for key in sorted(blocks)]


@settings(max_examples=300, deadline=None)
@given(prices=price_streams(), signals=signals_strategy, thresholds=policies, data=st.data())
def test_prices_shuffled_between_horizon_ends_give_the_same_outcomes(
    prices: list[PriceObserved],
    signals: list[SignalEmitted],
    thresholds: Thresholds,
    data: st.DataObject,
) -> None:
    shuffled = [
        p
        for block in horizon_end_blocks(prices, signals)
        for p in data.draw(st.permutations(block))
    ]

    _, outcomes = run(interleave(data, shuffled, signals), thresholds)

    assert as_set(outcomes) == oracle(prices, signals, thresholds)


@settings(max_examples=150, deadline=None)
@given(
    prices=price_streams(),
    tail_days=st.integers(min_value=0, max_value=300),
    signals=signals_strategy,
    lag_hours=st.integers(min_value=0, max_value=310 * 24),
    thresholds=policies,
)
def test_outcomes_do_not_depend_on_how_far_signals_lag_behind_prices(
    prices: list[PriceObserved],
    tail_days: int,
    signals: list[SignalEmitted],
    lag_hours: int,
    thresholds: Thresholds,
) -> None:
    """The measured failure: the signal intake drifting days behind the price intake."""
    # Up to 300 more days of daily prices, so a lag can put a signal months behind.
    history = [*prices, *(price(T + (2 + d) * 24 * HOUR, 90.0 + d) for d in range(tail_days))]
    lag = lag_hours * HOUR
    timed: list[tuple[datetime, int, Event]] = [(p.ts, i, p) for i, p in enumerate(history)]
    timed += [(s.ts + lag, len(history) + i, s) for i, s in enumerate(signals)]
    late = [event for _, _, event in sorted(timed, key=lambda item: item[:2])]

    _, outcomes = run(late, thresholds)

    assert as_set(outcomes) == oracle(history, signals, thresholds)


def test_a_price_arriving_after_its_horizon_closed_is_not_used() -> None:
    """The limit of the guarantee: a later price closed the horizon, so the exit is final."""
    s = signal(T)
    late_exit = price(T + HOUR, 110.0)
    events = [price(T, 100.0), s, price(T + 2 * HOUR, 120.0), late_exit]

    book, outcomes = run(events)

    one_hour = reconciled(by_horizon(outcomes)[1])
    assert (one_hour.exit_ts, one_hour.exit_price) == (T, 100.0)
    assert one_hour.realized_pnl_bps == 0.0
    assert any(point.ts == late_exit.ts for point in stored_prices(book)), "stored for later"


# --- exact PnL on the real BTC file ------------------------------------------------------


def btc_closes(first_close: datetime, last_close: datetime) -> list[PriceObserved]:
    """Hourly BTC closes from the Bitfinex file; a row's Date is the candle OPEN time."""
    if not BTC_FILE.exists():
        pytest.skip(f"{BTC_FILE} is not available")
    closes = []
    with BTC_FILE.open(newline="") as handle:
        for row in csv.DictReader(handle):  # newest first
            close_at = datetime.fromisoformat(f"{row['Date']}+00:00") + HOUR
            if close_at < first_close:
                break
            if close_at <= last_close:
                closes.append(price(close_at, float(row["Close"])))
    return closes[::-1]


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"{text}+00:00")


def test_pnl_matches_hand_computed_values_on_bitfinex_btc() -> None:
    """Rows used (Date = candle open, so its Close stands for Date + 1 h):

    2019-07-03 00:00  Close 11258.25  -> price at 2019-07-03 01:00
    2019-07-03 01:00  Close 11354.0   -> price at 2019-07-03 02:00
    2019-07-03 04:00  Close 11272.07  -> price at 2019-07-03 05:00
    2019-07-03 21:00  Close 11396.09  -> price at 2019-07-03 22:00
    2019-07-03 22:00  Close 11920.0   -> price at 2019-07-03 23:00
    2019-07-04 00:00  Close 11849.99  -> price at 2019-07-04 01:00
    2019-07-04 01:00  Close 11849.69  -> price at 2019-07-04 02:00 (newest row)
    """
    prices = btc_closes(at("2019-07-03 01:00"), at("2019-07-04 02:00"))
    assert len(prices) == 26
    long_on_close = signal(at("2019-07-03 22:00"), Direction.LONG)
    long_mid_candle = signal(at("2019-07-03 22:30"), Direction.LONG)
    short = signal(at("2019-07-03 01:00"), Direction.SHORT)

    book, outcomes = run([long_on_close, long_mid_candle, short, *prices])
    results = {(o.signal_id, o.horizon_hours): reconciled(o) for o in outcomes}

    # LONG 22:00 -> 23:00: (11920.0 / 11396.09 - 1) * 10000
    r = results[(long_on_close.event_id, 1)]
    assert (r.entry_price, r.exit_price) == (11396.09, 11920.0)
    assert r.realized_pnl_bps == pytest.approx(459.7278540271268, abs=1e-9)
    # LONG 22:00 -> 2019-07-04 02:00: (11849.69 / 11396.09 - 1) * 10000
    r = results[(long_on_close.event_id, 4)]
    assert (r.entry_price, r.exit_price) == (11396.09, 11849.69)
    assert r.realized_pnl_bps == pytest.approx(398.0312545794215, abs=1e-9)
    # LONG 22:30 -> 23:30 uses the latest prices at or before each: 22:00 and 23:00.
    r = results[(long_mid_candle.event_id, 1)]
    assert (r.entry_ts, r.exit_ts) == (at("2019-07-03 22:00"), at("2019-07-03 23:00"))
    assert r.ts == at("2019-07-03 23:30")
    assert r.realized_pnl_bps == pytest.approx(459.7278540271268, abs=1e-9)
    # SHORT 01:00 -> 02:00: (11258.25 / 11354.0 - 1) * 10000
    r = results[(short.event_id, 1)]
    assert r.realized_pnl_bps == pytest.approx(-84.33151312312841, abs=1e-9)
    # SHORT 01:00 -> 05:00: (11258.25 / 11272.07 - 1) * 10000
    r = results[(short.event_id, 4)]
    assert r.realized_pnl_bps == pytest.approx(-12.26039227932403, abs=1e-9)
    # SHORT 01:00 -> 2019-07-04 01:00: (11258.25 / 11849.99 - 1) * 10000
    r = results[(short.event_id, 24)]
    assert (r.entry_ts, r.exit_ts) == (at("2019-07-03 01:00"), at("2019-07-04 01:00"))
    assert r.realized_pnl_bps == pytest.approx(-499.3590711890896, abs=1e-9)
    # Not over yet: the file ends at 2019-07-04 02:00, before 22:30 + 4 h.
    assert {p.signal.event_id: p.open_horizons for p in pending(book)} == {
        long_on_close.event_id: (24,),
        long_mid_candle.event_id: (4, 24),
    }


# --- one rule at a time ------------------------------------------------------------------


def test_reconciliation_copies_the_signal_and_has_a_derived_id() -> None:
    s = signal(T + HOUR / 2)

    _, outcomes = run([s, price(T, 100.0), price(T + 2 * HOUR, 103.0)])

    r = reconciled(outcomes[0])
    assert r.event_id == derived_event_id(s.event_id, 1)
    assert (r.ts, r.producer, r.horizon_hours) == (T + 3 * HOUR / 2, PRODUCER, 1)
    assert (r.signal_id, r.run_id, r.agent, r.symbol) == (s.event_id, s.run_id, s.agent, SYMBOL)
    assert (r.direction, r.confidence, r.regime) == (s.direction, s.confidence, s.regime)
    assert (r.score_final, r.strategy_class) == (s.score_final, s.strategy_class)
    assert (r.entry_ts, r.entry_price, r.exit_ts, r.exit_price) == (T, 100.0, T, 100.0)


def test_a_price_exactly_at_the_horizon_end_closes_it_and_is_the_exit() -> None:
    book, _ = run([price(T, 100.0), signal(T)])

    book, outcomes = apply_price(book, price(T + HOUR - timedelta(seconds=1), 101.0), POLICY)
    assert outcomes == []
    book, outcomes = apply_price(book, price(T + HOUR, 102.0), POLICY)

    r = reconciled(by_horizon(outcomes)[1])
    assert (r.exit_ts, r.exit_price) == (T + HOUR, 102.0)
    assert r.realized_pnl_bps == (102.0 / 100.0 - 1) * 10_000
    assert [p.open_horizons for p in pending(book)] == [(4, 24)]


def test_short_gains_when_price_falls_and_loses_when_it_rises() -> None:
    up = run([price(T, 100.0), signal(T, Direction.SHORT), price(T + HOUR, 125.0)])[1]
    down = run([price(T, 100.0), signal(T, Direction.SHORT), price(T + HOUR, 80.0)])[1]

    assert reconciled(up[0]).realized_pnl_bps == (100.0 / 125.0 - 1) * 10_000
    assert reconciled(up[0]).realized_pnl_bps == pytest.approx(-2000.0)
    assert reconciled(down[0]).realized_pnl_bps == pytest.approx(2500.0)
    assert pnl_bps(Direction.LONG, 100.0, 125.0) == pytest.approx(2500.0)


def test_a_late_signal_is_reconciled_at_once_from_stored_prices() -> None:
    book, _ = run(price(T + i * HOUR, 100.0 + i) for i in range(30))

    book, outcomes = apply_signal(book, signal(T + 2 * HOUR), POLICY)

    assert {h: reconciled(o).exit_price for h, o in by_horizon(outcomes).items()} == {
        1: 103.0,
        4: 106.0,
        24: 126.0,
    }
    assert pending(book) == []


def test_no_price_before_the_signal_is_unreconcilable() -> None:
    _, outcomes = run([signal(T), price(T + HOUR / 2, 100.0), price(T + 30 * HOUR, 100.0)])

    assert {o.horizon_hours: o.reason for o in outcomes if isinstance(o, Unreconcilable)} == {
        1: UnreconcilableReason.NO_ENTRY_PRICE,
        4: UnreconcilableReason.NO_ENTRY_PRICE,
        24: UnreconcilableReason.NO_ENTRY_PRICE,
    }


@pytest.mark.parametrize(
    ("entry_age", "reason"),
    [
        (2 * HOUR, None),  # two hourly candles old: still usable
        (2 * HOUR + timedelta(seconds=1), UnreconcilableReason.STALE_ENTRY),
    ],
)
def test_an_entry_older_than_the_staleness_limit_is_unreconcilable(
    entry_age: timedelta, reason: UnreconcilableReason | None
) -> None:
    _, outcomes = run([price(T - entry_age, 100.0), signal(T), price(T + HOUR, 101.0)])

    outcome = by_horizon(outcomes)[1]
    assert getattr(outcome, "reason", None) == reason


def test_a_stale_exit_is_unreconcilable_when_the_policy_skips_it() -> None:
    s = signal(T)
    _, outcomes = run([price(T, 100.0), s, price(T + 30 * HOUR, 130.0)], SKIP)

    assert reconciled(by_horizon(outcomes)[1]).exit_ts == T  # one hour old: usable
    assert not reconciled(by_horizon(outcomes)[1]).exit_delayed
    assert by_horizon(outcomes)[4] == Unreconcilable(
        signal_id=s.event_id,
        agent=s.agent,
        symbol=SYMBOL,
        horizon_hours=4,
        reason=UnreconcilableReason.STALE_EXIT,
    )


def test_a_stale_exit_waits_for_the_next_price_by_default() -> None:
    s = signal(T)
    _, outcomes = run([price(T, 100.0), s, price(T + 30 * HOUR, 130.0)])

    four_hours = reconciled(by_horizon(outcomes)[4])
    assert (four_hours.exit_ts, four_hours.exit_price, four_hours.exit_delayed) == (
        T + 30 * HOUR,
        130.0,
        True,
    )
    assert four_hours.ts == T + 4 * HOUR  # still stamped at the horizon end
    assert four_hours.realized_pnl_bps == (130.0 / 100.0 - 1) * 10_000


FRIDAY = datetime(2024, 1, 5, tzinfo=UTC)


def fx_week() -> list[PriceObserved]:
    """Hourly prices that stop Friday 22:00 UTC and resume Sunday 22:00 UTC (an FX weekend)."""
    friday = [price(FRIDAY + i * HOUR, 1.10 + i / 1000) for i in range(23)]
    sunday = [price(FRIDAY + (48 + 22 + i) * HOUR, 1.20 + i / 1000) for i in range(30)]
    return [*friday, *sunday]


@pytest.mark.parametrize("in_order", [True, False])
def test_over_a_weekend_next_open_exits_when_the_market_reopens(in_order: bool) -> None:
    s = signal(FRIDAY + 21 * HOUR)
    events: list[Event] = [*fx_week(), s] if not in_order else []
    if in_order:
        events = [p for p in fx_week() if p.ts <= s.ts] + [s]
        events += [p for p in fx_week() if p.ts > s.ts]

    _, outcomes = run(events)

    results = {h: reconciled(o) for h, o in by_horizon(outcomes).items()}
    reopen = FRIDAY + 70 * HOUR  # Sunday 22:00
    assert (results[1].exit_ts, results[1].exit_delayed) == (FRIDAY + 22 * HOUR, False)
    assert (results[4].exit_ts, results[4].exit_price, results[4].exit_delayed) == (
        reopen,
        1.20,
        True,
    )
    assert (results[24].exit_ts, results[24].exit_delayed) == (reopen, True)
    assert results[24].entry_price == pytest.approx(1.121)


def test_over_a_weekend_skip_gives_no_pnl_for_the_horizons_that_end_while_closed() -> None:
    s = signal(FRIDAY + 21 * HOUR)

    _, outcomes = run([*fx_week(), s], SKIP)

    assert reconciled(by_horizon(outcomes)[1]).exit_ts == FRIDAY + 22 * HOUR
    assert {h: getattr(o, "reason", None) for h, o in by_horizon(outcomes).items()} == {
        1: None,
        4: UnreconcilableReason.STALE_EXIT,
        24: UnreconcilableReason.STALE_EXIT,
    }


def test_duplicates_change_nothing_and_the_first_price_at_an_instant_wins() -> None:
    s = signal(T)
    book, outcomes = run([price(T, 100.0), s, price(T + HOUR, 110.0)])

    for redelivered in (s, price(T + HOUR, 999.0), price(T, 1.0)):
        again, more = apply_event(book, redelivered, POLICY)
        assert (again, more) == (book, [])
    assert reconciled(outcomes[0]).exit_price == 110.0


def test_other_events_leave_the_book_alone() -> None:
    book, _ = run([price(T, 100.0), signal(T)])

    assert apply_event(book, RegimeChanged.create(ts=T, regime="RISK_OFF"), POLICY) == (book, [])


def hourly(days: int) -> list[PriceObserved]:
    return [price(T + i * HOUR, 100.0 + (i % 97)) for i in range(days * 24 + 1)]


def day_of(event: Event) -> str:
    return event.ts.date().isoformat()


def test_signals_arriving_200_days_after_their_prices_are_reconciled_as_if_in_order() -> None:
    prices = hourly(200)
    directions = list(Direction)
    signals = [signal(T + i * 5 * HOUR, directions[i % 2]) for i in range(950)]
    in_order = sorted([*prices, *signals], key=lambda e: (e.ts, isinstance(e, SignalEmitted)))

    _, late = run([*prices, *signals])
    _, timely = run(in_order)

    assert len(late) == 3 * len(signals)
    assert all(isinstance(o, SignalReconciled) for o in late)
    assert as_set(late) == as_set(timely)


def test_only_a_signal_older_than_max_signal_age_days_is_too_old() -> None:
    thresholds = Thresholds(max_signal_age_days=30)
    book, _ = run(
        [price(T + d * 24 * HOUR + h * HOUR, 100.0) for d in range(41) for h in range(2)],
        thresholds,
    )
    assert book.watermark == T + 40 * 24 * HOUR + HOUR
    oldest_accepted = signal(book.watermark - 30 * 24 * HOUR)
    too_old = signal(oldest_accepted.ts - timedelta(seconds=1))

    _, accepted = apply_signal(book, oldest_accepted, thresholds)
    unchanged, refused = apply_signal(book, too_old, thresholds)

    assert reconciled(by_horizon(accepted)[1]).exit_ts == oldest_accepted.ts  # 1 h old
    assert unchanged == book
    assert [(o.horizon_hours, getattr(o, "reason", None)) for o in refused] == [
        (1, UnreconcilableReason.TOO_OLD),
        (4, UnreconcilableReason.TOO_OLD),
        (24, UnreconcilableReason.TOO_OLD),
    ]
    assert "max_signal_age_days" in str(UnreconcilableReason.TOO_OLD)


def test_a_signal_is_remembered_while_a_redelivery_would_be_accepted() -> None:
    thresholds = Thresholds(max_signal_age_days=10)
    s = signal(T + 12 * HOUR)
    daily = [price(T + d * 24 * HOUR + h * HOUR, 100.0) for d in range(11) for h in range(13)]
    book, outcomes = run([*daily[:13], s, *daily[13:]], thresholds)
    assert len(outcomes) == 3
    assert book.watermark == T + 10 * 24 * HOUR + 12 * HOUR  # s is exactly 10 days old

    assert apply_signal(book, s, thresholds) == (book, [])

    book, _ = apply_price(book, price(book.watermark + 13 * HOUR, 100.0), thresholds)
    assert book.signal_ids == {}, "the whole day of s is now out of reach"
    assert {getattr(o, "reason", None) for o in apply_signal(book, s, thresholds)[1]} == {
        UnreconcilableReason.TOO_OLD
    }
    assert len(stored_prices(book)) == len(daily) + 1, "no price is ever forgotten"


def test_max_signal_age_days_is_bounded_by_the_policy_schema() -> None:
    with pytest.raises(ValueError, match="max_signal_age_days"):
        Thresholds(max_signal_age_days=0)
    with pytest.raises(ValueError, match="stale_exit"):
        Thresholds.model_validate({"stale_exit": "guess"})


# --- cost per event ------------------------------------------------------------------------


def test_a_price_touches_one_day_bucket_however_long_the_history() -> None:
    """Counted, not timed: how many stored prices one new price looks at (bisect keys)."""
    calls = 0
    real_ts = rule._ts

    def counting_ts(point: PricePoint) -> datetime:
        nonlocal calls
        calls += 1
        return real_ts(point)

    touched = []
    for days in (2, 200):
        book, _ = run(hourly(days))
        assert book.watermark is not None
        new_price = price(book.watermark + HOUR, 1.0)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(rule, "_ts", counting_ts)
            calls = 0
            new_book, _ = apply_price(book, new_price, POLICY)
        touched.append(calls)
        after = new_book.prices
        changed = [day for day in after if after[day] is not book.prices.get(day)]
        assert changed == [day_of(new_price)]
    assert touched[0] == touched[1] <= 5


def test_a_signal_changes_one_id_bucket_and_one_pending_bucket() -> None:
    book, _ = run([*hourly(30), *(signal(T + i * HOUR) for i in range(0, 30 * 24, 3))])
    assert book.watermark is not None
    late = signal(book.watermark - HOUR)

    new_book, _ = apply_signal(book, late, POLICY)

    for name in ("prices", "pending", "signal_ids"):
        before, after = getattr(book, name), getattr(new_book, name)
        changed = {day for day in after if after[day] is not before.get(day)}
        assert changed <= {day_of(late), (late.ts + HOUR).date().isoformat()}, name


@settings(max_examples=100, deadline=None)
@given(prices=price_streams(), signals=signals_strategy, data=st.data())
def test_the_book_round_trips_through_json(
    prices: list[PriceObserved], signals: list[SignalEmitted], data: st.DataObject
) -> None:
    book, _ = run(interleave(data, prices, signals))

    assert SymbolBook.model_validate(book.model_dump(mode="json")) == book


class CountingTable(dict[bytes, bytes]):
    writes = 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def test_the_book_is_stored_one_day_bucket_per_shard() -> None:
    book, _ = run([*hourly(3), signal(T + 70 * HOUR), signal(T + 10 * HOUR)])
    table = CountingTable()
    store = ShardedStore(table, SymbolBook, BOOK_SHARDS)
    store.save(b"BTC", book)
    assert ShardedStore(table, SymbolBook, BOOK_SHARDS).load(b"BTC") == book
    assert book.watermark is not None

    table.writes = 0
    book, outcomes = apply_price(book, price(book.watermark + HOUR / 2, 1.0), POLICY)
    store.save(b"BTC", book)

    assert outcomes == []
    assert table.writes == 1, "the head alone: the price's day is the newest, kept inline"
    assert ShardedStore(table, SymbolBook, BOOK_SHARDS).load(b"BTC") == book

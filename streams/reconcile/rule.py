"""The reconciliation rule: a pure, deterministic fold of signals and prices per symbol.

No I/O and no wall clock: "now" is the newest price seen (the *watermark*), so a
replay of the same events yields the same outcomes. The live agent keys a
`SymbolBook` by symbol, calls `apply_event` and emits what comes back.

Semantics (SPEC section 5):

- A `PriceObserved` stands for the instant `ts` (for a candle, its close time).
- For a signal at t0 and a horizon h: entry = latest price with ts <= t0, exit =
  latest price with ts <= t0 + h. LONG pnl_bps = (exit/entry - 1) * 10 000,
  SHORT pnl_bps = (entry/exit - 1) * 10 000, plain float arithmetic, no rounding.
- The pair (signal, h) is *closed*, and settled exactly once, as soon as a price
  with ts >= t0 + h has been seen: a price exactly at t0 + h or any later one.
  Until then a later-arriving price could still be the exit. A signal that
  arrives after some of its horizons closed is settled at once from stored prices.
- No guesses: no price at or before t0, or an entry price older than
  `Thresholds.max_exit_staleness_hours` relative to t0, gives an `Unreconcilable`
  outcome that the caller counts.
- Closed markets: when the exit would be stale, policy `stale_exit` decides.
  `next_open` exits at the first price after t0 + h, because that is the price a
  trader could actually have closed at, and marks it `exit_delayed`; `skip`
  gives `Unreconcilable(STALE_EXIT)`. Such a first price always exists once the
  horizon is closed (the watermark is past t0 + h).
- Idempotent: a signal whose event_id is remembered, and a price whose ts is
  already stored, change nothing. Two prices at one ts with different values:
  the first one seen is kept, so a redelivery can never rewrite history.
- No forgotten prices: every price is kept, because the signal and price intakes
  can drift apart by days (a backfill, a catch-up after downtime, one partition
  slower than another) and a signal whose prices are in the log must get its PnL.
  Only a signal whose t0 is more than `Thresholds.max_signal_age_days` behind the
  watermark is refused with `Unreconcilable(TOO_OLD)`: a policy on how late is too
  late, not a storage limit. Signal ids are remembered exactly while a
  redelivery would otherwise be accepted (t0 within that age), so a settled
  signal is never reconciled twice; an older redelivery is answered TOO_OLD
  again, and the caller counts each answer.

Cost: every collection is bucketed by UTC day, so an event touches a few buckets
and never the whole history. A price goes into its day's bucket; an entry or exit
is a dict lookup and a bisect, walking back to earlier days only as far as the
staleness bound allows (forward, for a delayed exit, only across the closed
market). Pending signals are bucketed by the day of their next horizon end, so a
price that moves the watermark looks only at the buckets it passed. Signal ids
are bucketed by the day of t0, and a whole day is forgotten at once when it falls
out of `max_signal_age_days`. Unchanged buckets stay the same objects from one
book to the next, which is what lets the store write only the changed ones.

Order guarantee: the set of outcomes equals the one computed from the complete
price history, whatever the interleaving of signals with prices and however far
signals lag behind prices (up to `max_signal_age_days`), provided prices arrive
in time order *around every horizon end* e = t0 + h: all prices with ts < e,
then a price at exactly e (if any), then, where the exit is delayed, the first
price after e, then the later ones. A stream in time order satisfies this;
prices may be shuffled freely elsewhere. A price that arrives after its horizon
closed is stored but does not reopen it. Outcomes of one event are emitted in
horizon-end order, which for such a stream is also exit-time order.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, TypeAlias

from pydantic import Field

from schemas.envelope import Event, UtcDatetime, WireModel, derived_event_id
from schemas.events import Direction, PriceObserved, SignalEmitted, SignalReconciled
from schemas.policy import Thresholds
from schemas.stats import BPS

PRODUCER = "metasup.reconcile"

# How `streams.runtime.sharded_store` stores a book: one shard per day bucket of each
# collection, so a save writes only the buckets an event changed.
BOOK_SHARDS = {"prices": "days", "pending": "days", "signal_ids": "days"}

_DAY = timedelta(days=1)


class UnreconcilableReason(StrEnum):
    NO_ENTRY_PRICE = "no price at or before signal time"
    STALE_ENTRY = "entry price older than max staleness"
    STALE_EXIT = "exit price older than max staleness"
    TOO_OLD = "signal older than policy max_signal_age_days behind the newest price"


class Unreconcilable(WireModel):
    """A (signal, horizon) that gets no PnL; counted by the caller, never guessed."""

    signal_id: uuid.UUID
    agent: str
    symbol: str
    horizon_hours: int
    reason: UnreconcilableReason


Outcome: TypeAlias = SignalReconciled | Unreconcilable


class PricePoint(WireModel):
    ts: UtcDatetime
    price: float


class PendingSignal(WireModel):
    signal: SignalEmitted
    open_horizons: tuple[int, ...]

    @property
    def next_end(self) -> datetime:
        """The horizon end that will settle this signal next."""
        return self.signal.ts + _hours(self.open_horizons[0])


class SymbolBook(WireModel):
    """Reconciliation state of one symbol; JSON round-trips through model_dump/model_validate.

    Every dict is keyed by ISO UTC day (see the module docstring for why), and
    every bucket is sorted (prices by ts, pending by (next horizon end, id), ids
    by their text), so the stored state does not depend on arrival order beyond
    what the outcomes do.
    """

    # Every price ever seen, by the day of its ts.
    prices: dict[str, tuple[PricePoint, ...]] = Field(default_factory=dict)
    # Signals with open horizons, by the day of their next horizon end.
    pending: dict[str, tuple[PendingSignal, ...]] = Field(default_factory=dict)
    # Ids of accepted signals (pending or settled), by the day of t0, while a
    # redelivery would still be accepted.
    signal_ids: dict[str, tuple[uuid.UUID, ...]] = Field(default_factory=dict)
    # Event time reached by the price stream: the newest price ever seen.
    watermark: UtcDatetime | None = None
    # The oldest price ever seen: tells "no price before t0" from "only stale ones".
    first_price: UtcDatetime | None = None


def apply_price(
    book: SymbolBook, price: PriceObserved, thresholds: Thresholds
) -> tuple[SymbolBook, list[Outcome]]:
    """Store a price and settle every (signal, horizon) it closes."""
    day = _day(price.ts)
    bucket = book.prices.get(day, ())
    index = bisect_left(bucket, price.ts, key=_ts)
    if index < len(bucket) and bucket[index].ts == price.ts:
        return book, []  # duplicate instant: the first price seen wins
    point = PricePoint(ts=price.ts, price=price.price)
    stored = {
        "prices": {**book.prices, day: (*bucket[:index], point, *bucket[index:])},
        "first_price": min(price.ts, book.first_price or price.ts),
    }
    before = book.watermark
    if before is not None and price.ts <= before:
        return book.model_copy(update=stored), []

    watermark = price.ts
    book = book.model_copy(update={**stored, "watermark": watermark})
    pending = dict(book.pending)
    due: list[PendingSignal] = []
    for key in _due_days(pending, before, watermark):
        waiting = pending[key]
        cut = bisect_right(waiting, watermark, key=lambda entry: entry.next_end)
        if cut:
            due += waiting[:cut]
            if cut < len(waiting):
                pending[key] = waiting[cut:]
            else:
                del pending[key]

    outcomes: list[tuple[tuple[datetime, str, int], Outcome]] = []
    for entry in due:
        closed = [h for h in entry.open_horizons if entry.signal.ts + _hours(h) <= watermark]
        outcomes += [
            (_settle_order(entry.signal, h), _settle(book, entry.signal, h, thresholds))
            for h in closed
        ]
        still_open = entry.open_horizons[len(closed) :]
        if still_open:
            _add_pending(pending, PendingSignal(signal=entry.signal, open_horizons=still_open))

    new_book = book.model_copy(
        update={
            "pending": pending,
            "signal_ids": _forget_old_ids(book.signal_ids, before, watermark, thresholds),
        }
    )
    return new_book, [outcome for _, outcome in sorted(outcomes, key=lambda pair: pair[0])]


def apply_signal(
    book: SymbolBook, signal: SignalEmitted, thresholds: Thresholds
) -> tuple[SymbolBook, list[Outcome]]:
    """Settle the horizons the price stream has already passed; keep the rest pending."""
    day = _day(signal.ts)
    ids = book.signal_ids.get(day, ())
    index = bisect_left(ids, str(signal.event_id), key=str)
    if index < len(ids) and ids[index] == signal.event_id:
        return book, []
    horizons = tuple(sorted(set(thresholds.horizons_hours)))
    watermark = book.watermark
    if watermark is not None and signal.ts < watermark - _max_age(thresholds):
        too_old = UnreconcilableReason.TOO_OLD
        return book, [_unreconcilable(signal, h, too_old) for h in horizons]

    closed = [h for h in horizons if watermark is not None and signal.ts + _hours(h) <= watermark]
    outcomes = [_settle(book, signal, h, thresholds) for h in closed]
    update: dict[str, Any] = {
        "signal_ids": {**book.signal_ids, day: (*ids[:index], signal.event_id, *ids[index:])}
    }
    still_open = horizons[len(closed) :]
    if still_open:
        pending = dict(book.pending)
        _add_pending(pending, PendingSignal(signal=signal, open_horizons=still_open))
        update["pending"] = pending
    return book.model_copy(update=update), outcomes


def apply_event(
    book: SymbolBook, event: Event, thresholds: Thresholds
) -> tuple[SymbolBook, list[Outcome]]:
    """Dispatch on the event type; other events leave the book as it is."""
    if isinstance(event, PriceObserved):
        return apply_price(book, event, thresholds)
    if isinstance(event, SignalEmitted):
        return apply_signal(book, event, thresholds)
    return book, []


def pnl_bps(direction: Direction, entry_price: float, exit_price: float) -> float:
    if direction is Direction.LONG:
        return (exit_price / entry_price - 1) * BPS
    return (entry_price / exit_price - 1) * BPS


def _settle(book: SymbolBook, signal: SignalEmitted, h: int, thresholds: Thresholds) -> Outcome:
    staleness = _hours(thresholds.max_exit_staleness_hours)
    exit_at = signal.ts + _hours(h)
    entry = _latest_at_or_before(book.prices, signal.ts, signal.ts - staleness)
    if entry is None:
        if book.first_price is not None and book.first_price <= signal.ts:
            return _unreconcilable(signal, h, UnreconcilableReason.STALE_ENTRY)
        return _unreconcilable(signal, h, UnreconcilableReason.NO_ENTRY_PRICE)
    exit_ = _latest_at_or_before(book.prices, exit_at, exit_at - staleness)
    delayed = exit_ is None
    if exit_ is None:
        if thresholds.stale_exit == "skip":
            return _unreconcilable(signal, h, UnreconcilableReason.STALE_EXIT)
        exit_ = _first_after(book.prices, exit_at)
    return SignalReconciled.create(
        event_id=derived_event_id(signal.event_id, h),
        ts=exit_at,
        producer=PRODUCER,
        signal_id=signal.event_id,
        run_id=signal.run_id,
        agent=signal.agent,
        symbol=signal.symbol,
        direction=signal.direction,
        horizon_hours=h,
        entry_ts=entry.ts,
        entry_price=entry.price,
        exit_ts=exit_.ts,
        exit_price=exit_.price,
        exit_delayed=delayed,
        realized_pnl_bps=pnl_bps(signal.direction, entry.price, exit_.price),
        regime=signal.regime,
        confidence=signal.confidence,
        score_final=signal.score_final,
        strategy_class=signal.strategy_class,
    )


def _unreconcilable(signal: SignalEmitted, h: int, reason: UnreconcilableReason) -> Unreconcilable:
    return Unreconcilable(
        signal_id=signal.event_id,
        agent=signal.agent,
        symbol=signal.symbol,
        horizon_hours=h,
        reason=reason,
    )


def _latest_at_or_before(
    prices: Mapping[str, tuple[PricePoint, ...]], at: datetime, earliest: datetime
) -> PricePoint | None:
    """The latest price with earliest <= ts <= at, or None if every earlier one is older."""
    day = at.date()
    while True:
        bucket = prices.get(day.isoformat(), ())
        index = bisect_right(bucket, at, key=_ts)
        if index:
            point = bucket[index - 1]
            return point if point.ts >= earliest else None
        if _start(day) <= earliest:
            return None
        day -= _DAY


def _first_after(prices: Mapping[str, tuple[PricePoint, ...]], at: datetime) -> PricePoint:
    """The first price after `at`; the caller knows one exists (the watermark is past `at`)."""
    day = at.date()
    while True:
        bucket = prices.get(day.isoformat(), ())
        index = bisect_right(bucket, at, key=_ts)
        if index < len(bucket):
            return bucket[index]
        day += _DAY


def _add_pending(pending: dict[str, tuple[PendingSignal, ...]], entry: PendingSignal) -> None:
    """Insert into the bucket of the entry's next horizon end (a fresh dict the caller owns)."""
    key = _day(entry.next_end)
    bucket = pending.get(key, ())
    index = bisect_left(bucket, _pending_order(entry), key=_pending_order)
    pending[key] = (*bucket[:index], entry, *bucket[index:])


def _due_days(
    pending: Mapping[str, object], before: datetime | None, watermark: datetime
) -> Iterable[str]:
    """Days whose bucket may hold horizon ends in (before, watermark], in order.

    Every pending end is after `before` (a signal's closed horizons are settled
    on arrival), so only the days from `before` to the watermark can be due;
    walking them costs the distance moved, listing the buckets their number.
    """
    last = _day(watermark)
    if before is None or (watermark - before).days >= len(pending):
        return sorted(key for key in pending if key <= last)
    first = before.date()
    days = (_day_after(first, n) for n in range((watermark.date() - first).days + 1))
    return [key for key in days if key in pending]


def _forget_old_ids(
    signal_ids: dict[str, tuple[uuid.UUID, ...]],
    before: datetime | None,
    watermark: datetime,
    thresholds: Thresholds,
) -> dict[str, tuple[uuid.UUID, ...]]:
    """Drop the days whose every signal would now be refused TOO_OLD (once per day passed)."""
    oldest = _day(watermark - _max_age(thresholds))
    if before is not None and _day(before - _max_age(thresholds)) == oldest:
        return signal_ids
    return {key: ids for key, ids in signal_ids.items() if key >= oldest}


def _settle_order(signal: SignalEmitted, h: int) -> tuple[datetime, str, int]:
    """Emit in horizon-end order, so downstream folds see reconciliations as time passes."""
    return (signal.ts + _hours(h), str(signal.event_id), h)


def _pending_order(entry: PendingSignal) -> tuple[datetime, str]:
    return (entry.next_end, str(entry.signal.event_id))


def _ts(point: PricePoint) -> datetime:
    return point.ts


def _day(ts: datetime) -> str:
    return ts.date().isoformat()


def _day_after(day: date, n: int) -> str:
    return (day + n * _DAY).isoformat()


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _hours(h: float) -> timedelta:
    return timedelta(hours=h)


def _max_age(thresholds: Thresholds) -> timedelta:
    return timedelta(days=thresholds.max_signal_age_days)

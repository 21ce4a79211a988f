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
- No guesses: no price at or before t0, or an entry (exit) price older than
  `Thresholds.max_exit_staleness_hours` relative to t0 (t0 + h), gives an
  `Unreconcilable` outcome that the caller counts.
- Idempotent: a signal whose event_id is pending or settled, and a price whose
  ts is already stored, change nothing. Two prices at one ts with different
  values: the first one seen is kept, so a redelivery can never rewrite history.
- Bounded state: with cutoff = watermark - retention, prices older than the
  cutoff are dropped, and a signal is remembered as settled while
  t0 - staleness >= cutoff, i.e. while every price its entry could come from is
  still stored. The same test rejects a signal that arrives later than that with
  `Unreconcilable(TOO_OLD)` instead of settling it against truncated history, so
  a forgotten signal is never re-reconciled (a redelivery of such an old signal
  is answered TOO_OLD again; the caller counts each answer).

Order guarantee: the set of outcomes equals the one computed from the complete
price history, whatever the interleaving of signals with prices, provided
(1) prices arrive in time order *around every horizon end* e = t0 + h: all prices
with ts < e, then a price at exactly e (if any), then prices with ts > e. A
stream in time order satisfies this; prices may be shuffled freely between
horizon ends. (2) Each signal arrives while it is within retention.
A price that arrives after its horizon closed is stored but does not reopen it.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left, bisect_right
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeAlias

from schemas.envelope import Event, WireModel, derived_event_id
from schemas.events import Direction, PriceObserved, SignalEmitted, SignalReconciled
from schemas.policy import Thresholds

PRODUCER = "metasup.reconcile"
# Prices are kept for the longest horizon plus this margin, so a signal that is
# late by up to about a week is still settled from stored prices.
RETENTION_MARGIN = timedelta(days=7)


class UnreconcilableReason(StrEnum):
    NO_ENTRY_PRICE = "no price at or before signal time"
    STALE_ENTRY = "entry price older than max staleness"
    STALE_EXIT = "exit price older than max staleness"
    TOO_OLD = "older than retained price history"


class Unreconcilable(WireModel):
    """A (signal, horizon) that gets no PnL; counted by the caller, never guessed."""

    signal_id: uuid.UUID
    agent: str
    symbol: str
    horizon_hours: int
    reason: UnreconcilableReason


Outcome: TypeAlias = SignalReconciled | Unreconcilable


class PricePoint(WireModel):
    ts: datetime
    price: float


class PendingSignal(WireModel):
    signal: SignalEmitted
    open_horizons: tuple[int, ...]


class SettledSignal(WireModel):
    """Just enough of a settled signal to drop its redeliveries until it leaves retention."""

    signal_id: uuid.UUID
    ts: datetime


class SymbolBook(WireModel):
    """Reconciliation state of one symbol; JSON round-trips through model_dump/model_validate.

    All tuples are kept sorted (prices by ts, signals by (ts, id)) so that the
    stored state does not depend on arrival order beyond what the outcomes do.
    """

    prices: tuple[PricePoint, ...] = ()
    pending: tuple[PendingSignal, ...] = ()
    settled: tuple[SettledSignal, ...] = ()

    @property
    def watermark(self) -> datetime | None:
        """Event time reached by the price stream: the newest price ever seen."""
        return self.prices[-1].ts if self.prices else None


def retention_for(thresholds: Thresholds, retention: timedelta | None = None) -> timedelta:
    """Return the price retention; it must cover a pending signal's longest horizon and entry."""
    longest = timedelta(hours=max(thresholds.horizons_hours, default=0))
    staleness = timedelta(hours=thresholds.max_exit_staleness_hours)
    if retention is None:
        return longest + max(RETENTION_MARGIN, staleness)
    if retention < longest + staleness:
        raise ValueError(
            f"retention {retention} is shorter than the longest horizon plus the staleness "
            f"limit ({longest + staleness}); pending signals would lose their entry price"
        )
    return retention


def apply_price(
    book: SymbolBook,
    price: PriceObserved,
    thresholds: Thresholds,
    retention: timedelta | None = None,
) -> tuple[SymbolBook, list[Outcome]]:
    """Store a price, settle every (signal, horizon) it closes, and drop expired state."""
    keep = retention_for(thresholds, retention)
    before = book.watermark
    if before is not None and price.ts < before - keep:
        return book, []
    index = bisect_left(book.prices, price.ts, key=_ts)
    if index < len(book.prices) and book.prices[index].ts == price.ts:
        return book, []  # duplicate instant: the first price seen wins
    point = PricePoint(ts=price.ts, price=price.price)
    prices = (*book.prices[:index], point, *book.prices[index:])
    watermark = prices[-1].ts
    if before is not None and watermark == before:
        return book.model_copy(update={"prices": prices}), []

    staleness = _staleness(thresholds)
    outcomes: list[tuple[tuple[datetime, str, int], Outcome]] = []
    pending: list[PendingSignal] = []
    settled = list(book.settled)
    for entry in book.pending:
        due = [h for h in entry.open_horizons if entry.signal.ts + _hours(h) <= watermark]
        outcomes += [
            (_settle_order(entry.signal, h), _settle(prices, entry.signal, h, staleness))
            for h in due
        ]
        still_open = tuple(h for h in entry.open_horizons if h not in due)
        if still_open:
            pending.append(PendingSignal(signal=entry.signal, open_horizons=still_open))
        else:
            settled.append(SettledSignal(signal_id=entry.signal.event_id, ts=entry.signal.ts))

    cutoff = watermark - keep
    kept_prices = prices[bisect_left(prices, cutoff, key=_ts) :]
    kept_settled = tuple(
        sorted(
            (done for done in settled if done.ts - staleness >= cutoff),
            key=lambda done: (done.ts, str(done.signal_id)),
        )
    )
    new_book = SymbolBook(prices=kept_prices, pending=tuple(pending), settled=kept_settled)
    return new_book, [outcome for _, outcome in sorted(outcomes, key=lambda pair: pair[0])]


def apply_signal(
    book: SymbolBook,
    signal: SignalEmitted,
    thresholds: Thresholds,
    retention: timedelta | None = None,
) -> tuple[SymbolBook, list[Outcome]]:
    """Settle the horizons the price stream has already passed; keep the rest pending."""
    keep = retention_for(thresholds, retention)
    known = {entry.signal.event_id for entry in book.pending}
    known.update(done.signal_id for done in book.settled)
    if signal.event_id in known:
        return book, []
    horizons = tuple(sorted(set(thresholds.horizons_hours)))
    staleness = _staleness(thresholds)
    watermark = book.watermark
    if watermark is not None and signal.ts - staleness < watermark - keep:
        too_old = UnreconcilableReason.TOO_OLD
        return book, [_unreconcilable(signal, h, too_old) for h in horizons]

    closed = [h for h in horizons if watermark is not None and signal.ts + _hours(h) <= watermark]
    outcomes = [_settle(book.prices, signal, h, staleness) for h in closed]
    still_open = tuple(h for h in horizons if h not in closed)
    if still_open:
        pending = sorted(
            (*book.pending, PendingSignal(signal=signal, open_horizons=still_open)),
            key=lambda entry: (entry.signal.ts, str(entry.signal.event_id)),
        )
        return book.model_copy(update={"pending": tuple(pending)}), outcomes
    settled = sorted(
        (*book.settled, SettledSignal(signal_id=signal.event_id, ts=signal.ts)),
        key=lambda done: (done.ts, str(done.signal_id)),
    )
    return book.model_copy(update={"settled": tuple(settled)}), outcomes


def apply_event(
    book: SymbolBook,
    event: Event,
    thresholds: Thresholds,
    retention: timedelta | None = None,
) -> tuple[SymbolBook, list[Outcome]]:
    """Dispatch on the event type; other events leave the book as it is."""
    if isinstance(event, PriceObserved):
        return apply_price(book, event, thresholds, retention)
    if isinstance(event, SignalEmitted):
        return apply_signal(book, event, thresholds, retention)
    return book, []


def pnl_bps(direction: Direction, entry_price: float, exit_price: float) -> float:
    if direction is Direction.LONG:
        return (exit_price / entry_price - 1) * 10_000
    return (entry_price / exit_price - 1) * 10_000


def _settle(
    prices: tuple[PricePoint, ...], signal: SignalEmitted, h: int, staleness: timedelta
) -> Outcome:
    exit_at = signal.ts + _hours(h)
    entry = _latest_at_or_before(prices, signal.ts)
    exit_ = _latest_at_or_before(prices, exit_at)
    if entry is None or exit_ is None:
        return _unreconcilable(signal, h, UnreconcilableReason.NO_ENTRY_PRICE)
    if signal.ts - entry.ts > staleness:
        return _unreconcilable(signal, h, UnreconcilableReason.STALE_ENTRY)
    if exit_at - exit_.ts > staleness:
        return _unreconcilable(signal, h, UnreconcilableReason.STALE_EXIT)
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


def _latest_at_or_before(prices: tuple[PricePoint, ...], at: datetime) -> PricePoint | None:
    index = bisect_right(prices, at, key=_ts)
    return prices[index - 1] if index else None


def _settle_order(signal: SignalEmitted, h: int) -> tuple[datetime, str, int]:
    """Emit in exit-time order, so downstream folds see reconciliations as time passes."""
    return (signal.ts + _hours(h), str(signal.event_id), h)


def _ts(point: PricePoint) -> datetime:
    return point.ts


def _hours(h: float) -> timedelta:
    return timedelta(hours=h)


def _staleness(thresholds: Thresholds) -> timedelta:
    return _hours(thresholds.max_exit_staleness_hours)

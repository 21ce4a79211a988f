"""Candles and the one rule of which instant a candle's price stands for.

A candle's close price is only known once the candle has closed, so it stands for
its CLOSE time, `open_time + interval`. Stamping it with the open time would
hand the reconciler a price from the future (up to one interval early) and bias
every entry and exit. Every source (CSV, Binance, Coinbase) goes through
`Candle.close_time` and `candle_to_event`, so the rule lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.envelope import derived_event_id, format_utc
from schemas.events import PriceObserved

# The intervals every source here understands (Binance labels; Coinbase has the
# same set as granularities in seconds).
INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
}

# Quote currencies stripped from pair names; signals and prices use the base asset.
_QUOTES = ("USDT", "USDC", "BUSD", "USD")
_SEPARATORS = ("-", "/", "_", ":")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def interval_length(interval: str) -> timedelta:
    """Return the duration of an interval label, refusing labels no source serves."""
    try:
        return INTERVALS[interval]
    except KeyError:
        known = ", ".join(INTERVALS)
        raise ValueError(f"unknown candle interval {interval!r}; expected one of {known}") from None


def floor_time(ts: datetime, step: timedelta) -> datetime:
    """Round `ts` down to a multiple of `step` since the epoch (candle boundaries are)."""
    return _EPOCH + ((ts - _EPOCH) // step) * step


def ceil_time(ts: datetime, step: timedelta) -> datetime:
    """Round `ts` up to a multiple of `step` since the epoch."""
    floor = floor_time(ts, step)
    return floor if floor == ts else floor + step


def base_asset(symbol: str) -> str:
    """Normalise a pair or asset name to its base asset: BTCUSD, BTC-USD, btcusdt -> BTC.

    Signals name the asset ("BTC") while exchanges name pairs, so every price is
    keyed by the base asset and the reconciler can match the two.
    """
    text = symbol.strip().upper()
    for separator in _SEPARATORS:
        if separator in text:
            text = text.split(separator, 1)[0]
            break
    else:
        for quote in _QUOTES:
            if text.endswith(quote) and len(text) > len(quote):
                text = text[: -len(quote)]
                break
    if not text:
        raise ValueError(f"cannot find a base asset in symbol {symbol!r}")
    return text


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed OHLC bar, reduced to what reconciliation needs: its close price."""

    symbol: str
    open_time: datetime
    interval: str
    close: float
    source: str

    def __post_init__(self) -> None:
        if self.open_time.tzinfo is None or self.open_time.utcoffset() is None:
            raise ValueError("candle open_time must be timezone-aware")
        step = interval_length(self.interval)
        open_utc = self.open_time.astimezone(UTC)
        if floor_time(open_utc, step) != open_utc:
            # A misaligned bar usually means seconds were read as milliseconds.
            raise ValueError(f"open_time {open_utc} is not on a {self.interval} boundary")
        if not self.close > 0:
            raise ValueError(f"candle close must be positive, got {self.close}")
        object.__setattr__(self, "open_time", open_utc)

    @property
    def close_time(self) -> datetime:
        """The instant the close price stands for: open_time + interval."""
        return self.open_time + interval_length(self.interval)


def candle_to_event(candle: Candle, producer: str) -> PriceObserved:
    """Turn a closed candle into the `price.observed` event stamped at its close time.

    The id is derived from (source, symbol, close time), so replaying a feed or
    fetching the same range twice yields the same events, which consumers dedupe.
    """
    close_time = candle.close_time
    return PriceObserved.create(
        event_id=derived_event_id("price", candle.source, candle.symbol, format_utc(close_time)),
        ts=close_time,
        producer=producer,
        symbol=candle.symbol,
        price=candle.close,
        source=candle.source,
        interval=candle.interval,
    )

"""A file source of candles for replays and the demo: the candle CSV layouts people download.

People bring files from CryptoDataDownload (a URL banner above the header, newest
row first, `Date` or `unix,date,symbol,...`, hours written `2019-07-04 01-AM` in
older files), Binance kline exports (epoch milliseconds, or microseconds since
2025, oldest first, sometimes no header at all), Yahoo Finance (`Date,...,Close,
Adj Close,...`, daily) and this repo's own `Date,Symbol,...` slice. Rather than
one reader per vendor, the header is found by its column names and every time
value is read by its shape, so a new vendor usually just works.

Every layout here gives a candle's OPEN time; `Candle.close_time` turns it into
the instant the close price stands for (see `streams.reconcile.candles`). The
interval is inferred from the spacing of the rows unless given, because a daily
file read as hourly would stamp each close 23 hours early.

Files are not always in order and may repeat a row, so rows are sorted by time
and a repeated (symbol, open time) keeps the row that comes first in the file,
just as the reconciler keeps the first price it sees for an instant. A row that
cannot be read is skipped and reported with its line number and why; a file
with no readable header, or no readable row, is refused with the reason.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from schemas.events import PriceObserved
from streams.reconcile.candles import INTERVALS, Candle, base_asset, candle_to_event

log = logging.getLogger(__name__)

# The demo slice shipped with the package (see streams/data/README.md).
DEMO_CSV = Path(__file__).resolve().parents[1] / "data" / "btc-usd-1h.csv"

# Column names, compared case-insensitively; for time, the first one present wins
# (an epoch column before a formatted date: it carries no time zone doubt).
TIME_COLUMNS = ("open_time", "open time", "unix", "unix timestamp", "timestamp", "date", "time")
CLOSE_COLUMNS = ("close",)
SYMBOL_COLUMNS = ("symbol", "ticker", "pair")
# A banner (or a disclaimer) above the header is skipped; this many lines are searched.
HEADER_SEARCH_LINES = 20
# Binance kline files without a header: open time, open, high, low, close, ...
HEADERLESS_TIME, HEADERLESS_CLOSE = 0, 4
# Text layouts besides ISO 8601 (which `datetime.fromisoformat` reads, with or
# without seconds, a `T` or an offset).
TIME_FORMATS = ("%Y-%m-%d %I-%p", "%Y-%m-%d %I %p")
# Epoch values are told apart by size: seconds until the year 5138, then milliseconds,
# then microseconds (Binance spot files since 2025).
_MS_FROM, _US_FROM = 10**11, 10**14
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SkippedRow:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class CandleFile:
    """What a file gave: its candles in (open time, symbol) order, and what it could not."""

    path: Path
    candles: list[Candle]
    interval: str
    time_column: str
    skipped: list[SkippedRow]
    duplicates: int

    def summary(self, shown: int = 5) -> str:
        text = (
            f"{self.path}: {len(self.candles)} {self.interval} candles "
            f"(time from {self.time_column!r})"
        )
        if self.duplicates:
            text += f"; {self.duplicates} repeated rows dropped (the first in the file kept)"
        if self.skipped:
            lines = "; ".join(f"line {row.line}: {row.reason}" for row in self.skipped[:shown])
            more = f"; and {len(self.skipped) - shown} more" if len(self.skipped) > shown else ""
            text += f"; {len(self.skipped)} rows skipped: {lines}{more}"
        return text


@dataclass(frozen=True, slots=True)
class _Layout:
    time: int
    close: int
    symbol: int | None
    time_name: str
    first_row_line: int


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    symbol: str
    open_time: datetime
    close: float


def load_candles(
    path: str | Path,
    *,
    source: str = "file",
    interval: str | None = None,
    symbol: str | None = None,
) -> CandleFile:
    """Read every candle of `path`, with a report of the rows it had to skip.

    `symbol` names the asset of every row (it overrides a symbol column, and is
    needed when there is none); `interval` is inferred from the rows if not given.
    Raises ValueError, naming the file and the reason, if nothing can be read.
    """
    path = Path(path)
    records: list[tuple[int, list[str]]] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        for record in reader:
            records.append((reader.line_num, record))
    layout = _find_layout(path, records)
    if symbol is None and layout.symbol is None:
        raise ValueError(f"{path}: no symbol column ({', '.join(SYMBOL_COLUMNS)}); pass symbol")
    rows: list[_Row] = []
    skipped: list[SkippedRow] = []
    for line, record in records:
        if line < layout.first_row_line or not any(field.strip() for field in record):
            continue
        try:
            rows.append(_read_row(line, record, layout, symbol))
        except ValueError as exc:
            skipped.append(SkippedRow(line, str(exc)))
    if not rows:
        reasons = "; ".join(f"line {row.line}: {row.reason}" for row in skipped[:3])
        raise ValueError(f"{path}: no readable candle row" + (f" ({reasons})" if reasons else ""))

    label = interval or _infer_interval(path, rows)
    candles: dict[tuple[datetime, str], Candle] = {}
    duplicates = 0
    for row in rows:
        try:
            candle = Candle(row.symbol, row.open_time, label, row.close, source)
        except ValueError as exc:
            skipped.append(SkippedRow(row.line, str(exc)))
            continue
        key = (candle.open_time, candle.symbol)
        if key in candles:
            duplicates += 1
        else:
            candles[key] = candle
    if not candles:
        raise ValueError(f"{path}: no readable candle row ({skipped[0].reason})")
    skipped.sort(key=lambda row: row.line)
    ordered = [candles[key] for key in sorted(candles)]
    return CandleFile(path, ordered, label, layout.time_name, skipped, duplicates)


def read_candles(
    path: str | Path,
    *,
    source: str = "file",
    interval: str | None = None,
    symbol: str | None = None,
) -> list[Candle]:
    """The candles of `path`, sorted by (open time, symbol); skipped rows are logged."""
    loaded = load_candles(path, source=source, interval=interval, symbol=symbol)
    if loaded.skipped or loaded.duplicates:
        log.warning("%s", loaded.summary())
    return loaded.candles


def price_events(
    path: str | Path,
    *,
    producer: str,
    source: str = "file",
    interval: str | None = None,
    symbol: str | None = None,
) -> Iterator[PriceObserved]:
    """Yield one `price.observed` per candle of `path`, in time order, at close times."""
    for candle in read_candles(path, source=source, interval=interval, symbol=symbol):
        yield candle_to_event(candle, producer)


def parse_time(text: str) -> datetime:
    """Read one time value in any layout above, as UTC (naive text is taken as UTC)."""
    value = text.strip()
    if not value:
        raise ValueError("empty time")
    try:
        number = float(value)
    except ValueError:
        return _parse_text_time(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"epoch time {value!r} is not a positive number")
    try:
        if number >= _US_FROM:
            return _EPOCH + timedelta(microseconds=number)
        if number >= _MS_FROM:
            return _EPOCH + timedelta(milliseconds=number)
        return _EPOCH + timedelta(seconds=number)
    except OverflowError:
        raise ValueError(f"epoch time {value!r} is out of range") from None


def _parse_text_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        pass
    for layout in TIME_FORMATS:
        try:
            return datetime.strptime(value, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"unreadable time {value!r}")


def _find_layout(path: Path, records: Sequence[tuple[int, list[str]]]) -> _Layout:
    """Find the header (below any banner) or recognise a headerless Binance kline file."""
    for line, record in records[:HEADER_SEARCH_LINES]:
        names = [field.strip().lower() for field in record]
        time_name = next((name for name in TIME_COLUMNS if name in names), None)
        close = next((names.index(name) for name in CLOSE_COLUMNS if name in names), None)
        if time_name is not None and close is not None:
            symbol = next((names.index(name) for name in SYMBOL_COLUMNS if name in names), None)
            time = names.index(time_name)
            return _Layout(time, close, symbol, record[time].strip(), line + 1)
    first = next((r for r in records if any(field.strip() for field in r[1])), None)
    if first is not None and len(first[1]) > HEADERLESS_CLOSE and _all_numbers(first[1]):
        return _Layout(HEADERLESS_TIME, HEADERLESS_CLOSE, None, "column 1 (no header)", first[0])
    raise ValueError(
        f"{path}: no header found in the first {HEADER_SEARCH_LINES} lines: expected a time "
        f"column (one of {', '.join(TIME_COLUMNS)}) and a close column (close), any case"
    )


def _all_numbers(fields: Sequence[str]) -> bool:
    try:
        for field in fields:
            float(field)
    except ValueError:
        return False
    return True


def _read_row(line: int, record: Sequence[str], layout: _Layout, symbol: str | None) -> _Row:
    """Raises ValueError with the reason; the caller adds the line number."""
    columns = (layout.time, layout.close, -1 if layout.symbol is None else layout.symbol)
    if len(record) <= max(columns):
        raise ValueError(f"{len(record)} fields, expected at least {max(columns) + 1}")
    if symbol is None:
        assert layout.symbol is not None  # checked once for the file by load_candles
        symbol = record[layout.symbol]
    close_text = record[layout.close].strip()
    try:
        close = float(close_text)
    except ValueError:
        raise ValueError(f"unreadable close {close_text!r}") from None
    return _Row(line, base_asset(symbol), parse_time(record[layout.time]), close)


def _infer_interval(path: Path, rows: Sequence[_Row]) -> str:
    """The interval label of the most common gap between consecutive distinct open times."""
    times = sorted({row.open_time for row in rows})
    gaps = Counter(later - earlier for earlier, later in pairwise(times))
    if not gaps:
        raise ValueError(f"{path}: a single candle time; pass the interval")
    step = gaps.most_common(1)[0][0]
    label = next((name for name, length in INTERVALS.items() if length == step), None)
    if label is None:
        known = ", ".join(INTERVALS)
        raise ValueError(f"{path}: rows are {step} apart, not a known interval ({known})")
    return label

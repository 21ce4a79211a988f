"""A file source of candles for replays and the demo (CryptoDataDownload CSV layout).

Columns: `Date,Symbol,Open,High,Low,Close,VolumeFrom,VolumeTo`, where `Date` is
the candle OPEN time in UTC. Such files are written newest first and are not
always in order, so the rows are sorted by time before anything is emitted: the
reconciler needs a price stream in time order.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from schemas.events import PriceObserved
from streams.reconcile.candles import Candle, base_asset, candle_to_event

# The demo slice shipped with the package (see streams/data/README.md).
DEMO_CSV = Path(__file__).resolve().parents[1] / "data" / "btc-usd-1h.csv"

_REQUIRED = ("Date", "Symbol", "Close")


def _parse_open_time(text: str) -> datetime:
    """Read `2019-07-04 01:00` as UTC; an explicit offset, if any, is honoured."""
    parsed = datetime.fromisoformat(text.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _numbered_rows(lines: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row); skip the banner CryptoDataDownload puts above the header."""
    start = next((i for i, line in enumerate(lines) if line.startswith("Date,")), None)
    if start is None:
        raise ValueError("no header row starting with 'Date,' found")
    yield from enumerate(csv.DictReader(lines[start:]), start=start + 2)


def read_candles(path: str | Path, *, source: str = "file", interval: str = "1h") -> list[Candle]:
    """Read every candle of `path`, sorted by (open time, symbol).

    A second row for the same (symbol, open time) is dropped: the first one read
    wins, just as the reconciler keeps the first price it sees for an instant.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    candles: dict[tuple[datetime, str], Candle] = {}
    for number, row in _numbered_rows(lines):
        missing = [name for name in _REQUIRED if not row.get(name)]
        if missing:
            raise ValueError(f"{path}:{number}: missing {', '.join(missing)}")
        try:
            candle = Candle(
                symbol=base_asset(row["Symbol"]),
                open_time=_parse_open_time(row["Date"]),
                interval=interval,
                close=float(row["Close"]),
                source=source,
            )
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        candles.setdefault((candle.open_time, candle.symbol), candle)
    return [candles[key] for key in sorted(candles)]


def price_events(
    path: str | Path, *, producer: str, source: str = "file", interval: str = "1h"
) -> Iterator[PriceObserved]:
    """Yield one `price.observed` per candle of `path`, in time order, at close times."""
    for candle in read_candles(path, source=source, interval=interval):
        yield candle_to_event(candle, producer)

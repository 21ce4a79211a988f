"""Historical candles over HTTP: Binance klines first, Coinbase candles as the fallback.

Only candle endpoints are used, never a ticker or spot price. A spot price is
the price of *now*, and using it for a past signal time would invent a PnL. A
candle that has not closed yet is not used either: its close is still moving.

Reconciling a thousand signals must not cost a thousand HTTP calls. So
`PriceFeed` fetches whole ranges in pages (1 000 klines or 300 Coinbase candles a
request), extends each fetch to a full batch, and remembers per (symbol,
interval) which ranges it already holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests

from schemas.clock import Clock, utc_now
from schemas.envelope import format_utc, to_utc
from schemas.events import PriceObserved
from streams.reconcile.candles import (
    Candle,
    base_asset,
    candle_to_event,
    ceil_time,
    floor_time,
    interval_length,
)

logger = logging.getLogger(__name__)

DEFAULT_BINANCE_URL = "https://api.binance.com"
DEFAULT_COINBASE_URL = "https://api.exchange.coinbase.com"

Sleep = Callable[[float], None]


class ExchangeError(Exception):
    """One exchange could not answer one request (after the retries it deserved)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"GET {url} failed: {reason}")
        self.url = url
        self.reason = reason


class PriceFeedUnavailable(RuntimeError):
    """No configured source could serve a range; the message says which URL failed."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one exchange before falling back to the next."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    # Waiting longer than this on a 429 is worse than falling back; ignoring the
    # server's Retry-After instead gets the IP banned (Binance answers 418).
    max_retry_after_s: float = 60.0
    timeout_s: tuple[float, float] = (3.05, 10.0)  # (connect, read)

    def backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2**attempt))


class JsonClient:
    """GET JSON from one base URL with timeouts, retries and respect for rate limits.

    Retried: connection errors, timeouts, 5xx and 429 (after `Retry-After` when
    the server sends one). Not retried: other 4xx (the request itself is wrong,
    e.g. an unknown symbol), which goes straight to the fallback.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or _new_session()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep

    def get(self, path: str, params: Mapping[str, str | int]) -> Any:
        url = f"{self.base_url}{path}"
        last_failure = "not attempted"
        for attempt in range(self.retry.attempts):
            wait = self.retry.backoff(attempt)
            try:
                response = self.session.get(url, params=params, timeout=self.retry.timeout_s)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                last_failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise ExchangeError(url, f"response is not JSON: {exc}") from exc
                last_failure = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code == 429:
                    wait = self._retry_after(url, response, default=wait)
                elif response.status_code < 500:
                    raise ExchangeError(url, last_failure)
            if attempt + 1 < self.retry.attempts:
                logger.info("GET %s: %s; retrying in %.1f s", url, last_failure, wait)
                self.sleep(wait)
        raise ExchangeError(url, f"{last_failure} (after {self.retry.attempts} attempts)")

    def _retry_after(self, url: str, response: requests.Response, default: float) -> float:
        header = response.headers.get("Retry-After")
        if header is None:
            return default
        try:
            wait = float(header)
        except ValueError:
            return default  # an HTTP-date; the exponential backoff is close enough
        if wait > self.retry.max_retry_after_s:
            raise ExchangeError(url, f"rate limited, server asks to wait {wait:.0f} s")
        return max(wait, 0.0)


def _new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "meta-supervisor price feed"  # Coinbase requires one
    return session


class CandleSource(Protocol):
    """An exchange that returns closed candles whose open time is in a range."""

    name: str

    def fetch(
        self, symbol: str, interval: str, first_open: datetime, last_open: datetime
    ) -> list[Candle]:
        """Return the candles of `symbol` opening in [first_open, last_open], both included."""
        ...


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


class _ExchangeSource:
    """What both exchanges share: a JSON client with retries on one base URL."""

    default_url = ""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.client = JsonClient(
            base_url or self.default_url, session=session, retry=retry, sleep=sleep
        )


class BinanceKlines(_ExchangeSource):
    """`GET /api/v3/klines` for `<BASE>USDT`, paginated by 1 000 klines."""

    name = "binance"
    default_url = DEFAULT_BINANCE_URL
    page_limit = 1000

    def fetch(
        self, symbol: str, interval: str, first_open: datetime, last_open: datetime
    ) -> list[Candle]:
        step = interval_length(interval)
        base = base_asset(symbol)
        candles: list[Candle] = []
        cursor = first_open
        while cursor <= last_open:
            params: dict[str, str | int] = {
                "symbol": f"{base}USDT",
                "interval": interval,
                "startTime": _ms(cursor),
                "endTime": _ms(last_open),
                "limit": self.page_limit,
            }
            rows = self.client.get("/api/v3/klines", params)
            page = [self._parse(row, base, interval) for row in _rows(self.client, rows)]
            candles.extend(c for c in page if first_open <= c.open_time <= last_open)
            next_cursor = max((c.open_time + step for c in page), default=cursor)
            if len(page) < self.page_limit or next_cursor <= cursor:
                break
            cursor = next_cursor
        return candles

    def _parse(self, row: Any, base: str, interval: str) -> Candle:
        # [open_time_ms, open, high, low, close, volume, close_time_ms, ...]; the
        # close time is derived from the open time, the one rule in candles.py.
        try:
            open_time = datetime.fromtimestamp(int(row[0]) / 1000, tz=UTC)
            close = float(row[4])
            return Candle(base, open_time, interval, close, self.name)
        except (TypeError, ValueError, IndexError) as exc:
            raise ExchangeError(self.client.base_url, f"malformed kline {row!r}: {exc}") from exc


class CoinbaseCandles(_ExchangeSource):
    """`GET /products/<BASE>-USD/candles`, at most 300 candles a request, newest first."""

    name = "coinbase"
    default_url = DEFAULT_COINBASE_URL
    page_limit = 300
    granularities = frozenset({60, 300, 900, 3600, 21600, 86400})

    def fetch(
        self, symbol: str, interval: str, first_open: datetime, last_open: datetime
    ) -> list[Candle]:
        step = interval_length(interval)
        granularity = int(step.total_seconds())
        base = base_asset(symbol)
        path = f"/products/{base}-USD/candles"
        if granularity not in self.granularities:
            raise ExchangeError(self.client.base_url + path, f"no {interval} granularity")
        candles: dict[datetime, Candle] = {}
        cursor = first_open
        while cursor <= last_open:
            chunk_end = min(last_open, cursor + (self.page_limit - 1) * step)
            params: dict[str, str | int] = {
                "granularity": granularity,
                "start": format_utc(cursor),
                "end": format_utc(chunk_end),
            }
            for row in _rows(self.client, self.client.get(path, params)):
                candle = self._parse(row, base, interval)
                if cursor <= candle.open_time <= chunk_end:
                    candles[candle.open_time] = candle
            cursor = chunk_end + step
        return [candles[key] for key in sorted(candles)]

    def _parse(self, row: Any, base: str, interval: str) -> Candle:
        # [time_s, low, high, open, close, volume]; `time` is the open time.
        try:
            open_time = datetime.fromtimestamp(int(row[0]), tz=UTC)
            return Candle(base, open_time, interval, float(row[4]), self.name)
        except (TypeError, ValueError, IndexError) as exc:
            raise ExchangeError(self.client.base_url, f"malformed candle {row!r}: {exc}") from exc


def _rows(client: JsonClient, payload: Any) -> list[Any]:
    if not isinstance(payload, list):
        raise ExchangeError(client.base_url, f"expected a list of candles, got {payload!r:.200}")
    return payload


def covering_range(
    signal_times: Iterable[datetime], horizons: Iterable[int], *, interval: str = "1h"
) -> tuple[datetime, datetime]:
    """Return the (start, end) of price times that reconciling these signals needs.

    `horizons` are in hours, as in the policy. The start reaches one interval
    before the first signal, so the candle that closed at or before it (the entry
    price) is included. The end is the last signal plus the longest horizon.
    """
    times = sorted(to_utc(ts) for ts in signal_times)
    longest = max(horizons, default=None)
    if not times or longest is None:
        raise ValueError("covering_range needs at least one signal time and one horizon")
    return times[0] - interval_length(interval), times[-1] + timedelta(hours=longest)


@dataclass
class _Series:
    """The candles held for one (symbol, interval) and the open-time ranges fetched."""

    spans: list[tuple[datetime, datetime]] = field(default_factory=list)  # half-open, merged
    by_open: dict[datetime, Candle] = field(default_factory=dict)

    def gaps(self, start: datetime, stop: datetime) -> list[tuple[datetime, datetime]]:
        found: list[tuple[datetime, datetime]] = []
        cursor = start
        for span_start, span_stop in self.spans:
            if span_start >= stop:
                break
            if span_start > cursor:
                found.append((cursor, span_start))
            cursor = max(cursor, span_stop)
        if cursor < stop:
            found.append((cursor, stop))
        return found

    def next_span_start(self, after: datetime) -> datetime | None:
        return next((start for start, _ in self.spans if start > after), None)

    def add(self, start: datetime, stop: datetime, candles: Iterable[Candle]) -> None:
        self.by_open.update((candle.open_time, candle) for candle in candles)
        merged: list[tuple[datetime, datetime]] = []
        for span_start, span_stop in sorted([*self.spans, (start, stop)]):
            if merged and span_start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], span_stop))
            else:
                merged.append((span_start, span_stop))
        self.spans = merged


class PriceFeed:
    """Closed candles from the first source that answers, fetched in batches and cached.

    A range that was fetched is never fetched again, even where the exchange had
    no candle: a missing price stays missing (and is counted downstream) rather
    than being guessed or re-requested on every lookup.
    """

    def __init__(
        self,
        sources: Sequence[CandleSource],
        *,
        clock: Clock = utc_now,
        batch_candles: int = 1000,
    ) -> None:
        if not sources:
            raise ValueError("PriceFeed needs at least one candle source")
        self.sources = list(sources)
        self.clock = clock
        self.batch_candles = batch_candles
        self._series: dict[tuple[str, str], _Series] = {}

    def prefetch(
        self, symbols: Iterable[str], start: datetime, end: datetime, interval: str = "1h"
    ) -> None:
        """Fetch every candle of `symbols` whose close time lies in [start, end]."""
        for symbol in symbols:
            self._ensure(base_asset(symbol), interval, *self._open_range(start, end, interval))

    def candles(
        self, symbol: str, start: datetime, end: datetime, interval: str = "1h"
    ) -> list[Candle]:
        """Return the closed candles of `symbol` whose close time lies in [start, end]."""
        base = base_asset(symbol)
        first_open, last_open = self._open_range(start, end, interval)
        series = self._ensure(base, interval, first_open, last_open)
        return [
            series.by_open[key] for key in sorted(series.by_open) if first_open <= key <= last_open
        ]

    def candle_at(self, symbol: str, ts: datetime, interval: str = "1h") -> Candle | None:
        """Return the candle whose close is the latest price at or before `ts`, if any.

        That is the candle closing at `ts` rounded down to the interval. If it is
        missing, the answer is None; an older candle is never passed off as it.
        """
        step = interval_length(interval)
        open_time = floor_time(to_utc(ts), step) - step
        series = self._ensure(base_asset(symbol), interval, open_time, open_time)
        return series.by_open.get(open_time)

    def events(
        self,
        symbols: Iterable[str],
        start: datetime,
        end: datetime,
        *,
        producer: str,
        interval: str = "1h",
    ) -> list[PriceObserved]:
        """Return `price.observed` events for [start, end], in time order across symbols."""
        found = [
            candle_to_event(candle, producer)
            for symbol in symbols
            for candle in self.candles(symbol, start, end, interval)
        ]
        return sorted(found, key=lambda event: (event.ts, event.symbol))

    @staticmethod
    def _open_range(start: datetime, end: datetime, interval: str) -> tuple[datetime, datetime]:
        # A close time in [start, end] means an open time in [start - step, end - step].
        step = interval_length(interval)
        return ceil_time(to_utc(start) - step, step), floor_time(to_utc(end) - step, step)

    def _ensure(
        self, symbol: str, interval: str, first_open: datetime, last_open: datetime
    ) -> _Series:
        step = interval_length(interval)
        series = self._series.setdefault((symbol, interval), _Series())
        # The newest candle that has closed; later ones are still moving.
        last_closed = floor_time(self.clock(), step) - step
        stop_limit = min(last_open, last_closed) + step
        for gap_start, gap_stop in series.gaps(first_open, stop_limit):
            batch_stop = max(gap_stop, gap_start + self.batch_candles * step)
            next_held = series.next_span_start(gap_start)
            if next_held is not None:
                batch_stop = min(batch_stop, next_held)
            batch_stop = min(batch_stop, last_closed + step)
            candles = self._fetch(symbol, interval, gap_start, batch_stop - step)
            series.add(gap_start, batch_stop, candles)
        return series

    def _fetch(
        self, symbol: str, interval: str, first_open: datetime, last_open: datetime
    ) -> list[Candle]:
        failures: list[str] = []
        for source in self.sources:
            try:
                candles = source.fetch(symbol, interval, first_open, last_open)
            except ExchangeError as exc:
                failures.append(f"{source.name}: {exc}")
                logger.warning(
                    "%s could not serve %s %s candles %s..%s (%s)",
                    source.name,
                    symbol,
                    interval,
                    format_utc(first_open),
                    format_utc(last_open),
                    exc,
                )
                continue
            if failures:
                logger.warning(
                    "served %s %s candles from fallback %s", symbol, interval, source.name
                )
            return candles
        raise PriceFeedUnavailable(
            f"no price source could serve {symbol} {interval} candles opening "
            f"{format_utc(first_open)}..{format_utc(last_open)}: {'; '.join(failures)}. "
            "Check network access to these URLs, point BINANCE_BASE_URL / COINBASE_BASE_URL "
            "at reachable endpoints, or replay prices from a CSV file "
            "(METASUP_PRICE_FEED=csv)."
        )


def default_price_feed(
    *,
    binance_url: str = DEFAULT_BINANCE_URL,
    coinbase_url: str = DEFAULT_COINBASE_URL,
    session: requests.Session | None = None,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
    clock: Clock = utc_now,
) -> PriceFeed:
    """Binance klines first, Coinbase candles when Binance fails (SPEC section 5)."""
    session = session or _new_session()
    return PriceFeed(
        [
            BinanceKlines(binance_url, session=session, retry=retry, sleep=sleep),
            CoinbaseCandles(coinbase_url, session=session, retry=retry, sleep=sleep),
        ],
        clock=clock,
    )

"""Price feeds: the close-time rule, CSV replay, and the HTTP feeds against a local fake.

The HTTP tests drive the real `requests` client against `tests.fakes.exchange`
on 127.0.0.1; nothing leaves the machine. Sleeps are recorded, never slept.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import derived_event_id
from streams.reconcile.candles import Candle, base_asset, candle_to_event
from streams.reconcile.csv_source import DEMO_CSV, price_events, read_candles
from streams.reconcile.http_feeds import (
    BinanceKlines,
    CoinbaseCandles,
    PriceFeed,
    PriceFeedUnavailable,
    RetryPolicy,
    covering_range,
    default_price_feed,
)
from tests.builders import ManualClock
from tests.fakes.exchange import FakeExchange, Fault, close_price

HOUR = timedelta(hours=1)
JAN = datetime(2024, 1, 1, tzinfo=UTC)
AFTER_SERIES = datetime(2024, 7, 1, 0, 30, tzinfo=UTC)
SHARED_CSV = Path("/work/shared/data/bitfinex-1h-btc-usd.csv")


class Sleeps(list[float]):
    """A sleep function that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange() as fake:
        yield fake


@pytest.fixture
def fake(exchange: FakeExchange) -> FakeExchange:
    """The module's server with a clean request log and no faults left over."""
    exchange.reset()
    return exchange


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # no proxy between the client and 127.0.0.1
        yield s


def make_feed(
    fake: FakeExchange,
    session: requests.Session,
    sleeps: Sleeps,
    clock: ManualClock | None = None,
) -> PriceFeed:
    return default_price_feed(
        binance_url=fake.url,
        coinbase_url=fake.url,
        session=session,
        sleep=sleeps,
        clock=clock or ManualClock(AFTER_SERIES),
    )


def expected_close(symbol: str, ts: datetime) -> float:
    """The fake's price at `ts`: the close of the candle that closed at or before it."""
    floor = ts.replace(minute=0, second=0, microsecond=0)
    return close_price(symbol, floor - HOUR)


# -- the close-time rule -----------------------------------------------------------


def test_a_candle_stands_for_its_close_time() -> None:
    candle = Candle("BTC", datetime(2024, 1, 1, 10, tzinfo=UTC), "1h", 42_000.5, "binance")

    event = candle_to_event(candle, producer="test")

    assert candle.close_time == datetime(2024, 1, 1, 11, tzinfo=UTC)
    assert event.ts == candle.close_time
    assert (event.symbol, event.price, event.source, event.interval) == (
        "BTC",
        42_000.5,
        "binance",
        "1h",
    )
    assert event.event_id == derived_event_id("price", "binance", "BTC", "2024-01-01T11:00:00Z")
    assert candle_to_event(candle, producer="other").event_id == event.event_id


@pytest.mark.parametrize(
    "open_time",
    [datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 10, 30, tzinfo=UTC)],  # noqa: DTZ001
)
def test_naive_or_misaligned_open_times_are_refused(open_time: datetime) -> None:
    with pytest.raises(ValueError):
        Candle("BTC", open_time, "1h", 1.0, "binance")


@pytest.mark.parametrize(
    ("symbol", "base"),
    [
        ("BTCUSD", "BTC"),
        ("btcusdt", "BTC"),
        ("BTC-USD", "BTC"),
        ("ETH/USDC", "ETH"),
        ("BTC", "BTC"),
        ("USDT", "USDT"),
    ],
)
def test_symbols_are_normalised_to_the_base_asset(symbol: str, base: str) -> None:
    assert base_asset(symbol) == base


def test_covering_range_spans_entry_of_first_and_longest_exit_of_last() -> None:
    times = [JAN + timedelta(hours=5, minutes=20), JAN, JAN + timedelta(days=3)]

    assert covering_range(times, [1, 24, 4]) == (JAN - HOUR, JAN + timedelta(days=4))
    with pytest.raises(ValueError):
        covering_range([], [1])


# -- CSV source ------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared data file not present")
def test_csv_source_sorts_the_real_file_and_normalises_its_symbol() -> None:
    candles = read_candles(SHARED_CSV)

    opens = [c.open_time for c in candles]
    assert len(candles) == 17_583
    assert opens == sorted(opens) and len(set(opens)) == len(opens)
    assert {c.symbol for c in candles} == {"BTC"}
    assert opens[0] == datetime(2017, 7, 1, 11, tzinfo=UTC)
    # Newest row of the file: 2019-07-04 01:00,...,Close 11849.69; it stands for 02:00.
    assert (candles[-1].open_time, candles[-1].close) == (
        datetime(2019, 7, 4, 1, tzinfo=UTC),
        11849.69,
    )
    # The file has rows out of order around 2017-11-12; sorted, they are hourly.
    nov = [t for t in opens if datetime(2017, 11, 11, 20, tzinfo=UTC) <= t][:12]
    assert all(b - a == HOUR for a, b in pairwise(nov))


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared data file not present")
def test_demo_slice_is_the_last_90_days_of_the_real_file() -> None:
    full = {c.open_time: c.close for c in read_candles(SHARED_CSV)}

    demo = read_candles(DEMO_CSV)

    assert demo[0].open_time == datetime(2019, 4, 5, tzinfo=UTC)
    assert demo[-1].open_time == datetime(2019, 7, 4, 1, tzinfo=UTC)
    assert len(demo) == 2_162
    assert all(full[c.open_time] == c.close for c in demo)


def test_csv_events_are_in_time_order_at_close_times(tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(
        "https://www.CryptoDataDownload.com\n"
        "Date,Symbol,Open,High,Low,Close,VolumeFrom,VolumeTo\n"
        "2019-07-04 01:00,BTCUSD,1,1,1,103.0,1,1\n"
        "2019-07-03 23:00,BTCUSD,1,1,1,101.0,1,1\n"
        "2019-07-04 00:00,BTCUSD,1,1,1,102.0,1,1\n"
        "2019-07-04 00:00,ETHUSD,1,1,1,9.0,1,1\n",
        encoding="utf-8",
    )

    events = list(price_events(path, producer="replay", source="bitfinex"))

    assert [(e.ts.hour, e.symbol, e.price) for e in events] == [
        (0, "BTC", 101.0),
        (1, "BTC", 102.0),
        (1, "ETH", 9.0),
        (2, "BTC", 103.0),
    ]
    again = list(price_events(path, producer="replay", source="bitfinex"))
    assert [e.event_id for e in again] == [e.event_id for e in events]


# -- HTTP sources against the fake exchange ---------------------------------------


def test_binance_paginates_over_a_range_longer_than_one_page(
    fake: FakeExchange, session: requests.Session
) -> None:
    last_open = JAN + 1499 * HOUR

    candles = BinanceKlines(fake.url, session=session).fetch("BTC", "1h", JAN, last_open)

    assert fake.count("binance") == 2
    assert [c.open_time for c in candles] == [JAN + i * HOUR for i in range(1500)]
    assert all(c.close == close_price("BTC", c.open_time) for c in candles)
    assert {(c.symbol, c.source) for c in candles} == {("BTC", "binance")}


def test_coinbase_asks_for_at_most_300_candles_and_sorts_them(
    fake: FakeExchange, session: requests.Session
) -> None:
    last_open = JAN + 999 * HOUR

    candles = CoinbaseCandles(fake.url, session=session).fetch("ETH", "1h", JAN, last_open)

    assert fake.count("coinbase") == 4
    assert [c.open_time for c in candles] == [JAN + i * HOUR for i in range(1000)]
    assert all(c.close == close_price("ETH", c.open_time) for c in candles)


def test_a_429_waits_as_long_as_retry_after_says_then_succeeds(
    fake: FakeExchange, session: requests.Session
) -> None:
    sleeps = Sleeps()
    fake.script("binance", Fault(429, {"Retry-After": "3"}))

    candles = BinanceKlines(fake.url, session=session, sleep=sleeps).fetch("BTC", "1h", JAN, JAN)

    assert sleeps == [3.0]
    assert fake.count("binance") == 2
    assert candles[0].close == close_price("BTC", JAN)


def test_a_5xx_is_retried_with_backoff_then_succeeds(
    fake: FakeExchange, session: requests.Session
) -> None:
    sleeps = Sleeps()
    fake.script("binance", Fault(502), Fault(503))
    retry = RetryPolicy(backoff_s=0.5)

    source = BinanceKlines(fake.url, session=session, sleep=sleeps, retry=retry)
    candles = source.fetch("BTC", "1h", JAN, JAN + HOUR)

    assert sleeps == [0.5, 1.0]
    assert fake.count("binance") == 3
    assert len(candles) == 2


def test_persistent_binance_5xx_falls_back_to_coinbase(
    fake: FakeExchange, session: requests.Session
) -> None:
    sleeps = Sleeps()
    fake.fail_always("binance", Fault(500))
    feed = make_feed(fake, session, sleeps)

    candles = feed.candles("BTC", JAN + HOUR, JAN + 48 * HOUR)

    assert fake.count("binance") == RetryPolicy().attempts
    assert len(sleeps) == RetryPolicy().attempts - 1
    assert len(candles) == 48
    assert {c.source for c in candles} == {"coinbase"}
    assert all(c.close == close_price("BTC", c.open_time) for c in candles)


def test_a_refused_request_is_not_retried_and_falls_back(
    fake: FakeExchange, session: requests.Session
) -> None:
    fake.script("binance", Fault(400, body='{"code": -1121, "msg": "Invalid symbol."}'))
    feed = make_feed(fake, session, Sleeps())

    candle = feed.candle_at("BTC", JAN + 5 * HOUR)

    assert fake.count("binance") == 1
    assert candle is not None and candle.source == "coinbase"


def test_a_retry_after_too_long_to_wait_for_falls_back_at_once(
    fake: FakeExchange, session: requests.Session
) -> None:
    sleeps = Sleeps()
    fake.script("binance", Fault(429, {"Retry-After": "600"}))
    feed = make_feed(fake, session, sleeps)

    candle = feed.candle_at("BTC", JAN + 5 * HOUR)

    assert sleeps == []
    assert candle is not None and candle.source == "coinbase"


def test_no_reachable_source_raises_an_error_naming_the_url(session: requests.Session) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    feed = default_price_feed(
        binance_url=closed_url,
        coinbase_url=closed_url,
        session=session,
        sleep=Sleeps(),
        clock=ManualClock(AFTER_SERIES),
    )

    with pytest.raises(PriceFeedUnavailable) as caught:
        feed.candle_at("BTC", JAN)

    message = str(caught.value)
    assert f"{closed_url}/api/v3/klines" in message
    assert f"{closed_url}/products/BTC-USD/candles" in message
    assert "BINANCE_BASE_URL" in message


# -- PriceFeed: batching, caching, no unclosed candles ------------------------------


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetched", "lazy"])
def test_a_thousand_signals_over_30_days_cost_a_handful_of_requests(
    fake: FakeExchange, session: requests.Session, prefetch: bool
) -> None:
    rng = random.Random(7)
    start = datetime(2024, 2, 1, tzinfo=UTC)
    signals = [
        (rng.choice(["BTC", "ETH"]), start + timedelta(seconds=rng.randrange(30 * 86_400)))
        for _ in range(1_000)
    ]
    signals.sort(key=lambda signal: signal[1])  # a stream delivers signals in time order
    feed = make_feed(fake, session, Sleeps())
    if prefetch:
        first, last = covering_range([t for _, t in signals], [1, 4, 24])
        feed.prefetch({"BTC", "ETH"}, first, last)

    for symbol, t0 in signals:
        for horizon in (0, 1, 4, 24):
            ts = t0 + horizon * HOUR
            candle = feed.candle_at(symbol, ts)
            assert candle is not None and candle.close_time <= ts < candle.close_time + HOUR
            assert candle.close == expected_close(symbol, ts)

    assert fake.count() <= (2 if prefetch else 10)


def test_a_range_already_fetched_is_not_fetched_again(
    fake: FakeExchange, session: requests.Session
) -> None:
    feed = make_feed(fake, session, Sleeps())
    first = feed.candles("BTC", JAN + 10 * HOUR, JAN + 20 * HOUR)
    requests_after_first = fake.count()

    second = feed.candles("BTC", JAN + 12 * HOUR, JAN + 15 * HOUR)

    assert fake.count() == requests_after_first == 1
    assert second == first[2:6]


def test_a_candle_still_open_is_never_used(fake: FakeExchange, session: requests.Session) -> None:
    now = datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
    clock = ManualClock(now)
    feed = make_feed(fake, session, Sleeps(), clock=clock)

    latest = feed.candle_at("BTC", now)
    assert latest is not None and latest.close_time == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert feed.candle_at("BTC", now + HOUR) is None  # the 10:00-11:00 bar is still moving
    assert feed.candles("BTC", now, now + 5 * HOUR) == []

    clock.now = now + HOUR  # the bar has closed now, and the cache did not mark it fetched
    closed = feed.candle_at("BTC", now + HOUR)
    assert closed is not None and closed.close == close_price("BTC", now - timedelta(minutes=30))


def test_events_are_time_ordered_across_symbols_with_stable_ids(
    fake: FakeExchange, session: requests.Session
) -> None:
    start, end = JAN + HOUR, JAN + 6 * HOUR

    events = make_feed(fake, session, Sleeps()).events(
        ["ETH", "BTCUSDT"], start, end, producer="feed"
    )
    again = make_feed(fake, session, Sleeps()).events(["BTC", "ETH"], start, end, producer="feed")

    assert [(e.ts, e.symbol) for e in events] == [
        (JAN + h * HOUR, symbol) for h in range(1, 7) for symbol in ("BTC", "ETH")
    ]
    assert all(e.price == close_price(e.symbol, e.ts - HOUR) for e in events)
    assert [e.event_id for e in again] == [e.event_id for e in events]


# -- the cache, as a property ----------------------------------------------------


class CountingSource:
    """A candle source that serves every hour and records the open times it served."""

    name = "counting"

    def __init__(self) -> None:
        self.served: list[datetime] = []

    def fetch(
        self, symbol: str, interval: str, first_open: datetime, last_open: datetime
    ) -> list[Candle]:
        count = int((last_open - first_open) / HOUR) + 1
        candles = [
            Candle(symbol, first_open + i * HOUR, interval, 1.0 + i, self.name)
            for i in range(count)
        ]
        self.served.extend(c.open_time for c in candles)
        return candles


@settings(max_examples=60, deadline=None)
@given(
    ranges=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 80)), min_size=1, max_size=8),
    batch=st.integers(1, 50),
)
def test_the_cache_serves_every_range_and_fetches_each_candle_once(
    ranges: list[tuple[int, int]], batch: int
) -> None:
    source = CountingSource()
    feed = PriceFeed([source], clock=lambda: JAN + 500 * HOUR, batch_candles=batch)

    for offset, length in ranges:
        start, end = JAN + offset * HOUR, JAN + (offset + length) * HOUR
        got = feed.candles("BTC", start, end)
        closes = [c.close_time for c in got]
        expected_end = min(end, JAN + 500 * HOUR)
        assert closes == [start + i * HOUR for i in range(int((expected_end - start) / HOUR) + 1)]

    assert len(source.served) == len(set(source.served))

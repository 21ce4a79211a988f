"""The live price feed against a real broker and the fake Binance + Coinbase server.

Signals go into `signals`; the feed follows them, polls candles over HTTP (in a
thread: the broker's compatibility proxy runs in this event loop) and publishes
`price.observed` events stamped at candle close times. The clock is fixed and
moved by hand; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from schemas.events import PriceObserved, SignalEmitted
from streams.broker.embedded import EmbeddedBroker
from streams.reconcile.http_feeds import default_price_feed
from streams.runtime.live_feed import run_live_feed
from tests.builders import ManualClock
from tests.conftest import eventually
from tests.fakes.exchange import FakeExchange, Fault, close_price
from tests.integration.stack import create_topics, produce, read_events

HOUR = timedelta(hours=1)
NOW = datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
POLL_S = 0.05


class Sleeps(list[float]):
    """The feed's async sleep: records each pause and sleeps at most a few ms of it."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(min(seconds, POLL_S))


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange() as server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # no proxy between the client and 127.0.0.1
        yield s


def signal(symbol: str, ts: datetime) -> SignalEmitted:
    return SignalEmitted.create(
        ts=ts,
        producer="test",
        agent="agent-a",
        run_id=uuid.uuid4(),
        symbol=symbol,
        direction="LONG",
        confidence=0.6,
    )


def closes(prices: list[PriceObserved], symbol: str) -> list[datetime]:
    return sorted({p.ts for p in prices if p.symbol == symbol})


async def prices_in(broker: EmbeddedBroker, prefix: str) -> list[PriceObserved]:
    found = await read_events(broker, prefix, "prices")
    return [event for event in found if isinstance(event, PriceObserved)]


async def holds(broker: EmbeddedBroker, prefix: str, symbol: str, count: int) -> bool:
    """`prices` holds at least `count` distinct candles of `symbol`."""
    found = await prices_in(broker, prefix)
    return len({p.event_id for p in found if p.symbol == symbol}) >= count


async def test_live_feed_publishes_closed_candles_and_rides_out_an_outage(
    broker: EmbeddedBroker, prefix: str, fake: FakeExchange, session: requests.Session
) -> None:
    clock = ManualClock(NOW)
    lines: list[str] = []
    sleeps = Sleeps()
    feed = default_price_feed(
        binance_url=fake.url,
        coinbase_url=fake.url,
        session=session,
        sleep=lambda seconds: None,  # the client's own retries: not waited for
        clock=clock,
    )
    await create_topics(broker, prefix)
    # BTC's first signal at 05:20 needs the candle closing at 05:00 (its entry);
    # ETH's at 06:10 needs 06:00. The 10:00-11:00 candle is still open at 10:30.
    await produce(
        broker,
        prefix,
        [
            signal("BTC", NOW - timedelta(hours=5, minutes=10)),
            signal("ETH-USD", NOW - timedelta(hours=4, minutes=20)),
            signal("BTCUSDT", NOW - timedelta(hours=2)),
        ],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live_feed(
            broker.bootstrap,
            stop,
            topic_prefix=prefix,
            feed=feed,
            say=lines.append,
            poll_s=POLL_S,
            clock=clock,
            sleep=sleeps,
        )
    )
    try:
        expected = {
            "BTC": [NOW.replace(minute=0) - h * HOUR for h in range(5, -1, -1)],
            "ETH": [NOW.replace(minute=0) - h * HOUR for h in range(4, -1, -1)],
        }
        prices: list[PriceObserved] = []

        async def published(count: int) -> bool:
            nonlocal prices
            prices = await prices_in(broker, prefix)
            return len({p.event_id for p in prices}) >= count

        await eventually(lambda: published(11), timeout_s=30, every_s=0.2)

        # Candles stand for their CLOSE time and carry the fake exchange's closes.
        assert {s: closes(prices, s) for s in ("BTC", "ETH")} == expected
        assert {p.symbol for p in prices} == {"BTC", "ETH"}
        assert all(p.price == close_price(p.symbol, p.ts - HOUR) for p in prices)
        assert all(p.source == "binance" and p.interval == "1h" for p in prices)
        assert [p.ts for p in prices if p.symbol == "BTC"] == expected["BTC"]  # time order
        assert fake.count() == 2  # one klines request per symbol covers the whole range

        # Later polls with the same clock publish nothing and cost no request.
        polls = len(sleeps)
        await eventually(lambda: len(sleeps) >= polls + 3, timeout_s=10)
        assert len(await prices_in(broker, prefix)) == len(prices)
        assert fake.count() == 2

        # One more candle closes: only it is fetched (one request per symbol) and published.
        clock.now = NOW + HOUR
        await eventually(lambda: published(13), timeout_s=20, every_s=0.2)
        newest = [p for p in prices if p.ts == NOW.replace(minute=0) + HOUR]
        assert {p.symbol: p.price for p in newest} == {
            s: close_price(s, NOW.replace(minute=0)) for s in ("BTC", "ETH")
        }
        assert fake.count() == 4
        assert len(prices) == 13  # nothing was published twice

        # Both exchanges fail every request: the feed says so, backs off, keeps running.
        fake.fail_always("binance", Fault(503))
        fake.fail_always("coinbase", Fault(503))
        clock.now = NOW + 2 * HOUR

        def outages() -> list[str]:
            return [line for line in lines if "unreachable" in line]

        await eventually(lambda: len(outages()) >= 3, timeout_s=30)
        assert not task.done()
        assert all(
            line.startswith("price feed: Binance and Coinbase unreachable (") and "HTTP 503" in line
            for line in outages()
        )
        delays = [float(line.rsplit("retrying in ", 1)[1].removesuffix(" s")) for line in outages()]
        assert delays[:3] == [POLL_S, 2 * POLL_S, 4 * POLL_S]  # exponential backoff
        assert len(await prices_in(broker, prefix)) == 13

        # The exchanges come back: the missed candle is published, and the feed says so.
        fake.reset()
        await eventually(lambda: published(15), timeout_s=30, every_s=0.2)
        assert any("answer again" in line for line in lines)
        assert closes(prices, "ETH")[-1] == NOW.replace(minute=0) + 2 * HOUR

        # It stops promptly when asked.
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.exception() is None


async def test_a_symbol_no_exchange_lists_does_not_hold_up_the_others(
    broker: EmbeddedBroker, prefix: str, fake: FakeExchange, session: requests.Session
) -> None:
    clock = ManualClock(NOW)
    lines: list[str] = []
    feed = default_price_feed(
        binance_url=fake.url,
        coinbase_url=fake.url,
        session=session,
        sleep=lambda seconds: None,
        clock=clock,
    )
    await create_topics(broker, prefix)
    await produce(broker, prefix, [signal("DOGE", NOW - 3 * HOUR), signal("SOL", NOW - 2 * HOUR)])
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live_feed(
            broker.bootstrap,
            stop,
            topic_prefix=prefix,
            feed=feed,
            say=lines.append,
            poll_s=POLL_S,
            clock=clock,
            sleep=Sleeps(),
        )
    )
    try:
        await eventually(lambda: holds(broker, prefix, "SOL", 3), timeout_s=30, every_s=0.2)
        prices = await prices_in(broker, prefix)
        assert {p.symbol for p in prices} == {"SOL"}
        assert closes(prices, "SOL") == [NOW.replace(minute=0) - h * HOUR for h in (2, 1, 0)]

        def doge_lines() -> list[str]:
            return [line for line in lines if "DOGE" in line and "retrying in" in line]

        await eventually(lambda: len(doge_lines()) >= 3, timeout_s=20)
        assert "Invalid symbol" in doge_lines()[0]
        assert all(
            line.startswith("price feed: Binance and Coinbase have no DOGE candles (")
            for line in doge_lines()
        )
        delays = [
            float(line.rsplit("retrying in ", 1)[1].removesuffix(" s")) for line in doge_lines()
        ]
        # Each failure doubles the wait before DOGE is asked for again.
        assert delays[:3] == [POLL_S, 2 * POLL_S, 4 * POLL_S]

        # A new SOL candle still comes out within a poll or two.
        clock.now = NOW + HOUR
        await eventually(lambda: holds(broker, prefix, "SOL", 4), timeout_s=20, every_s=0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    assert task.exception() is None

"""Live prices: poll closed candles for every asset the fleet signals on, publish to `prices`.

Switched on with METASUP_PRICE_FEED=binance; `metasup up` runs it next to the stack.

- Which symbols, and from when: a plain group-less consumer follows `signals`
  from the beginning and keeps, per base asset, the earliest signal time. The
  feed needs the candles closing from one interval before that time (the entry
  price of the first signal) up to now, and never a candle that has not closed.
- Every poll fetches only what was not published yet (the `PriceFeed` caches
  ranges too, so a range it holds costs no request), turns candles into
  `price.observed` events stamped at their close time, and publishes them in
  time order. Ids derive from (source, symbol, close time), so publishing a
  candle twice is harmless: consumers dedupe it.
- `requests` blocks, so every fetch runs in a thread: the event loop also runs
  the broker's compatibility proxy and the durable-log recorder.
- When neither exchange answers, one plain line says so and the feed backs off
  exponentially (capped); it never raises into the stack, and it stops as soon
  as `stop` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ParamSpec, TypeVar

import requests
from aiokafka import TopicPartition

from schemas.codec import RejectedRecord, decode_event
from schemas.envelope import format_utc
from schemas.events import PriceObserved, SignalEmitted
from schemas.topics import topic
from streams.broker.consumers import assigned_consumer
from streams.broker.offsets import true_end_offsets
from streams.broker.publisher import Publisher
from streams.reconcile.candles import (
    base_asset,
    candle_to_event,
    ceil_time,
    floor_time,
    interval_length,
)
from streams.reconcile.http_feeds import (
    Clock,
    PriceFeed,
    PriceFeedUnavailable,
    covering_range,
    utc_now,
)

logger = logging.getLogger(__name__)

PRODUCER = "metasup.price-feed"
MAX_BACKOFF_S = 300.0
# Candles asked for in one step of a backfill: publishing starts before a long
# history is fetched, and a stop is noticed between steps.
CHUNK_CANDLES = 1000
SIGNAL_TYPES = frozenset({SignalEmitted.TYPE})

Say = Callable[[str], None]
AsyncSleep = Callable[[float], Awaitable[object]]
P = ParamSpec("P")
T = TypeVar("T")


class _Stopped(Exception):
    """`stop` was set while waiting."""


@dataclass
class _Followed:
    """One base asset: from when it needs prices, which close times are done, its failures."""

    first_signal: datetime
    done_from: datetime | None = None  # close times [done_from, done_to] fetched and published
    done_to: datetime | None = None
    failures: int = 0  # consecutive polls in which its candles could not be fetched
    skip: int = 0  # timed polls to sit out before trying again (the backoff)

    def todo(self, last_close: datetime, interval: str) -> list[tuple[datetime, datetime]]:
        """The close-time ranges (inclusive, aligned) still to fetch, at most one chunk each."""
        step = interval_length(interval)
        start, _ = covering_range([self.first_signal], [0], interval=interval)
        first_close = ceil_time(start, step)
        chunk = (CHUNK_CANDLES - 1) * step
        if self.done_from is None or self.done_to is None:
            if first_close > last_close:
                return []
            return [(first_close, min(last_close, first_close + chunk))]
        ranges: list[tuple[datetime, datetime]] = []
        if first_close < self.done_from:  # a signal older than every one before it arrived
            ranges.append((max(first_close, self.done_from - step - chunk), self.done_from - step))
        if self.done_to < last_close:
            ranges.append((self.done_to + step, min(last_close, self.done_to + step + chunk)))
        return ranges

    def mark_done(self, start: datetime, end: datetime) -> None:
        self.done_from = start if self.done_from is None else min(self.done_from, start)
        self.done_to = end if self.done_to is None else max(self.done_to, end)


class LiveFeed:
    """The state of one running feed; `run_live_feed` is the entry point."""

    def __init__(
        self,
        bootstrap: str,
        stop: asyncio.Event,
        *,
        topic_prefix: str,
        feed: PriceFeed,
        say: Say,
        poll_s: float,
        clock: Clock,
        sleep: AsyncSleep,
        interval: str = "1h",
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        self.bootstrap = bootstrap
        self.stop = stop
        self.topic_prefix = topic_prefix
        self.feed = feed
        self.say = say
        self.poll_s = poll_s
        self.clock = clock
        self.sleep = sleep
        self.interval = interval
        self.step = interval_length(interval)
        self.max_backoff_s = max(max_backoff_s, poll_s)
        self.signals_topic = topic("signals").full_name(topic_prefix)
        self.prices_topic = topic("prices").full_name(topic_prefix)
        self.followed: dict[str, _Followed] = {}
        self.changed = asyncio.Event()  # a new symbol, or an earlier first signal
        self.caught_up = asyncio.Event()  # the backlog of `signals` has been read
        self.publisher: Publisher | None = None
        self.publish_failures = 0
        self.errors = 0  # consecutive polls that failed unexpectedly

    # -- following `signals` ------------------------------------------------------

    def note_signal(self, signal: SignalEmitted) -> None:
        try:
            symbol = base_asset(signal.symbol)
        except ValueError:
            return
        followed = self.followed.get(symbol)
        if followed is None:
            self.followed[symbol] = _Followed(signal.ts)
            self.changed.set()
        elif signal.ts < followed.first_signal:
            followed.first_signal = signal.ts
            self.changed.set()

    async def follow_signals(self) -> None:
        """Read `signals` from the start and keep following it; never raises."""
        failures = 0
        while not self.stop.is_set():
            try:
                await self._follow_once()
                return
            except Exception as error:
                failures += 1
                delay = self.backoff_s(failures)
                self.say(
                    f"price feed: cannot read {self.signals_topic} ({error}); "
                    f"retrying in {delay:.3g} s"
                )
                with contextlib.suppress(_Stopped):
                    await self.pause(delay, wake_on_change=False)

    async def _follow_once(self) -> None:
        async with assigned_consumer(self.bootstrap, [self.signals_topic]) as (consumer, tps):
            ends = await true_end_offsets(consumer, tps)
            for tp in tps:
                consumer.seek(tp, 0)
            behind: set[TopicPartition] = {tp for tp in tps if ends[tp] > 0}
            if not behind:
                self.caught_up.set()
            while not self.stop.is_set():
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        try:
                            event = decode_event(message.value, SIGNAL_TYPES)
                        except RejectedRecord:
                            continue  # the intake dead-letters it; nothing to price
                        if isinstance(event, SignalEmitted):
                            self.note_signal(event)
                if behind:
                    for tp in list(behind):
                        if await consumer.position(tp) >= ends[tp]:
                            behind.discard(tp)
                    if not behind:
                        self.caught_up.set()

    # -- polling ----------------------------------------------------------------------

    def backoff_s(self, failures: int) -> float:
        """Exponential from one poll interval, capped at `max_backoff_s`."""
        return float(min(self.max_backoff_s, self.poll_s * 2 ** (failures - 1)))

    def backoff_polls(self, failures: int) -> int:
        """The same backoff in whole poll intervals (a failing symbol sits polls out)."""
        cap = max(1, int(self.max_backoff_s // self.poll_s))
        return int(min(cap, 2 ** min(failures - 1, 30)))

    async def run(self) -> None:
        follower = asyncio.create_task(self.follow_signals())
        try:
            with contextlib.suppress(_Stopped):
                await self._wait_for(self.caught_up.wait())
                timed = True
                while not self.stop.is_set():
                    self.changed.clear()
                    try:
                        delay, more = await self.poll_once(timed)
                    except _Stopped:
                        raise
                    except Exception as error:  # a bug must not end the feed, nor the stack
                        logger.exception("price feed poll failed")
                        self.errors += 1
                        delay, more = self.backoff_s(self.errors), False
                        self.say(
                            f"price feed: poll failed ({type(error).__name__}: {error}); "
                            f"retrying in {delay:.3g} s"
                        )
                    else:
                        self.errors = 0
                    if more:
                        timed = False  # a backlog is still being published: go on at once
                        continue
                    calm = self.publish_failures == 0 and self.errors == 0
                    woken = await self.pause(delay, wake_on_change=calm)
                    timed = not woken
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await self.drop_publisher()

    async def poll_once(self, timed: bool = True) -> tuple[float, bool]:
        """Fetch and publish one step for every symbol due; return (next delay, backlog left).

        `timed` says a poll interval has passed, which counts down failing symbols' backoff.
        """
        last_close = floor_time(self.clock(), self.step)
        fetched: list[tuple[str, datetime, datetime]] = []
        found: list[PriceObserved] = []
        failed: dict[str, Exception] = {}
        for symbol in sorted(self.followed):
            followed = self.followed[symbol]
            if followed.skip:
                followed.skip -= 1 if timed else 0
                continue
            for start, end in followed.todo(last_close, self.interval):
                try:
                    candles = await self._in_thread(
                        self.feed.candles, symbol, start, end, self.interval
                    )
                except _Stopped:
                    raise
                except Exception as error:
                    failed[symbol] = error
                    break
                fetched.append((symbol, start, end))
                found += [candle_to_event(candle, PRODUCER) for candle in candles]
        if fetched:
            try:
                await self._wait_for(self.publish(sorted(found, key=lambda e: (e.ts, e.symbol))))
            except _Stopped:
                raise
            except Exception as error:
                await self.drop_publisher()
                self.publish_failures += 1
                delay = self.backoff_s(self.publish_failures)
                self.say(
                    f"price feed: cannot publish to {self.prices_topic} ({error}); "
                    f"retrying in {delay:.3g} s"
                )
                return delay, False
            self.publish_failures = 0
            self.report_published(found)
            served = {symbol for symbol, _, _ in fetched} - failed.keys()
            for symbol, start, end in fetched:
                self.followed[symbol].mark_done(start, end)
            self.report_recovered(served)
        if failed:
            self.report_failed(failed)
        more = any(
            followed.todo(last_close, self.interval)
            for symbol, followed in self.followed.items()
            if symbol not in failed and not followed.skip
        )
        return self.poll_s, more

    def report_failed(self, failed: dict[str, Exception]) -> None:
        """Back the failed symbols off and say so: one line for an outage, one for refusals."""
        delays: dict[str, float] = {}
        for symbol in failed:
            followed = self.followed[symbol]
            followed.failures += 1
            polls = self.backoff_polls(followed.failures)
            followed.skip = polls - 1
            delays[symbol] = polls * self.poll_s
        refused = {s: e for s, e in failed.items() if _refused(e)}
        unreachable = {s: e for s, e in failed.items() if s not in refused}
        if unreachable:
            delay = min(delays[s] for s in unreachable)
            self.say(
                f"price feed: Binance and Coinbase unreachable ({_reason(unreachable)}); "
                f"retrying in {delay:.3g} s"
            )
        if refused:
            delay = min(delays[s] for s in refused)
            self.say(
                f"price feed: Binance and Coinbase have no {', '.join(sorted(refused))} candles "
                f"({_reason(refused)}); retrying in {delay:.3g} s"
            )

    def report_recovered(self, served: set[str]) -> None:
        recovered = sorted(s for s in served if self.followed[s].failures)
        for symbol in recovered:
            self.followed[symbol].failures = 0
        if recovered:
            self.say(f"price feed: Binance/Coinbase answer again ({', '.join(recovered)})")

    def report_published(self, found: list[PriceObserved]) -> None:
        if not found:
            return
        symbols = sorted({e.symbol for e in found})
        self.say(
            f"price feed: published {len(found)} candle{'s' if len(found) != 1 else ''} "
            f"({', '.join(symbols)}) up to {format_utc(max(e.ts for e in found))}"
        )

    async def publish(self, found: list[PriceObserved]) -> None:
        """Publish in the given order, one acknowledged record at a time."""
        if not found:
            return
        if self.publisher is None:
            publisher = Publisher(self.bootstrap, self.topic_prefix)
            try:
                await publisher.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await publisher.stop()
                raise
            self.publisher = publisher
        for event in found:
            await self.publisher.publish(event)

    async def drop_publisher(self) -> None:
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.stop()

    # -- waiting without blocking or outliving `stop` -----------------------------

    async def _in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._wait_for(asyncio.to_thread(fn, *args, **kwargs))

    async def _wait_for(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, or raise _Stopped as soon as `stop` is set.

        A blocking call abandoned this way finishes in its thread; its result is dropped.
        """
        work = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not work.done():
                work.cancel()
        if work.cancelled() or not work.done():
            raise _Stopped
        return work.result()

    async def pause(self, delay: float, *, wake_on_change: bool) -> bool:
        """Sleep `delay` seconds and return False, or return True early on a new symbol.

        Raises _Stopped as soon as `stop` is set.
        """
        sleeping = asyncio.ensure_future(self.sleep(delay))
        waits: set[asyncio.Future[object]] = {sleeping}
        if wake_on_change:
            waits.add(asyncio.ensure_future(self.changed.wait()))
        try:
            await self._wait_for(asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED))
        finally:
            for waiting in waits:
                waiting.cancel()
        return not (sleeping.done() and not sleeping.cancelled())


# One source's failure inside a PriceFeedUnavailable message: "GET <url> failed: <why>".
_SOURCE_FAILURE = re.compile(r"GET (\S+) failed: (.*?)(?= \(after \d+ attempts\)|; \w+: GET |$)")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')\]]+)")


def _short_cause(why: str) -> str:
    """'Connection refused' rather than a page of urllib3 wrapping."""
    if why.startswith("HTTP ") or "rate limited" in why:
        return why if len(why) <= 100 else why[:97] + "..."
    errno = _ERRNO.search(why)
    if errno:
        return errno.group(1).strip()
    if "timed out" in why:
        return "timed out"
    return why if len(why) <= 100 else why[:97] + "..."


def _refused(error: Exception) -> bool:
    """Every source refused the request itself (HTTP 4xx but 429): e.g. an unlisted symbol."""
    causes = [why for _, why in _SOURCE_FAILURE.findall(str(error))]
    return bool(causes) and all(
        re.match(r"HTTP 4\d\d", why) is not None and not why.startswith("HTTP 429")
        for why in causes
    )


def _reason(failed: dict[str, Exception]) -> str:
    """A short reason for a status line (the whole message is logged by the price feed)."""
    symbol, error = next(iter(failed.items()))
    text = str(error).split(". Check network access", 1)[0]
    sources = _SOURCE_FAILURE.findall(text)
    if sources:
        text = "; ".join(f"{url.split('?', 1)[0]}: {_short_cause(why)}" for url, why in sources)
    else:
        if not isinstance(error, PriceFeedUnavailable | requests.RequestException):
            text = f"{type(error).__name__}: {text}"
        text = _short_cause(text)
    others = len(failed) - 1
    return f"{symbol}: {text}" + (f"; {others} more symbol(s)" if others else "")


async def run_live_feed(
    bootstrap: str,
    stop: asyncio.Event,
    *,
    topic_prefix: str,
    feed: PriceFeed,
    say: Say,
    poll_s: float = 60.0,
    clock: Clock = utc_now,
    sleep: AsyncSleep = asyncio.sleep,
    interval: str = "1h",
    max_backoff_s: float = MAX_BACKOFF_S,
) -> None:
    """Poll closed candles for every signalled asset and publish them until `stop` is set.

    Never raises (except on cancellation): an unreachable exchange or broker is
    reported with `say` and retried with exponential backoff, capped at
    `max_backoff_s`.
    """
    live = LiveFeed(
        bootstrap,
        stop,
        topic_prefix=topic_prefix,
        feed=feed,
        say=say,
        poll_s=poll_s,
        clock=clock,
        sleep=sleep,
        interval=interval,
        max_backoff_s=max_backoff_s,
    )
    try:
        await live.run()
    except Exception as error:  # a bug here must not take the stack down
        logger.exception("price feed stopped")
        say(f"price feed: stopped by an unexpected error ({error}); prices are no longer polled")

"""One streaming replay of the log: every reader of the log goes through here.

A replay reads each requested partition in offset order, a batch at a time, and merges
the partitions by broker receipt (`projections.log.merge_by_receipt`), so it holds a
batch per partition, never the whole log: a year of a fleet replays in the memory of a
day. Records come from the broker (plain aiokafka reads; the end of each partition from
fetch responses, never ListOffsets) or straight from the durable log of the embedded
mode (SQLite), whichever `open_source` finds; both give the same records in the same
order.

As of a time, a replay keeps the records the broker received at or before it, read
to the end of every partition: a producer's clock may step back, so a later record
does not mean that none earlier follows. As of offsets, each named partition stops
before its offset; a partition not named is read to its end. After the iteration the
replay tells the position reached, which, given back as offsets, replays the same
records.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Awaitable, Generator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from tqdm import tqdm

from projections.log import (
    LogRecord,
    LogUnavailable,
    durable_partition,
    merge_by_receipt,
    partition_batches,
)
from streams.broker.admin import topic_partitions
from streams.broker.consumers import assigned_consumer
from streams.broker.durable_log import DurableLog, TopicPartitionKey
from streams.broker.offsets import true_end_offsets

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The progress bar moves by this many records at a time: per record, it would cost
# more than reading.
PROGRESS_STEP = 4_096


class AsOfError(ValueError):
    """An as-of that cannot be applied to this log; the message says what is wrong."""


# --- where records come from -----------------------------------------------------------


class LogSource(Protocol):
    """A log to replay: the ends of its partitions and each partition in offset order."""

    @property
    def description(self) -> str:
        """Where the records come from, for the user (e.g. "broker 127.0.0.1:9092")."""
        ...

    def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartitionKey, int]:
        """The end (next offset) of every partition of `topics`; a topic the log does not
        hold has no partitions."""
        ...

    def partition_records(self, topic: str, partition: int, end: int) -> Iterator[LogRecord]:
        """One partition from its start up to `end` (exclusive), streamed."""
        ...

    def close(self) -> None: ...


class DurableLogSource:
    """The durable log (SQLite) of the embedded mode: no broker needed."""

    def __init__(self, path: Path, note: str = "") -> None:
        if not path.is_file():
            raise LogUnavailable(f"no durable log at {path} (`metasup up` writes it there)")
        self.description = f"durable log {path}" + (f" ({note})" if note else "")
        self._log = DurableLog(path)

    def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartitionKey, int]:
        partitions = self._log.topics()
        stored = self._log.next_offsets()
        return {
            (name, partition): stored.get((name, partition), 0)
            for name in topics
            for partition in range(partitions.get(name, 0))
        }

    def partition_records(self, topic: str, partition: int, end: int) -> Iterator[LogRecord]:
        return durable_partition(self._log, topic, partition, end)

    def close(self) -> None:
        self._log.close()


class BrokerSource:
    """Any Kafka broker, read by one group-less consumer through a private event loop.

    The replay is a plain iterator (the folds are synchronous); each fetch runs the
    private loop until that batch is in. So it cannot be used from inside a running
    event loop: async code runs it in a thread (`asyncio.to_thread`). One replay per
    source: the consumer is assigned the partitions of the first `end_offsets` call.
    """

    def __init__(self, bootstrap: str, connect_timeout_s: float = 60.0) -> None:
        """Connect, or raise what the client raised (KafkaError, OSError, TimeoutError)."""
        self.bootstrap = bootstrap
        self.description = f"broker {bootstrap}"
        self._loop = asyncio.new_event_loop()
        self._resources = AsyncExitStack()
        self._consumer: AIOKafkaConsumer | None = None
        try:
            self._existing = self._run(
                asyncio.wait_for(topic_partitions(bootstrap), connect_timeout_s)
            )
        except BaseException:
            self._loop.close()
            raise

    def _run(self, step: Awaitable[T]) -> T:
        return self._loop.run_until_complete(step)

    def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartitionKey, int]:
        if self._consumer is not None:
            raise RuntimeError("a BrokerSource replays once; open another for a new replay")
        present = [name for name in topics if name in self._existing]
        if not present:
            return {}
        ends = self._run(self._assign(present))
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def _assign(self, topics: list[str]) -> dict[TopicPartition, int]:
        """Assign every partition of `topics`, find their ends, and pause them: each is
        fetched only while it is read. (The consumer wants its loop running for this.)"""
        consumer, tps = await self._resources.enter_async_context(
            assigned_consumer(self.bootstrap, topics)
        )
        self._consumer = consumer
        ends = await true_end_offsets(consumer, tps)
        consumer.pause(*tps)
        return ends

    def partition_records(self, topic: str, partition: int, end: int) -> Iterator[LogRecord]:
        if self._consumer is None:
            raise RuntimeError("end_offsets() first: it assigns the partitions")
        batches = partition_batches(self._consumer, TopicPartition(topic, partition), end)
        try:
            while True:
                try:
                    batch = self._run(anext(batches))
                except StopAsyncIteration:
                    return
                yield from batch
        finally:
            if not self._loop.is_closed():
                self._run(batches.aclose())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._resources.aclose())
            self._run(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()


def open_source(bootstrap: str, durable_log: Path | None, timeout_s: float = 60.0) -> LogSource:
    """The broker when it answers within `timeout_s`, else the durable log of the embedded
    mode (None: the broker only), with a note of why the records come from there."""
    try:
        return BrokerSource(bootstrap, timeout_s)
    except (KafkaError, OSError, TimeoutError) as error:
        detail = str(error) or type(error).__name__
        if durable_log is None or not durable_log.is_file():
            raise LogUnavailable(
                f"cannot read the log from the broker at {bootstrap} ({detail}); "
                "is it running (`metasup up`)?"
            ) from None
        return DurableLogSource(durable_log, f"broker {bootstrap} not reachable")


# --- as of what --------------------------------------------------------------------------


@dataclass(frozen=True)
class AsOf:
    """What the system knew: records received at or before `received_until`, or, per
    partition, the records before an offset (exclusive; partitions not named: all).
    Neither: the whole log."""

    received_until: datetime | None = None
    offsets: Mapping[TopicPartitionKey, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.received_until is not None and self.offsets:
            raise AsOfError("as of a time or as of offsets, not both")
        if self.received_until is not None and self.received_until.tzinfo is None:
            raise AsOfError("the as-of time needs a timezone (add 'Z' for UTC)")

    @property
    def until_ms(self) -> int | None:
        """`received_until` in the records' unit (ms); a record at `until_ms` is kept."""
        if self.received_until is None:
            return None
        return (self.received_until - EPOCH) // timedelta(milliseconds=1)

    def stops(self, ends: Mapping[TopicPartitionKey, int]) -> dict[TopicPartitionKey, int]:
        """Where to stop reading each partition (exclusive): its end, or before an as-of
        offset (an offset past the end reads to the end). Naming a partition the replay
        does not read is an error: a typo would otherwise silently read everything."""
        unknown = sorted(set(self.offsets) - set(ends))
        if unknown:
            topics = sorted({topic for topic, _ in ends})
            missing = ", ".join(f"{topic}:{partition}" for topic, partition in unknown)
            raise AsOfError(
                f"as-of offsets name {missing}, which this replay does not read "
                f"(partitions of: {', '.join(topics) or 'no topics'})"
            )
        return {key: min(end, self.offsets.get(key, end)) for key, end in ends.items()}


def parse_as_of_offsets(text: str, prefix: str = "") -> dict[TopicPartitionKey, int]:
    """`topic:partition:offset,...` (what `metasup replay` prints as the position reached)
    as {(prefix + topic, partition): offset}: the inverse of `format_offsets`."""
    example = "e.g. signals:0:1200,signals:1:980,kills:0:15"
    offsets: dict[TopicPartitionKey, int] = {}
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise AsOfError(f"no offsets given ({example})")
    for item in items:
        topic, sep1, rest = item.partition(":")
        partition_text, sep2, offset_text = rest.partition(":")
        if not (topic and sep1 and sep2) or ":" in offset_text:
            raise AsOfError(f"{item!r} is not topic:partition:offset ({example})")
        partition = _count(partition_text, "partition", item)
        offset = _count(offset_text, "offset", item)
        if (prefix + topic, partition) in offsets:
            raise AsOfError(f"{topic}:{partition} is named twice in the as-of offsets")
        offsets[(prefix + topic, partition)] = offset
    return offsets


def _count(text: str, what: str, item: str) -> int:
    if not text.strip().isdigit():
        raise AsOfError(f"the {what} in {item!r} must be a whole number >= 0, got {text!r}")
    return int(text)


def format_offsets(offsets: Mapping[TopicPartitionKey, int], prefix: str = "") -> str:
    """The inverse of `parse_as_of_offsets`, with `prefix` taken off each topic name."""
    return ",".join(
        f"{topic.removeprefix(prefix)}:{partition}:{offset}"
        for (topic, partition), offset in sorted(offsets.items())
    )


# --- the replay ----------------------------------------------------------------------


class Replay:
    """Records of `topics` merged by receipt, as of `as_of`; iterate once.

    After (or during) the iteration: `position` (per partition read, the offset after the
    last record yielded, 0 if none), `records_by_topic` (yielded), `records_read`
    (including those later than an as-of time) and `newest_received_at`.
    `progress`: a bar on stderr while reading (shown only when stderr is a terminal).
    """

    def __init__(
        self,
        source: LogSource,
        topics: Sequence[str],
        as_of: AsOf | None = None,
        progress: bool = True,
    ) -> None:
        self.source = source
        self.topics = list(topics)
        self.as_of = as_of or AsOf()
        self.progress = progress
        self.position: dict[TopicPartitionKey, int] = {}
        self.records_by_topic: Counter[str] = Counter()
        self.records_read = 0
        self.records_to_read = 0
        self._newest_ms: int | None = None

    @property
    def newest_received_at(self) -> datetime | None:
        """The latest broker receipt time among the records yielded."""
        if self._newest_ms is None:
            return None
        return EPOCH + timedelta(milliseconds=self._newest_ms)

    def __iter__(self) -> Iterator[LogRecord]:
        stops = self.as_of.stops(self.source.end_offsets(self.topics))
        self.position = dict.fromkeys(sorted(stops), 0)
        self.records_to_read = sum(stops.values())
        bar = tqdm(
            total=self.records_to_read,
            unit="rec",
            unit_scale=True,
            desc="replay",
            file=sys.stderr,
            leave=False,
            disable=None if self.progress else True,
        )
        streams = [self._partition(key, stop, bar) for key, stop in sorted(stops.items()) if stop]
        position, counts = self.position, self.records_by_topic
        newest = -1
        try:
            for record in merge_by_receipt(streams):
                position[(record.topic, record.partition)] = record.offset + 1
                counts[record.topic] += 1
                if record.timestamp_ms > newest:
                    newest = record.timestamp_ms
                yield record
        finally:
            for stream in streams:
                stream.close()
            bar.close()
            if newest >= 0:
                self._newest_ms = newest

    def _partition(
        self, key: TopicPartitionKey, stop: int, bar: tqdm[Any]
    ) -> Generator[LogRecord, None, None]:
        until_ms = self.as_of.until_ms
        unreported = 0
        try:
            for record in self.source.partition_records(key[0], key[1], stop):
                unreported += 1
                if unreported == PROGRESS_STEP:
                    self._advance(bar, unreported)
                    unreported = 0
                if until_ms is None or record.timestamp_ms <= until_ms:
                    yield record
        finally:
            self._advance(bar, unreported)

    def _advance(self, bar: tqdm[Any], records: int) -> None:
        self.records_read += records
        bar.update(records)

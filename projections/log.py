"""Reads the log as decoded events: from a broker (any Kafka) or from the durable log file.

Replays run as plain reads through the pure folds, never through Faust: a plain
consumer reads ~200 k records/s here, Faust's per-event machinery ~2 k/s
(BROKER-NOTES). The end of each partition comes from fetch responses, never
from ListOffsets (wrong on Tansu for multi-record batches).

This module holds the record and the per-partition readers; `projections.replay` merges
them into one stream, as of a time or offsets. `read_broker` and `read_durable_log` read
whole topics into a list, for tests and benchmarks that compare logs.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import RejectedRecord, decode_event
from schemas.envelope import Event
from streams.broker.admin import topic_partitions
from streams.broker.consumers import assigned_consumer
from streams.broker.durable_log import DurableLog
from streams.broker.offsets import true_end_offsets
from streams.core.signing import FactVerifier

# Records handed over per fetch of one partition: a replay holds at most this many per
# partition (plus what the consumer prefetched), whatever the length of the log.
BATCH_RECORDS = 2_000
FETCH_WAIT_MS = 500
# A partition that yields nothing for this long although its end is ahead: the broker
# stopped answering. Better an error than a replay that waits for ever.
STALL_S = 60.0


class LogUnavailable(RuntimeError):
    """Neither the broker nor the durable log can be read; the message says what to do."""


class LogStalled(LogUnavailable):
    """The broker stopped delivering a partition before its end."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None

    @property
    def received_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)


def receipt_key(record: LogRecord) -> tuple[int, str, int, int]:
    """Broker-receipt order; ties on the timestamp are broken by topic, partition, offset,
    so every reader of the same log gets the same order."""
    return (record.timestamp_ms, record.topic, record.partition, record.offset)


# --- one partition, in offset order ----------------------------------------------------


async def partition_batches(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    end: int,
    batch_records: int = BATCH_RECORDS,
    stall_s: float = STALL_S,
) -> AsyncGenerator[list[LogRecord], None]:
    """Records of one partition assigned to `consumer`, from its start up to `end`
    (exclusive), one fetch at a time.

    The partition is fetched only while records up to `end` are missing: paused as soon
    as the last of them is in, before it is handed over. Otherwise the consumer would
    keep asking for more, and Tansu holds a fetch with nothing new for its full wait,
    which every other partition's next fetch then waits behind (a replay of 17
    partitions spent 9 s on that before its first record).
    """
    consumer.seek(tp, 0)
    consumer.resume(tp)
    try:
        last_progress = time.monotonic()
        position = 0
        while position < end:
            fetched = await consumer.getmany(
                tp, timeout_ms=FETCH_WAIT_MS, max_records=batch_records
            )
            batch = [
                LogRecord(m.topic, m.partition, m.offset, m.timestamp, m.value)
                for m in fetched.get(tp, ())
                if m.offset < end
            ]
            position = await consumer.position(tp)
            if position >= end:
                consumer.pause(tp)
            if batch:
                last_progress = time.monotonic()
                yield batch
            elif time.monotonic() - last_progress > stall_s:
                raise LogStalled(
                    f"the broker delivered nothing of {tp.topic}[{tp.partition}] for "
                    f"{stall_s:.0f} s, at offset {position:,} of {end:,}; is it still running?"
                )
    finally:
        consumer.pause(tp)


def durable_partition(
    durable_log: DurableLog, topic: str, partition: int, end: int
) -> Iterator[LogRecord]:
    """Records of one partition of the durable log up to `end` (exclusive), read lazily
    (SQLite hands rows over as they are asked for)."""
    for r in durable_log.read(topic, partition, 0, end):
        yield LogRecord(r.topic, r.partition, r.offset, r.timestamp_ms, r.value)


# --- whole topics into a list (tests, benchmarks) ----------------------------------------


async def read_broker(bootstrap: str, topics: list[str]) -> list[LogRecord]:
    """Every record of `topics` up to their current end, in (topic, partition, offset) order."""
    existing = await topic_partitions(bootstrap)
    present = sorted(name for name in topics if name in existing)
    if not present:
        return []
    records: list[LogRecord] = []
    async with assigned_consumer(bootstrap, present) as (consumer, tps):
        ends = await true_end_offsets(consumer, tps)
        consumer.pause(*tps)
        for tp in tps:
            async for batch in partition_batches(consumer, tp, ends[tp]):
                records += batch
    return records


def read_durable_log(path: Path, topics: list[str]) -> list[LogRecord]:
    durable_log = DurableLog(path)
    try:
        partitions = durable_log.topics()
        return [
            record
            for name in topics
            for partition in range(partitions.get(name, 0))
            for record in durable_partition(durable_log, name, partition, 2**62)
        ]
    finally:
        durable_log.close()


# --- order and decoding ----------------------------------------------------------------


def merge_by_receipt(partitions: Iterable[Iterable[LogRecord]]) -> Iterator[LogRecord]:
    """Partition streams (each in offset order) merged lazily into one in broker-receipt
    order; each partition keeps its own order exactly, even where its timestamps go back."""
    return heapq.merge(*partitions, key=receipt_key)


def merged_by_receipt(records: Iterable[LogRecord]) -> Iterator[LogRecord]:
    """`merge_by_receipt` of records given in any order across partitions (each
    partition's records in offset order)."""
    by_partition: dict[tuple[str, int], list[LogRecord]] = {}
    for record in records:
        by_partition.setdefault((record.topic, record.partition), []).append(record)
    return merge_by_receipt(by_partition.values())


def events(
    records: Iterable[LogRecord],
    until: datetime | None = None,
    verifier: FactVerifier | None = None,
    rejected: Counter[str] | None = None,
) -> Iterator[Event]:
    """Decode valid events (invalid ones are in `deadletter` already), optionally as of `until`
    (the broker receipt time: what the system knew then).

    With the supervisor's `verifier`, an unsigned or forged kill or policy fact is skipped
    as the workers skipped it; every command of the CLI passes one. Without, facts are
    taken as written: only for a log the caller wrote itself (benchmarks, tests).
    Records not admitted are counted by topic in `rejected`, when given.
    """
    for record in records:
        if until is not None and record.received_at > until:
            continue
        try:
            yield decode_event(record.value) if verifier is None else verifier.decode(record.value)
        except RejectedRecord:
            if rejected is not None:
                rejected[record.topic] += 1

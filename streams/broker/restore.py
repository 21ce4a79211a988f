"""Restores a fresh broker from the durable log: same topics, partitions, offsets, order.

Records are produced in order per partition, in multi-record batches: offsets come
out identical (they are sequential per partition, and the durable log has no gaps),
and the compat proxy answers ListOffsets with the true ends (Tansu alone is short
for multi-record batches, BROKER-NOTES defect 1). Partitions are restored
concurrently so restore time, which is start-up time, stays short. Faust
changelog topics may be compacted first: only the newest record per key matters
for a memory-store table, and changelog recovery time grows with history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker.admin import ensure_topics
from streams.broker.compat_proxy import STACK_CLIENT_ID
from streams.broker.durable_log import DurableLog, StoredRecord

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class RestoreReport:
    records: int = 0
    topics: int = 0
    compacted_away: int = 0
    group_offsets: dict[str, int] = field(default_factory=dict)


def is_changelog(topic: str) -> bool:
    return topic.endswith("-changelog")


def compact(records: list[StoredRecord]) -> list[StoredRecord]:
    """Keep the newest record per key, in log order, renumbered from offset 0."""
    newest: dict[bytes | None, StoredRecord] = {}
    for record in records:
        newest.pop(record.key, None)
        newest[record.key] = record
    return [
        StoredRecord(r.topic, r.partition, new_offset, r.timestamp_ms, r.key, r.value, r.headers)
        for new_offset, r in enumerate(newest.values())
    ]


def compact_changelogs(durable_log: DurableLog) -> int:
    removed = 0
    for topic, partitions in durable_log.topics().items():
        if not is_changelog(topic):
            continue
        for partition in range(partitions):
            records = list(durable_log.read(topic, partition))
            kept = compact(records)
            if len(kept) < len(records):
                durable_log.replace_partition(topic, partition, kept)
                removed += len(records) - len(kept)
    return removed


async def _produce_partition(
    producer: AIOKafkaProducer,
    durable_log: DurableLog,
    topic: str,
    partition: int,
    progress: Callable[[int], None],
) -> int:
    count = 0
    pending: list[asyncio.Future[object]] = []
    for record in durable_log.read(topic, partition):
        if record.offset != count:
            raise RuntimeError(
                f"durable log has a gap in {topic}[{partition}] at offset {count}; "
                "a restore would shift offsets, refusing"
            )
        pending.append(
            await producer.send(
                topic,
                record.value,
                key=record.key,
                partition=partition,
                timestamp_ms=record.timestamp_ms,
                headers=list(record.headers) or None,
            )
        )
        count += 1
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            progress(len(pending))
            pending.clear()
    await asyncio.gather(*pending)
    progress(len(pending))
    return count


async def commit_group_offsets(
    bootstrap: str, group_id: str, offsets: dict[tuple[str, int], int]
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        client_id=STACK_CLIENT_ID,  # may commit while other clients are kept out
    )
    await consumer.start()
    try:
        tps = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in offsets.items()
        }
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def restore(
    bootstrap: str,
    durable_log: DurableLog,
    compact_changelog_topics: bool = True,
    progress: Progress | None = None,
) -> RestoreReport:
    report = RestoreReport()
    if compact_changelog_topics:
        report.compacted_away = compact_changelogs(durable_log)
    topics = durable_log.topics()
    report.topics = len(topics)
    await ensure_topics(bootstrap, topics)
    total = sum(durable_log.counts().values())
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_batch_size=1024 * 1024,
        linger_ms=0,
        client_id=STACK_CLIENT_ID,  # may write while other clients are kept out
    )
    await producer.start()
    try:
        counts = await asyncio.gather(
            *(
                _produce_partition(producer, durable_log, topic, partition, advance)
                for topic, partitions in topics.items()
                for partition in range(partitions)
            )
        )
    finally:
        await producer.stop()
    report.records = sum(counts)
    for group_id, offsets in durable_log.group_offsets().items():
        await commit_group_offsets(bootstrap, group_id, offsets)
        report.group_offsets[group_id] = len(offsets)
    return report

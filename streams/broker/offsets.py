"""True end offsets, read from fetch responses, and a consumer group's lag.

Tansu's ListOffsets answers the first offset of the last batch + 1, which is short
for multi-record batches (BROKER-NOTES defect 1). A fetch response carries the
right high watermark, so: seek just before the reported end, fetch once, read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker.admin import topic_partitions


async def true_end_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """End offset of each partition; `consumer` must have them assigned (positions move)."""
    reported = await consumer.end_offsets(partitions)
    ends = {tp: end for tp, end in reported.items() if end == 0}
    probing = [tp for tp in partitions if tp not in ends]
    for tp in probing:
        consumer.seek(tp, reported[tp] - 1)
    remaining = set(probing)
    for _ in range(20):
        if not remaining:
            break
        await consumer.getmany(*remaining, timeout_ms=200, max_records=1)
        for tp in list(remaining):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                ends[tp] = highwater
                remaining.discard(tp)
    for tp in remaining:  # no fetch answered: fall back to what ListOffsets said
        ends[tp] = reported[tp]
    return ends


@dataclass(frozen=True)
class PartitionLag:
    """How far a consumer group's committed offset is behind the end of one partition."""

    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


async def consumer_lag(bootstrap: str, group_id: str, topics: list[str]) -> list[PartitionLag]:
    """Lag of `group_id` on every partition of `topics` it has committed: shows workers
    that fall behind, or a partition that stopped moving. Reads offsets only; it does
    not join the group, so the workers' assignment is untouched."""
    existing = await topic_partitions(bootstrap)
    partitions = [TopicPartition(t, p) for t in topics for p in range(existing.get(t, 0))]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        committed: dict[TopicPartition, int] = {}
        for tp in partitions:
            offset = await consumer.committed(tp)
            if offset is not None:
                committed[tp] = offset
        ends = await true_end_offsets(consumer, list(committed)) if committed else {}
    finally:
        await consumer.stop()
    return [PartitionLag(tp.topic, tp.partition, c, ends[tp]) for tp, c in committed.items()]

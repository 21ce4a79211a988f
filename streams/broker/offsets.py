"""True end offsets, read from fetch responses.

Tansu's ListOffsets answers the first offset of the last batch + 1, which is short
for multi-record batches (BROKER-NOTES defect 1). A fetch response carries the
right high watermark, so: seek just before the reported end, fetch once, read it.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


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

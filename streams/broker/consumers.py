"""A group-less consumer over whole topics: for readers that never commit (CLI, projections)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker.admin import topic_partitions


@asynccontextmanager
async def assigned_consumer(
    bootstrap: str, topics: list[str]
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A group-less consumer assigned every partition of `topics` (readers never commit)."""
    partitions = await topic_partitions(bootstrap)
    missing = [name for name in topics if name not in partitions]
    if missing:
        raise LookupError(
            f"no such topic on {bootstrap}: {', '.join(missing)} "
            "(is `metasup up` running? `metasup topics` lists them)"
        )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(name, p) for name in topics for p in range(partitions[name])]
        consumer.assign(tps)
        yield consumer, tps
    finally:
        await consumer.stop()

"""Where the CLI finds the broker: METASUP_BROKER, else the running stack, else 9092."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker.admin import topic_partitions
from streams.settings import Settings
from streams.stack import stack_file


def resolve_bootstrap(settings: Settings) -> str:
    if not settings.embedded:
        return settings.bootstrap_servers()
    path = stack_file(settings)
    if path.exists():
        return str(orjson.loads(path.read_bytes())["bootstrap"])
    return settings.bootstrap_servers()


@asynccontextmanager
async def assigned_consumer(
    bootstrap: str, topics: list[str]
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A group-less consumer assigned every partition of `topics` (readers never commit)."""
    partitions = await topic_partitions(bootstrap)
    missing = [name for name in topics if name not in partitions]
    if missing:
        raise SystemExit(
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

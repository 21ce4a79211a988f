"""Create the topic catalogue (and any other recorded topics) where they are missing."""

from __future__ import annotations

from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import CATALOGUE


def catalogue_partitions(prefix: str) -> dict[str, int]:
    return {spec.full_name(prefix): spec.partitions for spec in CATALOGUE}


async def ensure_topics(bootstrap: str, partitions_by_topic: Mapping[str, int]) -> list[str]:
    """Create what is missing and return the names created; existing topics are left alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, count, 1)
            for name, count in partitions_by_topic.items()
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
        return [topic.name for topic in missing]
    finally:
        await admin.close()


async def topic_partitions(bootstrap: str) -> dict[str, int]:
    """Every topic on the broker with its partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = await admin.list_topics()
        described = await admin.describe_topics(names)
        return {
            entry["topic"]: len(entry["partitions"])
            for entry in described
            if not entry["topic"].startswith("__")
        }
    finally:
        await admin.close()

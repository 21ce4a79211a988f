"""The seek Faust runs when partitions are assigned must bring back records fetched before
it, also on a partition with no committed offset (streams/runtime/faust_fixes.py, fix 1)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker.admin import ensure_topics
from streams.broker.embedded import EmbeddedBroker
from streams.runtime.faust_fixes import seek_to_committed_or_reset
from tests.conftest import eventually


async def test_seek_rewinds_uncommitted_partitions_and_leaves_changelogs_alone(
    broker: EmbeddedBroker, prefix: str
) -> None:
    source, changelog = prefix + "source", prefix + "app-table-changelog"
    await ensure_topics(broker.bootstrap, {source: 2, changelog: 1})
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    for n in range(10):
        for topic, partition in ((source, 0), (source, 1), (changelog, 0)):
            await producer.send_and_wait(topic, str(n).encode(), partition=partition)
    await producer.stop()

    uncommitted, committed = TopicPartition(source, 0), TopicPartition(source, 1)
    table = TopicPartition(changelog, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=prefix + "app",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([uncommitted, committed, table])
        await consumer.commit({committed: 4})
        consumer.seek(committed, 0)

        async def prefetched_everything() -> bool:
            await consumer.getmany(timeout_ms=200)
            positions = [await consumer.position(tp) for tp in (uncommitted, committed, table)]
            return positions == [10, 10, 10]

        await eventually(prefetched_everything, timeout_s=20, every_s=0.1)

        offsets = await seek_to_committed_or_reset(consumer, {changelog}, "earliest")

        assert offsets == {uncommitted: None, committed: 4, table: None}
        assert await consumer.position(uncommitted) == 0  # the prefetched records come back
        assert await consumer.position(committed) == 4
        assert await consumer.position(table) == 10  # table recovery keeps its own offsets
        again = await consumer.getmany(uncommitted, timeout_ms=2000)
        assert [record.offset for record in again[uncommitted]][:1] == [0]
    finally:
        await consumer.stop()

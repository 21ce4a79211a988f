"""`metasup status` shows how far the workers' committed offsets are behind the log,
per partition, without joining their consumer group."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker.admin import ensure_topics
from streams.broker.embedded import EmbeddedBroker
from streams.broker.offsets import PartitionLag, consumer_lag


async def test_lag_per_committed_partition(broker: EmbeddedBroker, prefix: str) -> None:
    source, untouched = prefix + "source", prefix + "untouched"
    await ensure_topics(broker.bootstrap, {source: 2, untouched: 1})
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    for partition, count in ((0, 5), (1, 3)):
        for n in range(count):
            await producer.send_and_wait(source, str(n).encode(), partition=partition)
    await producer.send_and_wait(untouched, b"x", partition=0)
    await producer.stop()
    group = prefix + "workers"
    committer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    committer.assign([TopicPartition(source, 0), TopicPartition(source, 1)])
    await committer.commit({TopicPartition(source, 0): 5, TopicPartition(source, 1): 1})
    await committer.stop()

    lags = await consumer_lag(broker.bootstrap, group, [source, untouched])

    assert lags == [PartitionLag(source, 0, 5, 5), PartitionLag(source, 1, 1, 3)]
    assert [lag.lag for lag in lags] == [0, 2]  # a partition nobody committed is not listed

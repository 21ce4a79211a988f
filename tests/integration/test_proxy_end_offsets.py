"""Through the proxy, ListOffsets tells the true end of partitions written in
multi-record batches (Tansu alone answers the first offset of the last batch + 1),
and with the recorder's gate every acknowledged record is already durable."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker.admin import ensure_topics
from streams.broker.durable_log import DurableLog
from streams.broker.embedded import EmbeddedBroker
from streams.broker.offsets import true_end_offsets
from streams.broker.recorder import Recorder

PARTITIONS = 4


async def produce_batched(bootstrap: str, topic: str, count: int) -> list[tuple[int, int]]:
    """Send `count` records in multi-record batches; (partition, offset) of each ack."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=64 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"v{i}".encode() * 20, key=f"k{i % 13}".encode())
            for i in range(count)
        ]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def test_end_offsets_through_the_proxy_equal_the_record_count(
    broker: EmbeddedBroker, prefix: str
) -> None:
    topic = f"{prefix}batched"
    await ensure_topics(broker.bootstrap, {topic: PARTITIONS})
    acks = await produce_batched(broker.bootstrap, topic, 3000)
    per_partition = {p: sum(1 for q, _ in acks if q == p) for p in range(PARTITIONS)}

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        assert {tp.partition: end for tp, end in ends.items()} == per_partition
        assert sum(ends.values()) == 3000
        # Earliest lookups pass through untouched.
        assert set((await consumer.beginning_offsets(tps)).values()) == {0}
        # And the fetch-based probe agrees.
        assert await true_end_offsets(consumer, tps) == ends
    finally:
        await consumer.stop()


async def test_a_fresh_client_sees_the_true_end_after_a_foreign_producer(
    broker: EmbeddedBroker, prefix: str
) -> None:
    """The proxy's knowledge is shared by all connections: a consumer that never
    produced (a restarted Faust worker) gets the right end."""
    topic = f"{prefix}foreign"
    await ensure_topics(broker.bootstrap, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    await producer.start()
    try:
        for batch in range(3):
            for i in range(10):
                await producer.send(topic, f"{batch}-{i}".encode(), partition=0)
            await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert (await consumer.end_offsets([tp]))[tp] == 30
    finally:
        await consumer.stop()


async def test_every_acknowledged_batch_is_durable_when_acknowledged(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    topic = f"{prefix}gated"
    await ensure_topics(broker.bootstrap, {topic: PARTITIONS})
    durable_log = DurableLog(tmp_path / "log.sqlite3")
    recorder = Recorder(broker.bootstrap, durable_log)
    await recorder.start()
    stop = asyncio.Event()
    running = asyncio.create_task(recorder.run(stop))
    assert broker.proxy is not None
    broker.proxy.set_ack_gate(recorder.wait_durable)
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5, max_batch_size=64 * 1024
    )
    await producer.start()
    not_durable_at_ack: list[tuple[int, int]] = []
    try:
        futures = [
            await producer.send(topic, f"v{i}".encode(), key=f"k{i % 11}".encode())
            for i in range(2000)
        ]
        for future in futures:
            meta = await future
            # The recorder runs on this loop: at the moment the ack arrives, the record
            # (and every record before it in its partition) must already be copied.
            if not recorder.is_durable([(topic, meta.partition, meta.offset + 1)]):
                not_durable_at_ack.append((meta.partition, meta.offset))
    finally:
        await producer.stop()
        broker.proxy.set_ack_gate(None)
        stop.set()
        await running
        await recorder.stop()
    assert not_durable_at_ack == []
    assert durable_log.counts() == {topic: 2000}
    # Many records per SQLite transaction, not one per record.
    assert recorder.copies < 2000 / 2
    durable_log.close()

"""The durable log brings back every record and committed offset after the broker dies."""

from __future__ import annotations

import signal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker.admin import catalogue_partitions, ensure_topics
from streams.broker.durable_log import DurableLog
from streams.broker.embedded import EmbeddedBroker
from streams.broker.recorder import Recorder
from streams.broker.restore import restore


async def produce_raw(bootstrap: str, topic: str, count: int) -> None:
    """Multi-record batches from a foreign producer, as kcat would send them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    for i in range(count):
        await producer.send(
            topic, f"v{i}".encode(), key=f"agent-{i % 7}".encode(), headers=[("origin", b"test")]
        )
    await producer.flush()
    await producer.stop()


async def _read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int, bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        seen: list[tuple[int, int, bytes]] = []
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=200)
            idle = idle + 1 if not batch else 0
            seen += [(m.partition, m.offset, m.value) for ms in batch.values() for m in ms]
        return sorted(seen)
    finally:
        await consumer.stop()


async def test_sigkilled_broker_is_restored_with_records_and_group_offsets(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    topics = catalogue_partitions(prefix)
    await ensure_topics(broker.bootstrap, topics)
    signals = f"{prefix}signals"
    # Multi-record batches from a foreign producer (as kcat would send) must survive too.
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    await producer.start()
    for i in range(300):
        await producer.send(
            signals, f"v{i}".encode(), key=f"agent-{i % 7}".encode(), headers=[("origin", b"test")]
        )
    await producer.flush()
    await producer.stop()

    group = f"{prefix}group"
    committer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    committer.assign([TopicPartition(signals, 0)])
    await committer.commit({TopicPartition(signals, 0): 17})
    await committer.stop()

    durable_log = DurableLog(tmp_path / "log.sqlite3")
    recorder = Recorder(broker.bootstrap, durable_log, groups=[group])
    await recorder.start()
    await recorder.drain()
    await recorder.stop()
    before = await _read_all(broker.bootstrap, signals, 4)
    assert len(before) == 300

    assert broker.process is not None
    broker.process.send_signal(signal.SIGKILL)
    broker.process.wait()
    broker.process = None

    await broker.start()  # a fresh, empty Tansu behind the same address
    report = await restore(broker.bootstrap, durable_log)
    assert report.records == 300
    after = await _read_all(broker.bootstrap, signals, 4)
    assert after == before  # same partition, same offset, same value
    probe = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    await probe.start()
    assert await probe.committed(TopicPartition(signals, 0)) == 17
    await probe.stop()

"""The replay engine on a real broker: the broker and the durable log the recorder copied
give the same records in the same order, whole and as of a time or offsets, and
`metasup replay` reads the broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from aiokafka import AIOKafkaProducer

from projections.log import LogRecord, read_broker
from projections.replay import AsOf, BrokerSource, DurableLogSource, LogSource, Replay
from schemas.envelope import format_utc
from schemas.topics import BY_NAME
from streams.broker.admin import catalogue_partitions, ensure_topics
from streams.broker.durable_log import DurableLog
from streams.broker.embedded import EmbeddedBroker
from streams.broker.recorder import Recorder
from streams.runtime.settings import Settings
from tests.integration.stack import metasup
from tests.report_log import desk_log

Row = tuple[str, int, int, int, bytes | None]


async def send_desk_log(broker: EmbeddedBroker, prefix: str) -> list[LogRecord]:
    """The desk's recorded log, each record on its topic (spread over the partitions by a
    key, in multi-record batches as foreign producers send), stamped with its receipt time."""
    records = desk_log()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
    await producer.start()
    try:
        for index, record in enumerate(records):
            await producer.send(
                prefix + record.topic,
                record.value,
                key=f"k{index % 7}".encode(),
                timestamp_ms=record.timestamp_ms,
            )
        await producer.flush()
    finally:
        await producer.stop()
    return list(records)


def rows(
    open_log: Callable[[], LogSource], topics: list[str], as_of: AsOf | None = None
) -> list[Row]:
    """What a replay yields; the source is opened here, so a broker's private event loop
    runs in the thread that reads it (`asyncio.to_thread`)."""
    with closing(open_log()) as source:
        return [
            (r.topic, r.partition, r.offset, r.timestamp_ms, r.value)
            for r in Replay(source, topics, as_of, progress=False)
        ]


async def test_broker_and_durable_log_replay_the_same_records_in_the_same_order(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap, catalogue_partitions(prefix))
    sent = await send_desk_log(broker, prefix)
    names = sorted({r.topic for r in sent})
    topics = [prefix + name for name in names]
    path = tmp_path / "log.sqlite3"
    recorder = Recorder(broker.bootstrap, DurableLog(path))
    await recorder.start()
    await recorder.drain()
    await recorder.stop()
    recorder.durable_log.close()

    def broker_source() -> LogSource:
        return BrokerSource(broker.bootstrap)

    def durable_source() -> LogSource:
        return DurableLogSource(path)

    from_broker = await asyncio.to_thread(rows, broker_source, topics)
    from_file = rows(durable_source, topics)
    assert len(from_broker) == len(sent)
    assert from_broker == from_file
    assert sorted(from_broker) == sorted(
        (r.topic, r.partition, r.offset, r.timestamp_ms, r.value)
        for r in await read_broker(broker.bootstrap, topics)
    )
    stamps = [row[3] for row in from_broker]
    assert stamps == sorted(stamps)  # every partition was sent in receipt order
    assert sorted(row[4] or b"" for row in from_broker) == sorted(r.value or b"" for r in sent)

    middle = sent[len(sent) // 2].received_at
    by_time = AsOf(received_until=middle)
    known = await asyncio.to_thread(rows, broker_source, topics, by_time)
    assert known == rows(durable_source, topics, by_time)
    assert len(known) == sum(1 for r in sent if r.received_at <= middle)

    signals = sorted({(row[0], row[1]) for row in from_broker if row[0] == prefix + "signals"})
    by_offsets = AsOf(offsets={key: 5 for key in signals})
    cut = await asyncio.to_thread(rows, broker_source, topics, by_offsets)
    assert cut == rows(durable_source, topics, by_offsets)
    assert sum(1 for row in cut if row[0] == prefix + "signals") == 5 * len(signals)
    assert len(cut) == len(from_broker) - sum(
        1 for row in from_broker if (row[0], row[1]) in by_offsets.offsets and row[2] >= 5
    )


async def test_metasup_replay_reads_the_broker(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(broker.bootstrap, catalogue_partitions(prefix))
    sent = await send_desk_log(broker, prefix)
    settings = Settings(METASUP_TOPIC_PREFIX=prefix, METASUP_DATA_DIR=tmp_path)
    code, out = await metasup(settings, broker, "replay", "--no-progress")
    assert code == 0, out
    assert f"read from the broker {broker.bootstrap}\n" in out
    for name in {r.topic for r in sent}:
        count = sum(1 for r in sent if r.topic == name)
        assert f"\n  {name:<16} {count:>12,}\n" in out
    assert f"{len(sent):,} events folded through the fleet projection; 0 records" in out
    newest = max(r.received_at for r in sent)
    assert f"newest record received at {format_utc(newest)}" in out
    position = out.rstrip().splitlines()[-1].strip()
    signals = BY_NAME["signals"].partitions
    assert all(f"signals:{p}:" in position for p in range(signals))

    code, again = await metasup(
        settings, broker, "replay", "--no-progress", "--as-of-offsets", position
    )
    assert code == 0, again
    assert f"read from the broker {broker.bootstrap}, as of the offsets given\n" in again
    counts = out.split("\n", 1)[1].split("total")[0]
    assert again.split("\n", 1)[1].split("total")[0] == counts

"""Issue 2: the embedded stack survives the death of its broker. Everything copied to the
durable log comes back (records, offsets, committed group offsets), by itself."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.broker_death import one_run
from streams.broker.durable_log import DurableLog
from streams.runtime.settings import Settings
from streams.runtime.stack import Stack, durable_log_path
from tests.conftest import eventually
from tests.fleet_data import fleet_events, interleave
from tests.integration.stack import produce, read_events
from tests.integration.test_durable_log import produce_raw


async def test_a_sigkilled_broker_is_replaced_and_restored_from_the_durable_log(
    tmp_path: Path,
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        METASUP_DATA_DIR=tmp_path, METASUP_BROKER_PORT=0, METASUP_TOPIC_PREFIX="s."
    )
    lines: list[str] = []
    stack = Stack(settings, workers=0, say=lines.append)
    stop = asyncio.Event()
    running = asyncio.create_task(stack.run(stop))
    try:
        await eventually(lambda: stack.recorder is not None, timeout_s=30)
        assert stack.broker is not None
        first_broker = stack.broker.process
        prices, others = fleet_events(seed=2, days=3)
        sent = interleave(prices, others)
        await produce(stack.broker, "s.", sent)
        await produce_raw(stack.bootstrap, "s.signals", 100)  # multi-record batches too
        group = TopicPartition("s.runs", 0)
        committer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap, group_id=settings.group_id, enable_auto_commit=False
        )
        await committer.start()
        committer.assign([group])
        await committer.commit({group: 5})
        await committer.stop()
        durable = DurableLog(durable_log_path(settings))
        total = len(sent) + 100
        await eventually(lambda: sum(durable.counts().values()) >= total, timeout_s=30)
        await asyncio.sleep(1.5)  # one round of group offsets copied as well

        assert first_broker is not None
        first_broker.send_signal(signal.SIGKILL)
        await eventually(
            lambda: (
                stack.broker is not None
                and stack.broker.process is not first_broker
                and stack.recorder is not None
            ),
            timeout_s=60,
        )
        restored = await read_events(stack.broker, "s.", "runs", "signals", "prices")
        assert {e.event_id for e in restored} == {e.event_id for e in sent}
        probe = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap, group_id=settings.group_id, enable_auto_commit=False
        )
        await probe.start()
        assert await probe.committed(group) == 5
        await probe.stop()
        assert any("broker died" in line for line in lines)
    except BaseException:
        print("\n".join(lines))
        raise
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, timeout=60)


async def test_no_acknowledged_record_is_lost_when_the_broker_is_killed_mid_stream() -> None:
    """A producer keeps sending (acks=all) while the broker is SIGKILLed: every record it
    was told is stored is back after the restore (the proxy acks only durable records)."""
    acked, restored, lost = await one_run(rate=500.0, seconds=1.5, min_acked=101)
    assert acked > 100
    assert lost == 0, f"{lost} acknowledged records lost"
    assert restored >= acked


async def test_no_acknowledged_batch_is_lost_when_the_broker_is_killed_mid_stream() -> None:
    """The same with multi-record batches and many sends in flight: an ack covers a
    whole batch, so the proxy holds it until the batch's last record is durable."""
    acked, restored, lost = await one_run(rate=3000.0, seconds=1.5, batched=True, min_acked=101)
    assert acked > 100
    assert lost == 0, f"{lost} acknowledged records lost"
    assert restored >= acked

"""Issue 2: the SDK's events reach any Kafka client; poison goes to deadletter, work goes on."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path

from schemas.events import EventRejected, OrderIntent, SignalEmitted
from streams.broker.embedded import EmbeddedBroker
from streams.sdk.client import AsyncClient
from tests.integration.stack import (
    Worker,
    create_topics,
    produce,
    read_events,
    wait_for_events,
    worker_settings,
)

AT = datetime(2024, 3, 1, 12, tzinfo=UTC)


async def test_sdk_run_and_signal_reach_a_plain_consumer(
    broker: EmbeddedBroker, prefix: str
) -> None:
    await create_topics(broker, prefix)
    client = AsyncClient(broker.bootstrap, topic_prefix=prefix, clock=lambda: AT)
    async with client, client.run("alpha", strategy_class="momentum") as run:
        signal = await client.emit_signal("BTC", "LONG", 0.7)
    runs = await read_events(broker, prefix, "runs")
    signals = await read_events(broker, prefix, "signals")
    assert [s.event_id for s in signals] == [signal.event_id]
    assert isinstance(signals[0], SignalEmitted) and signals[0].run_id == run.run_id
    assert len(runs) == 1 and runs[0].run_id == run.run_id and runs[0].errors == 0


async def test_poison_record_goes_to_deadletter_and_the_next_one_is_processed(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await create_topics(broker, prefix)
    worker = Worker(broker, worker_settings(prefix, tmp_path))
    worker.start()
    try:
        good = SignalEmitted.create(
            ts=AT,
            producer="test",
            agent="alpha",
            run_id=uuid.uuid4(),
            symbol="BTC",
            direction="LONG",
            confidence=0.6,
        )
        unknown = b'{"type": "signal.teleported", "ts": "2024-03-01T12:00:00Z"}'
        await produce(broker, prefix, [("signals", b"{not json"), ("signals", unknown), good])
        rejected = await wait_for_events(broker, prefix, "deadletter", 2)
        orders = await wait_for_events(broker, prefix, "orders", 1)
    finally:
        await worker.stop()
    reasons = sorted(r.reason for r in rejected if isinstance(r, EventRejected))
    assert "not valid UTF-8 JSON" in reasons[1]
    assert "unknown event type 'signal.teleported'" in reasons[0]
    raws = {base64.b64decode(r.raw_value) for r in rejected if isinstance(r, EventRejected)}
    assert raws == {b"{not json", unknown}
    assert [o.signal_id for o in orders if isinstance(o, OrderIntent)] == [good.event_id]

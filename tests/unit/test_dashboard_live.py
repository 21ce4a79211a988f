"""The dashboard's follower folds every record once: a fetch that comes back from before
where it was (a consumer started over after "out of range") ends the follow instead."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from schemas.envelope import Event
from schemas.events import SignalEmitted
from streams.dashboard.live import LiveFleet, LogRewound
from tests.keys import SUPERVISOR_KEY

AT = datetime(2026, 3, 2, 12, tzinfo=UTC)
SIGNALS = TopicPartition("t.signals", 0)


def fetched(offset: int, event: Event) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    value = event.model_dump_json().encode()
    record = ConsumerRecord(
        SIGNALS.topic, SIGNALS.partition, offset, int(event.ts.timestamp() * 1000), 0,
        None, value, None, 0, len(value), (),
    )  # fmt: skip
    return {SIGNALS: [record]}


def signal(minutes: int) -> SignalEmitted:
    return SignalEmitted.create(
        ts=AT + timedelta(minutes=minutes),
        producer="test",
        agent="alpha",
        run_id=uuid.uuid4(),
        symbol="BTC",
        direction="LONG",
        confidence=0.6,
    )


def test_records_fold_in_order_and_a_rewound_fetch_folds_nothing() -> None:
    live = LiveFleet("127.0.0.1:9", "t.", SUPERVISOR_KEY.verifier)
    position = {("t.signals", 0): 5}
    assert live._fold(fetched(5, signal(0)), position)
    assert position == {("t.signals", 0): 6}
    assert live.folded.fleet.records == 1
    assert live.folded.reconciliations.pending == 3  # three horizons under the default policy

    with pytest.raises(LogRewound, match=r"t.signals\[0\] came back from offset 0, not 6"):
        live._fold(fetched(0, signal(1)), position)
    assert live.folded.fleet.records == 1
    assert live.folded.reconciliations.pending == 3

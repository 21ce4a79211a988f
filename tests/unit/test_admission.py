"""Bad input the intakes refuse with a reason that says what to fix: records too large to
be one event, names too long to be names, event times far ahead of the broker's clock."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.codec import MAX_RECORD_BYTES, RejectedRecord, decode_event, encode_event
from schemas.events import MAX_NAME_CHARS, RunCompleted
from streams.core.admission import MAX_AHEAD, admitted
from streams.runtime.deadletter import KEPT_OF_OVERSIZED, rejection
from tests.keys import SUPERVISOR_KEY

AT = datetime(2024, 3, 1, 12, tzinfo=UTC)
RUN_TYPES = frozenset({"run.completed"})


def run(agent: str = "alpha", at: datetime = AT) -> RunCompleted:
    return RunCompleted.create(
        ts=at, producer="test", agent=agent, run_id=uuid.uuid4(), started_at=at, latency_ms=1.0
    )


def test_a_record_over_the_size_limit_is_refused_with_its_size() -> None:
    padded = orjson.dumps({**orjson.loads(encode_event(run())), "pad": "x" * MAX_RECORD_BYTES})
    with pytest.raises(RejectedRecord, match=f"record is {len(padded):,} bytes, over the limit"):
        decode_event(padded)


def test_a_name_longer_than_a_name_is_refused() -> None:
    decode_event(encode_event(run("a" * MAX_NAME_CHARS)))
    raw = encode_event(run()).replace(b'"alpha"', b'"' + b"a" * (MAX_NAME_CHARS + 1) + b'"')
    with pytest.raises(RejectedRecord, match="agent: String should have at most 128 characters"):
        decode_event(raw)


def test_an_event_time_far_ahead_of_the_receipt_is_refused_at_a_source_intake() -> None:
    verifier = SUPERVISOR_KEY.verifier
    soon = encode_event(run(at=AT + MAX_AHEAD))
    later = encode_event(run(at=AT + MAX_AHEAD + timedelta(seconds=1)))
    assert admitted(verifier, soon, RUN_TYPES, received_at=AT).ts == AT + MAX_AHEAD
    assert admitted(verifier, later, RUN_TYPES, received_at=None)  # internal topics: no clock
    with pytest.raises(RejectedRecord, match="after the broker received the record"):
        admitted(verifier, later, RUN_TYPES, received_at=AT)


def test_the_rejection_of_an_oversized_record_keeps_its_head_only() -> None:
    raw = b"x" * (MAX_RECORD_BYTES + 1)
    rejected = rejection("runs", 0, 7, 0.0, raw, "too big")
    assert base64.b64decode(rejected.raw_value) == raw[:KEPT_OF_OVERSIZED]
    assert rejected.reason == f"too big (raw_value keeps its first {KEPT_OF_OVERSIZED:,} bytes)"

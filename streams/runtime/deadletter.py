"""Bad input becomes data: an `event.rejected` on `deadletter`, and the stream goes on."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from schemas.codec import MAX_RECORD_BYTES, RejectedRecord, encode_event
from schemas.envelope import Event, derived_event_id
from schemas.events import EventRejected
from streams.core.admission import admitted
from streams.core.signing import FactVerifier

PRODUCER = "metasup.intake"

# What a rejection keeps of an oversized record: enough to recognise it; the whole of it
# could make the rejection itself too large to send.
KEPT_OF_OVERSIZED = 4096


def rejection(
    topic: str,
    partition: int,
    offset: int,
    timestamp_s: float | None,
    raw: bytes | None,
    reason: str,
) -> EventRejected:
    """The rejection of one record, timed by the record's broker timestamp (seconds).

    Its id comes from the record's position, so a redelivered poison record is
    rejected once, not twice.
    """
    at = datetime.fromtimestamp(timestamp_s or 0.0, tz=UTC)
    raw = raw or b""
    if len(raw) > MAX_RECORD_BYTES:
        raw = raw[:KEPT_OF_OVERSIZED]
        reason += f" (raw_value keeps its first {KEPT_OF_OVERSIZED:,} bytes)"
    return EventRejected.create(
        event_id=derived_event_id("rejected", topic, partition, offset),
        ts=at,
        producer=PRODUCER,
        source_topic=topic,
        partition=partition,
        offset=offset,
        reason=reason,
        raw_value=base64.b64encode(raw).decode("ascii"),
    )


async def accepted_events(
    stream: Any,
    expected_types: frozenset[str],
    deadletter: Any,
    verifier: FactVerifier,
    judge_time: bool = False,
) -> AsyncIterator[tuple[Any, Event]]:
    """Yield (faust message, event) for each valid record; reject the rest to `deadletter`.

    Valid includes a verified signature on a governance fact: every intake and every
    processor input reads through here, so an unsigned or forged fact has no effect.
    `judge_time`: refuse event times far ahead of the receipt (source topics).
    """
    async for record in stream.events():
        message = record.message
        stamped = judge_time and message.timestamp is not None
        received = datetime.fromtimestamp(message.timestamp, tz=UTC) if stamped else None
        try:
            event = admitted(verifier, record.value, expected_types, received)
        except RejectedRecord as error:
            await reject(deadletter, message, str(error))
            continue
        yield message, event


async def reject(deadletter: Any, message: Any, reason: str) -> None:
    """Send the `event.rejected` for one Faust message to `deadletter`, under its own key."""
    rejected = rejection(
        message.topic, message.partition, message.offset, message.timestamp, message.value, reason
    )
    await deadletter.send(key=message.key, value=encode_event(rejected))

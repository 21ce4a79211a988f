"""Bad input becomes data: an `event.rejected` on `deadletter`, and the stream goes on."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from schemas.codec import RejectedRecord, encode_event
from schemas.envelope import Event, derived_event_id
from schemas.events import EventRejected
from streams.core.signing import FactVerifier

PRODUCER = "metasup.intake"


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
    return EventRejected.create(
        event_id=derived_event_id("rejected", topic, partition, offset),
        ts=at,
        producer=PRODUCER,
        source_topic=topic,
        partition=partition,
        offset=offset,
        reason=reason,
        raw_value=base64.b64encode(raw or b"").decode("ascii"),
    )


async def accepted_events(
    stream: Any, expected_types: frozenset[str], deadletter: Any, verifier: FactVerifier
) -> AsyncIterator[tuple[Any, Event]]:
    """Yield (faust message, event) for each valid record; reject the rest to `deadletter`.

    Valid includes a verified signature on a governance fact: every intake and every
    processor input reads through here, so an unsigned or forged fact has no effect.
    """
    async for record in stream.events():
        message = record.message
        try:
            event = verifier.decode(record.value, expected_types)
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

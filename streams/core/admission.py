"""What a reader accepts from a topic: the rule every intake, processor input and projection
applies to a record before any fold sees it.

Kept apart from the Faust shell (`streams.runtime.deadletter` sends the rejections) so the
projections, which replay the log without Faust, admit exactly what the workers admitted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas.codec import RejectedRecord
from schemas.envelope import Event, format_utc
from streams.core.signing import FactVerifier

# How far ahead of the broker's receipt a source event's time may be (clock drift). One
# far ahead would move every watermark (the price book, the stats windows) into the
# future: every open signal would settle at once, every window would empty.
MAX_AHEAD = timedelta(hours=1)


def admitted(
    verifier: FactVerifier,
    raw: bytes | None,
    expected_types: frozenset[str],
    received_at: datetime | None = None,
) -> Event:
    """Decode and admit one record, or raise RejectedRecord with what to fix.

    `received_at` (the broker's receipt time; given for source topics, which outside
    clocks stamp) also refuses an event time more than MAX_AHEAD after it.
    """
    event = verifier.decode(raw, expected_types)
    if received_at is not None and event.ts - received_at > MAX_AHEAD:
        raise RejectedRecord(
            f"event time {format_utc(event.ts)} is {event.ts - received_at} after the broker "
            f"received the record ({format_utc(received_at)}; at most {MAX_AHEAD} ahead); "
            "check the producer's clock and that ts is in UTC"
        )
    return event

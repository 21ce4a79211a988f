"""How Faust agents emit derived events: to each type's home topic, keyed per the catalogue."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.topics import key_for, topic_for

FaustTopics = dict[str, Any]


async def send_events(topics: FaustTopics, events: Iterable[Event]) -> None:
    for event in events:
        spec = topic_for(event)
        await topics[spec.name].send(key=key_for(event, spec), value=encode_event(event))


async def forward(topics: FaustTopics, topic: str, key: str, event: Event) -> None:
    """Re-key an accepted event onto an internal topic for the processor that owns that key."""
    await topics[topic].send(key=key.encode(), value=encode_event(event))

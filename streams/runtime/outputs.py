"""How the Faust shells emit: routed events to their topics, source events re-keyed onto
internal topics, and the handler type the intakes call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from schemas.codec import encode_event
from schemas.envelope import Event
from streams.core.processing import Routed, routed

FaustTopics = dict[str, Any]
# An intake handler gets the Faust message (topic, partition, offset) and the decoded event.
Handler = Callable[[Any, Event], Awaitable[None]]
Handlers = dict[str, list[Handler]]


async def send_routed(topics: FaustTopics, outputs: Iterable[Routed]) -> None:
    for out in outputs:
        await topics[out.topic].send(
            key=out.key, value=encode_event(out.event), partition=out.partition
        )


async def send_events(topics: FaustTopics, events: Iterable[Event]) -> None:
    """Send events to their home topics, keyed per the catalogue."""
    await send_routed(topics, routed(events))


async def forward(topics: FaustTopics, topic: str, key: str, event: Event) -> None:
    """Re-key an accepted event onto an internal topic for the processor that owns that key."""
    await send_routed(topics, [Routed(topic, key.encode(), event)])

"""How the Faust shells emit: routed events to their topics, governance facts signed on
their way out, source events re-keyed onto internal topics, and the handler type the
intakes call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.events import GovernanceFact
from streams.core.processing import Routed, routed
from streams.core.signing import FactSigner

FaustTopics = dict[str, Any]
# An intake handler gets the Faust message (topic, partition, offset) and the decoded event.
Handler = Callable[[Any, Event], Awaitable[None]]
Handlers = dict[str, list[Handler]]


async def send_routed(topics: FaustTopics, outputs: Iterable[Routed]) -> None:
    for out in outputs:
        await topics[out.topic].send(
            key=out.key, value=encode_event(out.event), partition=out.partition
        )


def signed(outputs: Iterable[Routed], signer: FactSigner) -> Iterator[Routed]:
    """The outputs with every governance fact signed by the supervisor: the pure rules make
    facts, the shell that writes them signs them, so no key ever enters a rule."""
    for out in outputs:
        if isinstance(out.event, GovernanceFact):
            yield replace(out, event=signer.sign(out.event))
        else:
            yield out


async def send_events(topics: FaustTopics, events: Iterable[Event], signer: FactSigner) -> None:
    """Send events to their home topics, keyed per the catalogue, governance facts signed."""
    await send_routed(topics, signed(routed(events), signer))


async def forward(topics: FaustTopics, topic: str, key: str, event: Event) -> None:
    """Re-key an accepted event onto an internal topic for the processor that owns that key."""
    await send_routed(topics, [Routed(topic, key.encode(), event)])

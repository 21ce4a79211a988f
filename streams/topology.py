"""Wiring: which Faust agent reads which topic and calls which pure rule.

Every source topic has exactly one intake agent; it validates each record
(rejects go to `deadletter`) and hands the event to the handlers that need it.
One intake per topic means a poison record is rejected once, not once per reader.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from schemas.envelope import Event
from schemas.topics import CATALOGUE, TopicSpec
from streams.deadletter import accepted_events
from streams.settings import Settings

# A handler gets the Faust message (topic, partition, offset) and the decoded event.
Handler = Callable[[Any, Event], Awaitable[None]]
Handlers = dict[str, list[Handler]]


def register_intake(
    app: faust.App, spec: TopicSpec, topic: Any, handlers: list[Handler], deadletter: Any
) -> None:
    async def intake(stream: Any) -> None:
        async for message, event in accepted_events(stream, spec.types, deadletter):
            for handle in handlers:
                await handle(message, event)

    app.agent(topic, name=f"intake_{spec.name.replace('-', '_')}")(intake)


def register_topology(app: faust.App, topics: dict[str, Any], settings: Settings) -> None:
    handlers: Handlers = defaultdict(list)
    for spec in CATALOGUE:
        if spec.origin == "source":
            register_intake(app, spec, topics[spec.name], handlers[spec.name], topics["deadletter"])

"""Wiring: which Faust agent reads which topic and calls which pure rule.

Every source topic has exactly one intake agent; it validates each record
(rejects go to `deadletter`) and hands the event to the handlers that need it.
One intake per topic means a poison record is rejected once, not once per reader.

    signals ─┬─> reconcile-input (by symbol) ─> reconcile_signals ─> reconciled, unreconciled
    prices ──┘                                                          │
    runs ────┬─> agent-input (by agent) ──┬─> assess_agents <───────────┘
    signals ─┘                            │     ├─> confidence, decisions, kills (auto), orders
                                          │     └─> fleet-input (assessments, reconciliations)
    regimes ───> fleet-input ─────────────┴──> supervise_fleet ─> allocations, kills (breach,
                                                                   strategy classes)
    commands ──> verify (HMAC, freshness, nonce) ─> kills (operator) | deadletter
    policy, regimes, kills, allocations ──> FleetView in every worker (read side)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from schemas.envelope import Event
from schemas.topics import CATALOGUE, TopicSpec
from streams.agents.faust_agents import register_agent_processor
from streams.deadletter import accepted_events
from streams.fleet_view import FleetView
from streams.reconcile.faust_agents import register_reconcile
from streams.settings import Settings
from streams.supervisor.commands import load_keyring
from streams.supervisor.execution import PaperBroker
from streams.supervisor.faust_agents import register_supervisor

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


def register_topology(app: faust.App, topics: dict[str, Any], settings: Settings) -> FleetView:
    fleet = FleetView(settings.bootstrap_servers(), settings.topic_prefix)
    app.task(fleet.run_forever)
    handlers: Handlers = defaultdict(list)
    register_reconcile(app, topics, handlers, fleet)
    register_agent_processor(app, topics, handlers, fleet, settings, PaperBroker())
    register_supervisor(app, topics, handlers, fleet, load_keyring(settings.keyring_source()))
    for spec in CATALOGUE:
        if spec.origin == "source":
            register_intake(app, spec, topics[spec.name], handlers[spec.name], topics["deadletter"])
    return fleet

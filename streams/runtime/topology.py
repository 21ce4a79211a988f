"""Wiring: which Faust agent reads which topic and calls which pure rule.

Every source topic has exactly one intake agent; it validates each record
(rejects go to `deadletter`) and hands the event to the handlers that need it.
One intake per topic means a poison record is rejected once, not once per reader.

    signals ─┬─> reconcile-input (by symbol) ─> reconcile_signals ─> reconciled, unreconciled
    prices ──┘                                            │ focus horizon
    runs ────┬─> agent-input (by agent) <─────────────────┘
    signals ─┘         │
                       └─> assess_agents ─> confidence, decisions, kills (auto), orders,
                                            fleet-input (assessments, with their trades)
    fleet-input ─> supervise_fleet ─> allocations, kills (breach, strategy classes)
    commands ──> verify (HMAC, freshness, nonce) ─> kills (operator), policy | deadletter
    every intake and processor input admits a kill or policy fact only when the supervisor's
    Ed25519 signature verifies (else deadletter); every fact written there is signed
    relays: policy ──> every partition of reconcile-input, agent-input, fleet-input
            kills ───> every partition of agent-input, fleet-input
            allocations (and strategy trials) ─> every partition of agent-input
            regimes, lineage ─> fleet-input
    policy, regimes, kills, allocations ──> FleetView (SDK guards, timed expiry, views)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import faust

from schemas.envelope import Event
from schemas.topics import CATALOGUE, TopicSpec, topic
from streams.agents.execution import PaperBroker
from streams.core.processing import FACTS_FOR_INPUT, Routed
from streams.core.signing import FactVerifier
from streams.fleet.commands import load_keyring
from streams.runtime.agent_shell import register_agent_processor
from streams.runtime.deadletter import accepted_events
from streams.runtime.fleet_shell import register_supervisor
from streams.runtime.fleet_view import FleetView
from streams.runtime.outputs import Handler, Handlers, send_routed
from streams.runtime.reconcile_shell import register_reconcile
from streams.runtime.schedule_shell import register_schedules
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import ensure_key_pair, load_signer

log = logging.getLogger(__name__)

# Derived fleet topics read back by a relay (the processors decide from them).
RELAYED_DERIVED = ("kills", "allocations", "lineage")


def register_intake(
    app: faust.App,
    spec: TopicSpec,
    topic: Any,
    handlers: list[Handler],
    deadletter: Any,
    verifier: FactVerifier,
) -> None:
    async def intake(stream: Any) -> None:
        async for message, event in accepted_events(
            stream, spec.types, deadletter, verifier, judge_time=spec.origin == "source"
        ):
            for handle in handlers:
                await handle(message, event)

    app.agent(topic, name=f"intake_{spec.name.replace('-', '_')}")(intake)


def register_fleet_relays(app: faust.App, topics: dict[str, Any], handlers: Handlers) -> None:
    """Broadcast each fleet fact onto every partition of each processor input that needs it.

    Policy and regimes arrive through their intakes; kills and allocations, written by
    the processors themselves, get a relay agent of their own.
    """
    for fact_topic in ("policy", "regimes", "kills", "allocations", "lineage"):
        targets = [name for name, facts in FACTS_FOR_INPUT.items() if fact_topic in facts]

        async def broadcast(message: Any, event: Event, targets: list[str] = targets) -> None:
            await send_routed(
                topics,
                (
                    Routed(name, b"fleet", event, partition)
                    for name in targets
                    for partition in range(topic(name).partitions)
                ),
            )

        handlers[fact_topic].append(broadcast)


def register_topology(app: faust.App, topics: dict[str, Any], settings: Settings) -> FleetView:
    if ensure_key_pair(settings):
        log.warning(
            "created the supervisor key %s (public: %s); workers that must agree share it",
            settings.supervisor_key_path(),
            settings.supervisor_public_key_path(),
        )
    signer = load_signer(settings)
    fleet = FleetView(settings.bootstrap_servers(), settings.topic_prefix, signer.verifier)
    app.task(fleet.run_forever)
    handlers: Handlers = defaultdict(list)
    register_reconcile(app, topics, handlers, signer)
    register_agent_processor(app, topics, handlers, fleet, settings, PaperBroker(), signer)
    keyring = load_keyring(settings.keyring_source())
    register_supervisor(app, topics, handlers, fleet, keyring, signer)
    register_fleet_relays(app, topics, handlers)
    register_schedules(app, settings, signer.verifier)
    for spec in CATALOGUE:
        if spec.origin == "source" or spec.name in RELAYED_DERIVED:
            register_intake(
                app,
                spec,
                topics[spec.name],
                handlers[spec.name],
                topics["deadletter"],
                signer.verifier,
            )
    return fleet

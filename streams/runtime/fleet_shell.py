"""The supervisor in Faust: the fleet processor, operator commands, timed kill expiry.

Everything it writes to `kills` and `policy` leaves signed with the supervisor's Ed25519
key (`streams.runtime.outputs.signed`).

`fleet-input` and `commands` have one partition each, so exactly one worker runs
each of these processors at a time, in one total order. The fleet processor's
rule is `streams.fleet.book.FleetProcessor`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import faust

from schemas.envelope import Event
from schemas.events import SignedCommand
from schemas.topics import topic
from streams.agents.stats import STATS_SHARDS
from streams.core.kill_list import expired
from streams.core.signing import FactSigner
from streams.fleet.book import FleetProcessor
from streams.fleet.commands import CommandGate, Keyring, apply_command
from streams.runtime.deadletter import reject
from streams.runtime.fleet_view import FleetView
from streams.runtime.outputs import FaustTopics, Handlers, send_events
from streams.runtime.processor_shell import ProcessorShell

GATE_KEY = b"gate"
# Portfolio window, deployed trades, weights in force and class trades (per day) and agent
# assessments (per agent) are stored apart from the head (see streams.runtime.sharded_store).
FLEET_SHARDS = {
    **{f"portfolio.{path}": how for path, how in STATS_SHARDS.items()},
    "deployed": "days",
    "weights_in_force": "day:ts",
    "class_trades.*": "days",
    "agents": "key",
}


def register_supervisor(
    app: faust.App,
    topics: FaustTopics,
    handlers: Handlers,
    fleet: FleetView,
    keyring: Keyring,
    signer: FactSigner,
) -> None:
    ProcessorShell(app, topics, FleetProcessor(), FLEET_SHARDS, signer)
    gates = app.Table(
        "command-gate", key_type=bytes, value_type=bytes, partitions=topic("commands").partitions
    )

    async def verify_command(message: Any, event: Event) -> None:
        assert isinstance(event, SignedCommand)
        stored = gates.get(GATE_KEY)
        gate = CommandGate.model_validate_json(stored) if stored else CommandGate()
        # Freshness is judged at the broker's receipt time, so a replay judges the same way.
        received = datetime.fromtimestamp(message.timestamp, tz=UTC)
        # A policy change applies to the policy in force: wait until the view has read it.
        await fleet.ready.wait()
        policies = fleet.state.policies
        latest = policies[-1] if policies else None
        new_gate, result = apply_command(gate, event, keyring, received, latest)
        if isinstance(result, str):
            await reject(topics["deadletter"], message, f"operator command refused: {result}")
            return
        await send_events(topics, result, signer)
        gates[GATE_KEY] = new_gate.model_dump_json().encode()

    handlers["commands"].append(verify_command)

    app.timer(0.5, on_leader=True)(KillExpiry(topics, fleet, signer).send_due)


class KillExpiry:
    """Revives each timed kill once its `until` has passed (wall clock: a pause is a promise
    about real time). The revive's id derives from the kill, so a second copy (after a
    restart, or while the FleetView has not read the first) changes nothing; `sent` only
    spares the log those copies, it decides nothing."""

    def __init__(self, topics: FaustTopics, fleet: FleetView, signer: FactSigner) -> None:
        self.topics = topics
        self.fleet = fleet
        self.signer = signer
        self.sent: set[uuid.UUID] = set()

    async def send_due(self) -> None:
        due = [
            fact
            for fact in expired(self.fleet.state.kills, datetime.now(UTC))
            if fact.event_id not in self.sent
        ]
        await send_events(self.topics, due, self.signer)
        self.sent.update(fact.event_id for fact in due)

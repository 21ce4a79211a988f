"""The per-agent processor in Faust: the intakes re-key runs and signals by agent onto
`agent-input`, the processor there is `streams.agents.processor`, and two web views
show the live states of the partitions this worker owns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import faust
import orjson
from aiokafka.partitioner import murmur2

from schemas.envelope import Event
from schemas.events import OrderIntent, RunCompleted, SignalEmitted
from schemas.topics import topic
from streams.agents.assess import AgentState, reported_window
from streams.agents.execution import BrokerAdapter, dispatch
from streams.agents.processor import AgentProcessor
from streams.agents.stats import STATS_SHARDS
from streams.core.processing import Routed
from streams.core.signing import FactSigner
from streams.runtime.fleet_view import FleetView
from streams.runtime.outputs import FaustTopics, Handlers, forward
from streams.runtime.processor_shell import ProcessorShell
from streams.runtime.settings import Settings
from streams.runtime.write_behind import WriteBehind

# The stats window is stored per day (see streams.runtime.sharded_store).
AGENT_SHARDS = {f"stats.{path}": how for path, how in STATS_SHARDS.items()}


def register_agent_processor(
    app: faust.App,
    topics: FaustTopics,
    handlers: Handlers,
    fleet: FleetView,
    settings: Settings,
    broker: BrokerAdapter,
    signer: FactSigner,
) -> None:
    async def to_agent(message: Any, event: Event) -> None:
        assert isinstance(event, RunCompleted | SignalEmitted)
        await forward(topics, "agent-input", event.agent, event)

    handlers["runs"].append(to_agent)
    handlers["signals"].append(to_agent)

    def route_orders(outputs: list[Routed]) -> list[Routed]:
        """Live orders go to the broker adapter here, at the edge, after the pure step."""
        return [
            replace(o, event=dispatch(o.event, broker)) if isinstance(o.event, OrderIntent) else o
            for o in outputs
        ]

    shell = ProcessorShell(
        app, topics, AgentProcessor(settings.trading_mode), AGENT_SHARDS, signer, route_orders
    )
    store = shell.store
    register_agent_views(app, store, fleet, settings)


def register_agent_views(
    app: faust.App, store: WriteBehind[AgentState], fleet: FleetView, settings: Settings
) -> None:
    """`/agents/` and `/agents/{agent}/`: the live table of the partitions this worker owns."""

    def view_of(state: AgentState) -> dict[str, Any]:
        window = reported_window(state.stats, fleet.state, None, state.strategy_class)
        return {
            "state": state.model_dump(mode="json"),
            "window": window.model_dump(mode="json") if window is not None else None,
        }

    partitions = topic("agent-input").partitions

    def is_active_here(key: bytes) -> bool:
        """Whether this worker owns the key's partition (its table also holds standby copies
        of other workers' partitions, which may lag)."""
        owned = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == settings.topic("agent-input")
        }
        return (murmur2(key) & 0x7FFFFFFF) % partitions in owned

    async def agent_states_view(web: Any, request: Any) -> Any:
        """The live table for the partitions this worker owns: state and window stats."""
        states = (store.load(key) for key in store.heads() if is_active_here(key))
        body = {state.agent: view_of(state) for state in states if state is not None}
        return web.bytes(orjson.dumps(body), content_type="application/json")

    async def agent_state_view(web: Any, request: Any, agent: str) -> Any:
        """One agent; 404 names the agents this worker holds (others live on other workers)."""
        state = store.load(agent.encode()) if is_active_here(agent.encode()) else None
        if state is None:
            held = sorted(
                key.decode(errors="replace") for key in store.heads() if is_active_here(key)
            )
            return web.bytes(
                orjson.dumps({"error": f"agent {agent!r} is not on this worker", "held": held}),
                content_type="application/json",
                status=404,
            )
        return web.bytes(orjson.dumps(view_of(state)), content_type="application/json")

    app.page("/agents/")(agent_states_view)
    app.page("/agents/{agent}/")(agent_state_view)

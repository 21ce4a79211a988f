"""What every processor is: a pure step over its own ordered input, and the facts it carries.

A processor reads one internal topic (`reconcile-input`, `agent-input`,
`fleet-input`). Everything it decides from reaches it there, in that one order:
its source events, and the fleet facts (policy, kills, regimes, allocations)
that the relays broadcast onto every partition. Each partition therefore folds
its own copy of the facts (`FleetState`), and the derived events it emits are a
pure function of the partition's records. No processor consults another
consumer's view, which could be ahead of or behind its input; that race once
made allocations stay under the wrong regime.

The Faust shell (`streams.runtime.processor_shell`) and the replay projection
(`projections.processors`) drive the very same `apply_input`, so a replay of a
partition's records reproduces what the live processor emitted, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from schemas.envelope import Event
from schemas.events import (
    AllocationUpdated,
    KillFact,
    PolicyUpdated,
    RegimeChanged,
    StrategyTrials,
)
from schemas.topics import key_for, topic_for
from streams.core.fleet_state import FleetState, apply_fleet_event

S = TypeVar("S", bound=BaseModel)

FleetFact = PolicyUpdated | RegimeChanged | KillFact | AllocationUpdated | StrategyTrials

# Which fleet topics each processor's input carries (the relays broadcast them). All but
# `lineage` hold fleet facts, folded into each partition's FleetState; the fleet processor
# steps on `lineage` (agents spawned: trials of their strategy class).
FACTS_FOR_INPUT: dict[str, tuple[str, ...]] = {
    "reconcile-input": ("policy",),
    "agent-input": ("policy", "kills", "allocations"),
    "fleet-input": ("policy", "regimes", "kills", "lineage"),
}


@dataclass(frozen=True)
class Routed:
    """An event with where it goes: topic, key, and a partition when it is broadcast."""

    topic: str
    key: bytes
    event: Event
    partition: int | None = None


def routed(events: Iterable[Event]) -> list[Routed]:
    """Route events to their home topics with the catalogue's keys."""
    routes = []
    for event in events:
        spec = topic_for(event)
        routes.append(Routed(spec.name, key_for(event, spec), event))
    return routes


def is_fleet_fact(event: Event) -> bool:
    return isinstance(
        event, PolicyUpdated | RegimeChanged | KillFact | AllocationUpdated | StrategyTrials
    )


class Processor(Protocol, Generic[S]):
    """A pure processor: which state an input event belongs to, and the step on it."""

    name: str
    input_topic: str
    state_model: type[S]

    def key_of(self, event: Event) -> str | None:
        """The state an event updates, or None when only the partition's facts change."""
        ...

    def step(self, facts: FleetState, state: S | None, event: Event) -> tuple[S, list[Routed]]:
        """Fold one event into the state of its key; return the events to emit."""
        ...


@dataclass(frozen=True)
class StepResult(Generic[S]):
    facts: FleetState
    key: str | None
    state: S | None
    outputs: list[Routed]


def apply_input(
    processor: Processor[S],
    facts: FleetState,
    load: Callable[[str], S | None],
    event: Event,
) -> StepResult[S]:
    """One input record: fold a fleet fact into the partition's facts, then step the key's state.

    The facts are updated first, so a step sees the fact it is reacting to (a
    regime change reallocates under the new regime). A fact folded before (a
    redelivery) changes nothing and is not stepped.
    """
    if is_fleet_fact(event):
        folded = apply_fleet_event(facts, event)
        if folded is facts:
            return StepResult(facts, None, None, [])
        facts = folded
    key = processor.key_of(event)
    if key is None:
        return StepResult(facts, None, None, [])
    state, outputs = processor.step(facts, load(key), event)
    return StepResult(facts, key, state, outputs)

"""The whole pipeline in memory: source events in, every derived event out, no broker.

It wires the pure processors the way `streams.runtime.topology` wires their Faust shells
(intakes re-key, relays broadcast fleet facts, each processor reads one input in
order), with one partition per topic and one FIFO of records, each source event
carried through to quiescence before the next. Live, the same records are spread over
partitions and workers, and a processor's input interleaves them as the hops deliver:
a trade can reach an agent after its next runs, an allocation after the next signals.
So the reconciliations and which events exist per cause (a confidence update per
focus-horizon trade, an order per signal) are the live ones; decisions, kills,
allocations and the figures inside confidence updates and orders can differ (measured:
a fault-free live run of 1,296 source events and this run agreed on every
reconciliation; 12 of the 22 live decisions were not made here, and 480 of 576 orders
had other sizes).
The replay of the recorded inputs (`projections.processors`) is what equals the live
topics byte for byte. Used to replay source events fast (a what-if under another
policy, the benchmarks), by the functional tests and by `bench.chaos_audit`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from projections.processors import processors
from schemas.envelope import Event
from schemas.topics import topic_for
from streams.core.fleet_state import FleetState
from streams.core.processing import FACTS_FOR_INPUT, Processor, Routed, apply_input

# Where each source topic's intake forwards (relayed fleet facts come from FACTS_FOR_INPUT).
INTAKE_ROUTES: dict[str, tuple[str, ...]] = {
    "signals": ("reconcile-input", "agent-input"),
    "prices": ("reconcile-input",),
    "runs": ("agent-input",),
}


@dataclass
class InMemoryPipeline:
    """Processors with their states; `feed` runs source events through to quiescence."""

    processors: dict[str, Processor[Any]] = field(
        default_factory=lambda: {p.input_topic: p for p in processors()}
    )
    facts: dict[str, FleetState] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    emitted: list[Routed] = field(default_factory=list)
    # Where each topic without a processor forwards (a what-if sends the recorded
    # reconciliations where the reconcile processor's outputs go).
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: INTAKE_ROUTES)

    def feed(self, events: Iterable[Event]) -> list[Routed]:
        """Process source events in the given order; return the derived events they caused."""
        start = len(self.emitted)
        queue: deque[Routed] = deque()
        for event in events:
            queue.append(Routed(topic_for(event).name, b"", event))
            while queue:
                self._deliver(queue.popleft(), queue)
        return self.emitted[start:]

    def _deliver(self, record: Routed, queue: deque[Routed]) -> None:
        processor = self.processors.get(record.topic)
        if processor is not None:
            self._process(processor, record.event, queue)
            return
        for target in self.routes.get(record.topic, ()):
            queue.append(Routed(target, b"", record.event))
        for target, relayed in FACTS_FOR_INPUT.items():
            if record.topic in relayed:
                queue.append(Routed(target, b"fleet", record.event))

    def _process(self, processor: Processor[Any], event: Event, queue: deque[Routed]) -> None:
        name = processor.input_topic
        states = self.states.setdefault(name, {})
        facts = self.facts.get(name)
        if facts is None:  # not `get(name, FleetState())`: that builds a model per record
            facts = FleetState()
        result = apply_input(processor, facts, states.get, event)
        self.facts[name] = result.facts
        if result.key is not None:
            states[result.key] = result.state
        for out in result.outputs:
            if out.topic not in self.processors:
                self.emitted.append(out)
            queue.append(out)

"""The processors replayed from their recorded inputs: what they emitted, recomputed.

Each processor decides only from its own input topic (`streams.core.processing`), so
folding the records of each input partition in offset order through the same
`apply_input` the live shell runs reproduces every derived event, with the same
ids and the same bytes. Tests compare this with the derived topics; a user can
run it to audit the live pipeline from the log alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from projections.log import LogRecord
from schemas.codec import RejectedRecord
from schemas.topics import topic
from streams.agents.execution import TradingMode
from streams.agents.processor import AgentProcessor
from streams.core.fleet_state import FleetState
from streams.core.processing import Processor, Routed, apply_input
from streams.core.signing import FactVerifier
from streams.fleet.book import FleetProcessor
from streams.reconcile.processor import ReconcileProcessor


def processors(mode: TradingMode = "shadow") -> list[Processor[Any]]:
    """The pipeline's processors, in the order data flows through them."""
    return [ReconcileProcessor(), AgentProcessor(mode), FleetProcessor()]


def replay_partition(
    processor: Processor[Any], records: Iterable[LogRecord], verifier: FactVerifier
) -> Iterator[Routed]:
    """Fold one input partition's records (in offset order) and yield every output.

    Records are admitted as the live shell admits them: an unsigned or forged governance
    fact is skipped. Outputs are the pure step's, unsigned: the live shell signs the
    governance facts among them on their way out.
    """
    facts = FleetState()
    states: dict[str, Any] = {}
    expected = topic(processor.input_topic).types
    for record in records:
        try:
            event = verifier.decode(record.value, expected)
        except RejectedRecord:
            continue  # the live shell sent it to `deadletter`; it changes no state
        result = apply_input(processor, facts, states.get, event)
        facts = result.facts
        if result.key is not None:
            states[result.key] = result.state
        yield from result.outputs


def replay_processor(
    processor: Processor[Any],
    records: Iterable[LogRecord],
    verifier: FactVerifier,
    prefix: str = "",
) -> list[Routed]:
    """Every output of `processor` over the records of its input topic (any order given)."""
    name = prefix + processor.input_topic
    by_partition: dict[int, list[LogRecord]] = {}
    for record in records:
        if record.topic == name:
            by_partition.setdefault(record.partition, []).append(record)
    outputs: list[Routed] = []
    for partition in sorted(by_partition):
        ordered = sorted(by_partition[partition], key=lambda r: r.offset)
        outputs += replay_partition(processor, ordered, verifier)
    return outputs

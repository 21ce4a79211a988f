"""The audit after a chaos run: the log against independent recomputations, no broker.

Read from the durable log once the stack has stopped, it answers three questions.

- Was anything acknowledged or accepted lost? Every acknowledged record is at its
  position, unchanged; every accepted source event (admitted by the intakes' own rule,
  `streams.runtime.deadletter.admitted`) reached every processor input it is routed to;
  every derived event the recomputations make is on its topic.
- Was anything counted twice? Every derived event on the log is one the recomputations
  make, with the same bytes: a fold that counted a record twice (or missed one) emits
  other figures, or other events.
- Is every bad record in `deadletter`, with the words that say what to fix?

Two recomputations, both pure folds. From the accepted source events alone,
`projections.pipeline.InMemoryPipeline` gives what does not depend on the interleaving of
the processors' inputs: the reconciliations (ids and bytes), the unreconcilable pairs, one
confidence update per focus-horizon trade, one order per signal. Decisions, kills,
allocations and the figures inside confidence updates and orders do depend on it (a
trade that reaches an agent before or after its next run changes the window a decision
reads), so for every derived topic the reference is also each processor replayed over
its recorded input (`projections.processors`), whose routing from the sources is checked
first. Operator commands are replayed through the command gate's pure rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import orjson

from bench.chaos_inputs import Outgoing
from projections.log import LogRecord
from projections.pipeline import INTAKE_ROUTES, InMemoryPipeline
from projections.processors import processors, replay_processor
from schemas.codec import RejectedRecord, encode_event
from schemas.envelope import Event
from schemas.events import EventRejected, SignedCommand
from schemas.topics import CATALOGUE, topic, topic_for
from streams.core.admission import admitted
from streams.core.processing import FACTS_FOR_INPUT, Routed
from streams.core.signing import FactSigner
from streams.fleet.commands import CommandGate, Keyring, apply_command
from streams.runtime.outputs import signed

SOURCES = [spec.name for spec in CATALOGUE if spec.origin == "source"]
RELAYED = ("kills", "allocations")
# Derived topics and the processor outputs forwarded onto processor inputs.
DERIVED = (
    "reconciled",
    "unreconciled",
    "confidence",
    "decisions",
    "orders",
    "kills",
    "allocations",
    "agent-input",
    "fleet-input",
)
FORWARDED_TYPES = {"agent-input": "signal.reconciled", "fleet-input": "agent.assessed"}
# What the in-memory run over the source events decides whatever the interleaving:
# topic -> whether the bytes (not only the ids) must match.
ORDER_FREE = {"reconciled": True, "unreconciled": False, "confidence": False, "orders": False}
# Kill facts made outside the processors: by the command gate (and the timed-kill expiry).
GATE_SOURCES = ("operator", "expiry")

Position = tuple[str, int, int]
BAD_SECTION = "bad input → deadletter"


@dataclass(frozen=True)
class Row:
    """One line of the table: what a recomputation expects, what the log holds."""

    section: str
    name: str
    expected: int
    live: int
    missing: int = 0
    extra: int = 0
    wrong: int = 0
    note: str = ""


@dataclass
class Log:
    """The durable log of one run, by topic (without the run's prefix)."""

    records: dict[str, list[LogRecord]]

    @classmethod
    def of(cls, records: Iterable[LogRecord], prefix: str) -> Log:
        by_topic: dict[str, list[LogRecord]] = defaultdict(list)
        for record in records:
            by_topic[record.topic.removeprefix(prefix)].append(record)
        for listed in by_topic.values():
            listed.sort(key=lambda r: (r.partition, r.offset))
        return cls(dict(by_topic))

    def topic(self, name: str) -> list[LogRecord]:
        return self.records.get(name, [])


@dataclass
class Admission:
    """Each source record judged as the intakes judge it, and the gate's verdicts."""

    accepted: dict[str, dict[str, Event]] = field(default_factory=dict)
    rejected: dict[Position, str] = field(default_factory=dict)
    gate_facts: list[Routed] = field(default_factory=list)


def admit_sources(log: Log, signer: FactSigner, keyring: Keyring) -> Admission:
    """The intakes' rule over every source record (and the relayed `kills`), in log order;
    commands then go through the command gate's pure rule at their receipt time."""
    admission = Admission()
    gate = CommandGate()
    for name in (*SOURCES, *RELAYED):
        accepted = admission.accepted.setdefault(name, {})
        spec = topic(name)
        for record in log.topic(name):
            position = (name, record.partition, record.offset)
            received = record.received_at if spec.origin == "source" else None
            try:
                event = admitted(signer.verifier, record.value, spec.types, received)
            except RejectedRecord as error:
                admission.rejected[position] = str(error)
                continue
            if isinstance(event, SignedCommand):
                gate, verdict = apply_command(gate, event, keyring, record.received_at)
                if isinstance(verdict, str):
                    admission.rejected[position] = f"operator command refused: {verdict}"
                    continue
                admission.gate_facts += signed(
                    (Routed(topic_for(f).name, b"", f) for f in verdict), signer
                )
            accepted.setdefault(str(event.event_id), event)
    return admission


def _ids_by_partition(records: list[LogRecord]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = defaultdict(set)
    for record in records:
        if record.value is not None:
            found[orjson.loads(record.value)["event_id"]].add(record.partition)
    return found


def routing_rows(log: Log, admission: Admission) -> list[Row]:
    """Every accepted source event (and relayed fact) on every processor input it goes to:
    routed events on one partition, fleet facts on all of them."""
    inputs = {name: _ids_by_partition(log.topic(name)) for name in FACTS_FOR_INPUT}
    rows = []
    for name, accepted in admission.accepted.items():
        routes = [(target, False) for target in INTAKE_ROUTES.get(name, ())]
        routes += [(target, True) for target, facts in FACTS_FOR_INPUT.items() if name in facts]
        if not routes:
            continue  # commands: their facts are checked with the derived topics
        delivered = sum(
            all(
                _delivered(inputs[target], event_id, target, everywhere)
                for target, everywhere in routes
            )
            for event_id in accepted
        )
        targets = ", ".join(sorted({target for target, _ in routes}))
        rows.append(
            Row(
                "accepted → processor inputs",
                name,
                len(accepted),
                delivered,
                missing=len(accepted) - delivered,
                note=f"to {targets}",
            )
        )
    return rows


def _delivered(found: dict[str, set[int]], event_id: str, target: str, everywhere: bool) -> bool:
    partitions = found.get(event_id, set())
    return len(partitions) == topic(target).partitions if everywhere else bool(partitions)


def live_derived(log: Log, signer: FactSigner) -> dict[str, dict[str, set[bytes]]]:
    """What the workers wrote, per derived topic: event id -> every distinct value (more
    than one is two versions of one fact). Kill facts: only the supervisor's."""
    live: dict[str, dict[str, set[bytes]]] = {name: defaultdict(set) for name in DERIVED}
    live["operator facts"] = defaultdict(set)
    for name in DERIVED:
        for record in log.topic(name):
            if record.value is None:
                continue
            value = orjson.loads(record.value)
            if name in FORWARDED_TYPES and value["type"] != FORWARDED_TYPES[name]:
                continue
            into = name
            if name == "kills":
                if _forged(record.value, signer):
                    continue  # a bad record, judged with the deadletter
                if value.get("source") in GATE_SOURCES:
                    into = "operator facts"
            live[into][value["event_id"]].add(record.value)
    for record in log.topic("policy"):
        if record.value is not None and not _forged(record.value, signer):
            live["operator facts"][orjson.loads(record.value)["event_id"]].add(record.value)
    return live


def _forged(raw: bytes, signer: FactSigner) -> bool:
    try:
        signer.verifier.decode(raw)
    except RejectedRecord:
        return True
    return False


def replayed(log: Log, signer: FactSigner, prefix: str) -> dict[str, dict[str, bytes]]:
    """Each processor folded over its recorded input partitions, governance facts signed."""
    records = [
        LogRecord(prefix + name, r.partition, r.offset, r.timestamp_ms, r.value)
        for name in FACTS_FOR_INPUT
        for r in log.topic(name)
    ]
    out: dict[str, dict[str, bytes]] = defaultdict(dict)
    for processor in processors():
        outputs = replay_processor(processor, records, signer.verifier, prefix)
        for routed in signed(outputs, signer):
            out[routed.topic].setdefault(str(routed.event.event_id), encode_event(routed.event))
    return out


def from_sources(admission: Admission) -> dict[str, dict[str, bytes]]:
    """The whole topology in memory over the accepted source events, in event-time order."""
    events = [
        event
        for name in ("regimes", "policy", "prices", "runs", "signals")
        for event in admission.accepted.get(name, {}).values()
    ]
    events.sort(key=lambda e: (e.ts, e.type != "price.observed"))
    out: dict[str, dict[str, bytes]] = defaultdict(dict)
    for routed in InMemoryPipeline().feed(events):
        out[routed.topic].setdefault(str(routed.event.event_id), encode_event(routed.event))
    return out


def derived_rows(
    live: dict[str, dict[str, set[bytes]]],
    replay: dict[str, dict[str, bytes]],
    sources: dict[str, dict[str, bytes]],
    admission: Admission,
) -> list[Row]:
    rows = []
    for name in DERIVED:
        reference = dict(replay.get(name, {}))
        by_source = sources.get(name, {}) if name in ORDER_FREE else {}
        exact = ORDER_FREE.get(name, False)
        for event_id, value in by_source.items():
            reference.setdefault(event_id, value)
        note = "replay of inputs" + (" + sources" if name in ORDER_FREE else "")
        rows.append(_compare("derived (vs recomputation)", name, reference, live[name], note))
        if exact:
            rows[-1] = _with_wrong(rows[-1], live[name], by_source)
    gate = {str(r.event.event_id): encode_event(r.event) for r in admission.gate_facts}
    rows.append(
        _compare(
            "derived (vs recomputation)",
            "kills + policy (commands)",
            gate,
            live["operator facts"],
            "command gate rule",
        )
    )
    return rows


def _compare(
    section: str, name: str, reference: dict[str, bytes], live: dict[str, set[bytes]], note: str
) -> Row:
    wrong = sum(
        len(values) > 1 or (event_id in reference and reference[event_id] not in values)
        for event_id, values in live.items()
    )
    return Row(
        section,
        name,
        len(reference),
        len(live),
        missing=len(reference.keys() - live.keys()),
        extra=len(live.keys() - reference.keys()),
        wrong=wrong,
        note=note,
    )


def _with_wrong(row: Row, live: dict[str, set[bytes]], exact: dict[str, bytes]) -> Row:
    """Also count events whose bytes differ from the order-free recomputation."""
    differ = sum(
        event_id in exact and values != {exact[event_id]} for event_id, values in live.items()
    )
    return replace(row, wrong=max(row.wrong, differ))


def rejections(log: Log, prefix: str) -> dict[Position, list[str]]:
    """Reasons in `deadletter` by the rejected record's position (one per rejection id)."""
    found: dict[Position, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for record in log.topic("deadletter"):
        event = EventRejected.model_validate_json(record.value or b"")
        if str(event.event_id) in seen:
            continue
        seen.add(str(event.event_id))
        position = (event.source_topic.removeprefix(prefix), event.partition, event.offset)
        found[position].append(event.reason)
    return found


def bad_rows(
    sent: list[tuple[Outgoing, Position]],
    found: dict[Position, list[str]],
    admission: Admission,
) -> list[Row]:
    """Per kind of bad input: each acknowledged bad record in `deadletter` with the words
    that say what is wrong; then any rejection of a record the intakes' rule accepts."""
    by_kind: dict[str, list[tuple[Outgoing, Position]]] = defaultdict(list)
    for outgoing, position in sent:
        by_kind[outgoing.kind].append((outgoing, position))
    rows = []
    for kind, records in by_kind.items():
        matched = [
            reason
            for outgoing, position in records
            for reason in found.get(position, [])[:1]
            if outgoing.expected_reason in reason
        ]
        example = matched[0] if matched else _example(records, found)
        rows.append(
            Row(
                BAD_SECTION,
                kind,
                len(records),
                len(matched),
                missing=len(records) - len(matched),
                note=f"{records[0][0].topic}: {example}",
            )
        )
    unexpected = [p for p in found if p not in admission.rejected]
    rows.append(
        Row(
            BAD_SECTION,
            "rejections of accepted records",
            0,
            len(unexpected),
            extra=len(unexpected),
            note="; ".join(f"{t}[{p}]@{o}: {found[(t, p, o)][0]}" for t, p, o in unexpected[:2]),
        )
    )
    return rows


def _example(records: list[tuple[Outgoing, Position]], found: dict[Position, list[str]]) -> str:
    for outgoing, position in records:
        if found.get(position):
            return f"WRONG REASON (wanted {outgoing.expected_reason!r}): {found[position][0]}"
    return "NOT IN DEADLETTER"


def durability_row(acked: list[tuple[Position, bytes | None]], log: Log) -> Row:
    """Every acknowledged record at its position with its bytes (the broker was killed)."""
    stored = {
        (name, r.partition, r.offset): r.value for name in log.records for r in log.topic(name)
    }
    lost = [position for position, value in acked if stored.get(position, b"?") != value]
    example = ", ".join(f"{t}[{p}]@{o}" for t, p, o in lost[:3])
    return Row(
        "acknowledged → durable log",
        "acked records",
        len(acked),
        len(acked) - len(lost),
        missing=len(lost),
        note=f"lost: {example}" if lost else "each at its offset, same bytes",
    )


def audit(
    records: list[LogRecord],
    prefix: str,
    signer: FactSigner,
    keyring: Keyring,
    acked: list[tuple[Position, bytes | None]],
    bad: list[tuple[Outgoing, Position]],
) -> list[Row]:
    log = Log.of(records, prefix)
    admission = admit_sources(log, signer, keyring)
    live = live_derived(log, signer)
    rows = [durability_row(acked, log), *routing_rows(log, admission)]
    rows += derived_rows(live, replayed(log, signer, prefix), from_sources(admission), admission)
    rows += bad_rows(bad, rejections(log, prefix), admission)
    return rows

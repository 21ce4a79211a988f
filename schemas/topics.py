"""The topic catalogue: names, keys and types are the public contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.envelope import Event

Origin = Literal["source", "derived", "internal"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    origin: Origin
    types: frozenset[str]

    def full_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"


# Agent-keyed topics share one partition count so Faust co-partitions them:
# a worker that owns partition p of `runs` also owns partition p of `reconciled`.
AGENT_PARTITIONS = 4
# Fleet-wide state (kill list, regime, policy) lives on one partition so every
# reader sees one total order.
FLEET_PARTITIONS = 1

_KILL_TYPES = frozenset({"agent.killed", "agent.revived", "strategy.killed", "strategy.revived"})

CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec("runs", "agent", AGENT_PARTITIONS, "source", frozenset({"run.completed"})),
    TopicSpec("signals", "agent", AGENT_PARTITIONS, "source", frozenset({"signal.emitted"})),
    TopicSpec("prices", "symbol", AGENT_PARTITIONS, "source", frozenset({"price.observed"})),
    TopicSpec(
        "commands",
        "target",
        FLEET_PARTITIONS,
        "source",
        frozenset(
            {
                "kill.requested",
                "revive.requested",
                "policy.change.requested",
                "proposal.accept.requested",
                "proposal.reject.requested",
            }
        ),
    ),
    TopicSpec("regimes", "fleet", FLEET_PARTITIONS, "source", frozenset({"regime.changed"})),
    TopicSpec("policy", "fleet", FLEET_PARTITIONS, "source", frozenset({"policy.updated"})),
    # Proposals and what became of them: refused LLM output, an operator's rejection
    # (accepted ones become `agent.spawned` on `lineage`).
    TopicSpec(
        "proposals",
        "proposal_id",
        FLEET_PARTITIONS,
        "source",
        frozenset({"agent.proposed", "proposals.invalid", "proposal.rejected"}),
    ),
    # The scheduled reports' claims (one per job and period, before anything is sent),
    # the memos written and the emails dispatched: what makes a schedule send once.
    TopicSpec(
        "reports",
        "job",
        FLEET_PARTITIONS,
        "source",
        frozenset({"report.claimed", "memo.written", "email.dispatched"}),
    ),
    TopicSpec("reconciled", "agent", AGENT_PARTITIONS, "derived", frozenset({"signal.reconciled"})),
    TopicSpec(
        "unreconciled", "agent", AGENT_PARTITIONS, "derived", frozenset({"signal.unreconcilable"})
    ),
    TopicSpec(
        "confidence", "agent", AGENT_PARTITIONS, "derived", frozenset({"confidence.updated"})
    ),
    TopicSpec("decisions", "agent", AGENT_PARTITIONS, "derived", frozenset({"decision.made"})),
    TopicSpec("kills", "target", FLEET_PARTITIONS, "derived", _KILL_TYPES),
    TopicSpec(
        "allocations",
        "fleet",
        FLEET_PARTITIONS,
        "derived",
        frozenset({"allocation.updated", "strategy.trials"}),
    ),
    TopicSpec("orders", "agent", AGENT_PARTITIONS, "derived", frozenset({"order.intent"})),
    TopicSpec("lineage", "child", FLEET_PARTITIONS, "derived", frozenset({"agent.spawned"})),
    TopicSpec(
        "deadletter", "original key", FLEET_PARTITIONS, "derived", frozenset({"event.rejected"})
    ),
    # Signals and prices re-keyed by base asset, so one reconcile processor sees both for a
    # symbol in one order, whatever key their producers used.
    # Each processor input also carries the fleet facts it decides from, broadcast onto
    # every partition, so what it emits is a function of this one ordered input.
    TopicSpec(
        "reconcile-input",
        "symbol",
        AGENT_PARTITIONS,
        "internal",
        frozenset({"signal.emitted", "price.observed", "policy.updated"}),
    ),
    # Runs, signals and focus-horizon reconciliations by agent for the per-agent processor.
    TopicSpec(
        "agent-input",
        "agent",
        AGENT_PARTITIONS,
        "internal",
        frozenset(
            {"run.completed", "signal.emitted", "signal.reconciled", "policy.updated"}
            | _KILL_TYPES
            | {"allocation.updated", "strategy.trials"}
        ),
    ),
    # Everything the single fleet-level processor needs, in one total order.
    TopicSpec(
        "fleet-input",
        "fleet",
        FLEET_PARTITIONS,
        "internal",
        frozenset(
            {"agent.assessed", "regime.changed", "policy.updated", "agent.spawned"}
            | _KILL_TYPES
        ),
    ),
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in CATALOGUE}


def topic(name: str) -> TopicSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        known = ", ".join(BY_NAME)
        raise KeyError(f"unknown topic {name!r}; the catalogue has: {known}") from None


def _home_topics() -> dict[str, TopicSpec]:
    """Each type's home topic: the public one, or the internal one for internal-only types."""
    homes: dict[str, TopicSpec] = {}
    for spec in sorted(CATALOGUE, key=lambda s: s.origin == "internal"):
        for event_type in spec.types:
            homes.setdefault(event_type, spec)
    return homes


HOME_TOPIC: dict[str, TopicSpec] = _home_topics()


def home_topic(event_type: str) -> TopicSpec:
    """Where an event of this type is published (signals to `signals`, not `agent-input`)."""
    return HOME_TOPIC[event_type]


def topic_for(event: Event) -> TopicSpec:
    """The catalogue topic an event is published to: its type's home topic."""
    return home_topic(event.type)


def key_for(event: Event, spec: TopicSpec) -> bytes:
    """The record key: the payload field the catalogue names, or the literal "fleet"."""
    if spec.key == "fleet":
        return b"fleet"
    value = getattr(event, spec.key, None)
    return str(value if value is not None else event.event_id).encode()

"""The kill list: which agents and strategy classes are out, folded from kill facts.

`apply_kill_fact` is the only way the list changes, so the live table and a
projection replaying the `kills` topic fold to the same state. The latest kill
of a target replaces the earlier one (its reason, actor and `until` win).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from schemas.envelope import UtcDatetime, WireModel, format_utc
from schemas.events import KillFact, KillSource, TargetType
from streams.core.kill_facts import REVIVE_MODELS, is_kill, kill_fact, target_type_of


class KillEntry(WireModel):
    """A target currently on the list: who killed it, why, when, and until when."""

    target_type: TargetType
    target: str
    source: KillSource
    reason: str
    actor: str
    since: UtcDatetime
    until: UtcDatetime | None = None
    event_id: uuid.UUID

    @classmethod
    def of(cls, fact: KillFact) -> KillEntry:
        """The entry a kill fact puts on the list."""
        return cls(
            target_type=target_type_of(fact),
            target=fact.target,
            source=fact.source,
            reason=fact.reason,
            actor=fact.actor,
            since=fact.ts,
            until=fact.until,
            event_id=fact.event_id,
        )

    def active(self, at: datetime) -> bool:
        """A timed kill stops applying at its `until`, before the revive fact is even folded."""
        return self.until is None or at < self.until

    def describe(self) -> str:
        """Who stopped the target, until when (a timed kill is a pause), and why."""
        what = "agent" if self.target_type == "agent" else "strategy class"
        if self.until is None:
            text = f"{what} {self.target} killed by {self.actor} ({self.source})"
        else:
            text = (
                f"{what} {self.target} paused by {self.actor} ({self.source}) "
                f"until {format_utc(self.until)}"
            )
        if self.reason:
            text += f": {self.reason}"
        return text


class KillRecord(WireModel):
    """One folded fact, kept for the audit trail (who did what, when)."""

    event_id: uuid.UUID
    type: str
    target_type: TargetType
    target: str
    source: KillSource
    reason: str
    actor: str
    ts: UtcDatetime
    until: UtcDatetime | None = None


class KillList(WireModel):
    """Frozen state, stored as JSON in a Faust table; replace it, never mutate it."""

    agents: dict[str, KillEntry] = Field(default_factory=dict)
    strategy_classes: dict[str, KillEntry] = Field(default_factory=dict)
    history: tuple[KillRecord, ...] = ()

    def entries(self, target_type: TargetType) -> dict[str, KillEntry]:
        return self.agents if target_type == "agent" else self.strategy_classes


def apply_kill_fact(kill_list: KillList, fact: KillFact) -> KillList:
    """Fold one fact; a fact already folded (same event_id) changes nothing.

    An expiry revive only lifts the very kill it expired: if the target was
    killed again in between, the newer kill stays.
    """
    if any(record.event_id == fact.event_id for record in kill_list.history):
        return kill_list
    target_type = target_type_of(fact)
    record = KillRecord(
        event_id=fact.event_id,
        type=fact.type,
        target_type=target_type,
        target=fact.target,
        source=fact.source,
        reason=fact.reason,
        actor=fact.actor,
        ts=fact.ts,
        until=fact.until,
    )
    entries = dict(kill_list.entries(target_type))
    current = entries.get(fact.target)
    if is_kill(fact):
        entries[fact.target] = KillEntry.of(fact)
    elif current is not None and (fact.source != "expiry" or fact.cause_id == current.event_id):
        del entries[fact.target]
    key = "agents" if target_type == "agent" else "strategy_classes"
    return kill_list.model_copy(update={key: entries, "history": (*kill_list.history, record)})


def active_kill(
    kill_list: KillList, agent: str, strategy_class: str | None, at: datetime
) -> KillEntry | None:
    """Return the kill that stops `agent` at `at`: its own first, else its class's."""
    entry = kill_list.agents.get(agent)
    if entry is not None and entry.active(at):
        return entry
    if strategy_class is not None:
        entry = kill_list.strategy_classes.get(strategy_class)
        if entry is not None and entry.active(at):
            return entry
    return None


def is_killed(kill_list: KillList, agent: str, strategy_class: str | None, at: datetime) -> bool:
    """True when the agent or its strategy class is on the list and not expired at `at`."""
    return active_kill(kill_list, agent, strategy_class, at) is not None


def kill_reason(
    kill_list: KillList, agent: str, strategy_class: str | None, at: datetime
) -> str | None:
    """Say which kill blocks the agent (agent or class, who, why), or None if none does."""
    entry = active_kill(kill_list, agent, strategy_class, at)
    return None if entry is None else entry.describe()


def expired(kill_list: KillList, at: datetime) -> list[KillFact]:
    """Return the revive facts for timed kills whose `until` <= `at`.

    The fact's time is the kill's `until`, not `at`, and its id derives from
    the kill it lifts: whenever the check runs, it produces the same fact.
    """
    facts: list[KillFact] = []
    for entries in (kill_list.agents, kill_list.strategy_classes):
        for target in sorted(entries):
            entry = entries[target]
            if entry.until is None or entry.until > at:
                continue
            facts.append(
                kill_fact(
                    REVIVE_MODELS[entry.target_type],
                    target=target,
                    source="expiry",
                    at=entry.until,
                    causes=(entry.event_id,),
                    reason=f"timed kill expired at {format_utc(entry.until)}",
                    cause_id=entry.event_id,
                )
            )
    return facts

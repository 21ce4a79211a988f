"""Build the kill-list facts the supervisor writes, so every rule makes them the same way.

Each fact's id is derived from its causes: a rule that runs twice on the same
input (a replay, an at-least-once redelivery) yields the same id, and the kill
list ignores the copy.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar

from schemas.envelope import derived_event_id
from schemas.events import (
    AgentKilled,
    AgentRevived,
    KillFact,
    KillSource,
    StrategyKilled,
    StrategyRevived,
    TargetType,
)

PRODUCER = "supervisor"

KILL_MODELS: dict[TargetType, type[KillFact]] = {
    "agent": AgentKilled,
    "strategy_class": StrategyKilled,
}
REVIVE_MODELS: dict[TargetType, type[KillFact]] = {
    "agent": AgentRevived,
    "strategy_class": StrategyRevived,
}

F = TypeVar("F", bound=KillFact)


def kill_fact(
    model: type[F],
    *,
    target: str,
    source: KillSource,
    at: datetime,
    causes: tuple[object, ...],
    reason: str = "",
    actor: str = PRODUCER,
    until: datetime | None = None,
    cause_id: uuid.UUID | None = None,
    **payload: Any,
) -> F:
    """Return a `model` fact whose id is uuid5 of its type, target and `causes`."""
    return model.create(
        event_id=derived_event_id(model.TYPE, target, *causes),
        ts=at,
        producer=PRODUCER,
        target=target,
        source=source,
        reason=reason,
        actor=actor,
        until=until,
        cause_id=cause_id,
        **payload,
    )


def target_type_of(fact: KillFact) -> TargetType:
    """Tell whether a fact is about an agent or a strategy class, from its type."""
    if isinstance(fact, AgentKilled | AgentRevived):
        return "agent"
    if isinstance(fact, StrategyKilled | StrategyRevived):
        return "strategy_class"
    raise ValueError(f"{type(fact).__name__} ({fact.type!r}) is not a kill or revive fact")


def is_kill(fact: KillFact) -> bool:
    """True for a kill, False for a revive."""
    return isinstance(fact, AgentKilled | StrategyKilled)

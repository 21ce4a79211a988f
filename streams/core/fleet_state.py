"""Fleet-wide facts every worker needs: policy, regime and kill list, folded from the log.

They live on single-partition topics (`policy`, `regimes`, `kills`), so every
reader sees one total order and folds to the same `FleetState`. Policy and regime
are looked up by event time (`policy_at`, `regime_at`): a replay decides under
the policy that was in force then, not today's.
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pydantic import Field

from schemas.envelope import Event, WireModel
from schemas.events import (
    AllocationUpdated,
    KillFact,
    PolicyUpdated,
    RegimeChanged,
    StrategyTrials,
)
from schemas.policy import Policy
from streams.core.kill_list import KillList, apply_kill_fact

DEFAULT_POLICY_FILE = Path(__file__).parents[1] / "config" / "policy-v1.json"

E = TypeVar("E", bound=Event)

# Allocation ids remembered to drop redeliveries: at-least-once redelivers seconds of
# traffic, a handful of allocations.
ALLOCATION_IDS_KEPT = 64


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The policy before any `policy.updated` event: the versioned file shipped here."""
    return Policy.model_validate_json(DEFAULT_POLICY_FILE.read_bytes())


class FleetState(WireModel):
    policies: tuple[PolicyUpdated, ...] = ()
    regimes: tuple[RegimeChanged, ...] = ()
    kills: KillList = Field(default_factory=KillList)
    # The latest allocation in log order: what the execution gate sizes orders with.
    allocation: AllocationUpdated | None = None
    allocation_ids: tuple[uuid.UUID, ...] = ()  # the last ALLOCATION_IDS_KEPT folded
    # Agents ever tried per strategy class (the fleet processor's count only grows).
    class_trials: dict[str, int] = Field(default_factory=dict)


def _with_change(changes: tuple[E, ...], change: E) -> tuple[E, ...]:
    """Insert in event-time order (ties by id); a change seen before is ignored."""
    if any(known.event_id == change.event_id for known in changes):
        return changes
    return tuple(sorted((*changes, change), key=lambda c: (c.ts, str(c.event_id))))


def _latest_at(changes: Sequence[E], at: datetime) -> E | None:
    if not changes:
        return None
    if changes[-1].ts <= at:  # the usual case: the newest change is in force
        return changes[-1]
    index = bisect_right(changes, at, key=_change_time)
    return changes[index - 1] if index else None


def _change_time(change: Event) -> datetime:
    return change.ts


def apply_fleet_event(state: FleetState, event: Event) -> FleetState:
    """Fold one fleet fact; a fact already folded returns the very same state object, so a
    processor can tell a redelivery from news."""
    if isinstance(event, PolicyUpdated):
        policies = _with_change(state.policies, event)
        return (
            state if policies is state.policies else state.model_copy(update={"policies": policies})
        )
    if isinstance(event, RegimeChanged):
        regimes = _with_change(state.regimes, event)
        return state if regimes is state.regimes else state.model_copy(update={"regimes": regimes})
    if isinstance(event, KillFact):
        kills = apply_kill_fact(state.kills, event)
        return state if kills is state.kills else state.model_copy(update={"kills": kills})
    if isinstance(event, AllocationUpdated):
        return _with_allocation(state, event)
    if isinstance(event, StrategyTrials):
        if state.class_trials.get(event.strategy_class, 0) >= event.trials:
            return state
        trials = {**state.class_trials, event.strategy_class: event.trials}
        return state.model_copy(update={"class_trials": trials})
    return state


def _with_allocation(state: FleetState, event: AllocationUpdated) -> FleetState:
    """The latest allocation wins; a redelivered one (seen id, or older than the current)
    must not bring back weights that were already replaced."""
    current = state.allocation
    if event.event_id in state.allocation_ids or (current is not None and event.ts < current.ts):
        return state
    ids = (*state.allocation_ids, event.event_id)[-ALLOCATION_IDS_KEPT:]
    return state.model_copy(update={"allocation": event, "allocation_ids": ids})


def trials_of(state: FleetState, strategy_class: str | None) -> int:
    """Agents tried in the class, at least the one asking (an agent without a class is
    its own single trial)."""
    if strategy_class is None:
        return 1
    return max(1, state.class_trials.get(strategy_class, 1))


def weight_of(state: FleetState, agent: str) -> float:
    return state.allocation.weights.get(agent, 0.0) if state.allocation is not None else 0.0


def policy_at(state: FleetState, at: datetime) -> Policy:
    change = _latest_at(state.policies, at)
    if change is None:
        return default_policy()
    return _policy_of(change)


# Policies of recent changes, by the identity of the change (which the entry keeps alive, so
# the id cannot be reused): every event asks for the policy in force, and a change is
# frozen, so converting it once returns what converting it again would.
_POLICIES: dict[int, tuple[PolicyUpdated, Policy]] = {}
_POLICIES_KEPT = 64


def _policy_of(change: PolicyUpdated) -> Policy:
    entry = _POLICIES.get(id(change))
    if entry is None:
        policy = Policy.model_validate(change.model_dump(include=set(Policy.model_fields)))
        if len(_POLICIES) >= _POLICIES_KEPT:
            del _POLICIES[next(iter(_POLICIES))]
        entry = _POLICIES[id(change)] = (change, policy)
    return entry[1]


def regime_at(state: FleetState, at: datetime) -> str | None:
    change = _latest_at(state.regimes, at)
    return change.regime if change is not None else None

"""Fleet-wide facts every worker needs: policy, regime and kill list, folded from the log.

They live on single-partition topics (`policy`, `regimes`, `kills`), so every
reader sees one total order and folds to the same `FleetState`. Policy and regime
are looked up by event time (`policy_at`, `regime_at`): a replay decides under
the policy that was in force then, not today's.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pydantic import Field

from schemas.envelope import Event, WireModel
from schemas.events import AllocationUpdated, KillFact, PolicyUpdated, RegimeChanged
from schemas.policy import Policy
from streams.supervisor.kill_list import KillList, apply_kill_fact

DEFAULT_POLICY_FILE = Path(__file__).parent / "config" / "policy-v1.json"

E = TypeVar("E", bound=Event)


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


def _with_change(changes: tuple[E, ...], change: E) -> tuple[E, ...]:
    """Insert in event-time order (ties by id); a change seen before is ignored."""
    if any(known.event_id == change.event_id for known in changes):
        return changes
    return tuple(sorted((*changes, change), key=lambda c: (c.ts, str(c.event_id))))


def _latest_at(changes: Sequence[E], at: datetime) -> E | None:
    index = bisect_right([change.ts for change in changes], at)
    return changes[index - 1] if index else None


def apply_fleet_event(state: FleetState, event: Event) -> FleetState:
    if isinstance(event, PolicyUpdated):
        return state.model_copy(update={"policies": _with_change(state.policies, event)})
    if isinstance(event, RegimeChanged):
        return state.model_copy(update={"regimes": _with_change(state.regimes, event)})
    if isinstance(event, KillFact):
        return state.model_copy(update={"kills": apply_kill_fact(state.kills, event)})
    if isinstance(event, AllocationUpdated):
        return state.model_copy(update={"allocation": event})
    return state


def weight_of(state: FleetState, agent: str) -> float:
    return state.allocation.weights.get(agent, 0.0) if state.allocation is not None else 0.0


def policy_at(state: FleetState, at: datetime) -> Policy:
    change = _latest_at(state.policies, at)
    if change is None:
        return default_policy()
    return Policy.model_validate(change.model_dump(include=set(Policy.model_fields)))


def regime_at(state: FleetState, at: datetime) -> str | None:
    change = _latest_at(state.regimes, at)
    return change.regime if change is not None else None

"""The policy read model: its history from the log (who changed what, and why), the change
in force at a time, and diffs.

The policy in force at a time is the latest `policy.updated` (by event time) at or before
it, else the versioned default file (`streams.core.fleet_state.policy_at`, the same fold the
workers use). How a change applies to a policy, and its bounds, are `schemas.policy`'s.
Everything here is pure: `metasup policy` reads the log, calls these and prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from projections.log import LogRecord, events, merged_by_receipt
from schemas.envelope import format_utc
from schemas.events import PolicyUpdated
from schemas.policy import Policy
from streams.core.fleet_state import FleetState, apply_fleet_event
from streams.core.signing import FactVerifier

POLICY_TOPICS: Final = ("policy",)


# --- history ---------------------------------------------------------------------------


def fold_policies(records: Iterable[LogRecord], verifier: FactVerifier) -> FleetState:
    """Fold `policy` records (any order) into the fleet state: `state.policies` is the
    history of changes in event-time order, each `policy.updated` once; a change not
    signed by the supervisor is not part of it (the workers ignored it too)."""
    state = FleetState()
    for event in events(merged_by_receipt(records), verifier=verifier):
        state = apply_fleet_event(state, event)
    return state


def change_in_force(state: FleetState, at: datetime) -> PolicyUpdated | None:
    """The `policy.updated` that `policy_at(state, at)` comes from; None means the default."""
    earlier = [change for change in state.policies if change.ts <= at]
    return earlier[-1] if earlier else None


def describe_change(change: PolicyUpdated) -> str:
    """One line of the history: when, which version, who changed it and why."""
    reason = change.reason or "(no reason given)"
    return f"{format_utc(change.ts)}  version {change.version}  by {change.actor}: {reason}"


# --- diff ------------------------------------------------------------------------------


# The side of a diff where a key does not exist (a mapping entry added or removed).
MISSING: Final = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and (value or not prefix):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def policy_diff(old: Policy, new: Policy) -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every leaf that differs, by key; a missing side is MISSING."""
    before = _flatten(old.model_dump(mode="json"))
    after = _flatten(new.model_dump(mode="json"))
    return [
        (key, before.get(key, MISSING), after.get(key, MISSING))
        for key in sorted(before.keys() | after.keys())
        if before.get(key, MISSING) != after.get(key, MISSING)
    ]

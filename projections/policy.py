"""The policy read model: its history from the log, the change in force at a time, diffs,
and the next policy that dotted-key changes make.

The policy in force at a time is the latest `policy.updated` (by event time) at or before
it, else the versioned default file (`streams.core.fleet_state.policy_at`, the same fold the
workers use). Everything here is pure: `metasup policy` reads the log, calls these and
prints.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, get_args, get_origin

import orjson
from pydantic import BaseModel, ValidationError

from projections.log import LogRecord, events, merged_by_receipt
from schemas.events import PolicyUpdated
from schemas.policy import Policy
from streams.core.fleet_state import FleetState, apply_fleet_event

POLICY_TOPICS: Final = ("policy",)


class PolicyChangeError(ValueError):
    """A change that cannot apply to the policy; the message names the key."""


# --- history ---------------------------------------------------------------------------


def fold_policies(records: Iterable[LogRecord]) -> FleetState:
    """Fold `policy` records (any order) into the fleet state: `state.policies` is the
    history of changes in event-time order, each `policy.updated` once."""
    state = FleetState()
    for event in events(merged_by_receipt(records)):
        state = apply_fleet_event(state, event)
    return state


def change_in_force(state: FleetState, at: datetime) -> PolicyUpdated | None:
    """The `policy.updated` that `policy_at(state, at)` comes from; None means the default."""
    earlier = [change for change in state.policies if change.ts <= at]
    return earlier[-1] if earlier else None


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


# --- changes by dotted key -------------------------------------------------------------


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _field_type(key: str) -> Any:
    """The declared type at dotted `key` of Policy; unknown keys raise PolicyChangeError.

    Model fields must exist; below a dict-typed field any key is accepted (a new entry).
    """
    parts = key.split(".")
    if any(not part for part in parts):
        raise PolicyChangeError(f"{key!r} is not a dotted key like thresholds.window_days")
    kind: Any = Policy
    for index, part in enumerate(parts):
        here = ".".join(parts[:index]) or "the policy"
        if _is_model(kind):
            fields = kind.model_fields
            if part not in fields:
                close = difflib.get_close_matches(part, list(fields), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"it has {', '.join(fields)}"
                raise PolicyChangeError(f"unknown key {key!r}: {here} has no {part!r}; {hint}")
            kind = fields[part].annotation
        elif get_origin(kind) is dict:
            kind = get_args(kind)[1]
        else:
            raise PolicyChangeError(f"unknown key {key!r}: {here} is a value with no sub-keys")
    return kind


def leaf_changes(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    """A JSON object set on a sub-model becomes one change per field, each key checked."""
    kind = _field_type(key)
    if _is_model(kind) and isinstance(value, dict):
        if not value:
            raise PolicyChangeError(f"{key}: an empty object changes nothing")
        for name, item in value.items():
            yield from leaf_changes(f"{key}.{name}", item)
    else:
        yield key, value


def check_keys(changes: Sequence[tuple[str, Any]]) -> None:
    """Raise PolicyChangeError for the first unknown key, before anything is read or sent."""
    for key, value in changes:
        list(leaf_changes(key, value))


def _set_path(document: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = document
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            raise PolicyChangeError(f"{key}: {part!r} cannot hold sub-keys")
        node = child
    node[last] = value


def _describe(errors: ValidationError, changed: Mapping[str, Any]) -> str:
    lines = []
    for error in errors.errors():
        where = ".".join(str(part) for part in error["loc"]) or "policy"
        got = f" (got {orjson.dumps(changed[where]).decode()})" if where in changed else ""
        lines.append(f"{where}: {error['msg']}{got}")
    return "invalid policy value: " + "; ".join(lines)


def apply_policy_changes(policy: Policy, changes: Sequence[tuple[str, Any]]) -> Policy:
    """`policy` with each dotted-key change applied and `version` bumped by one.

    Unknown keys are rejected (the models ignore unknown fields, so they would
    otherwise vanish silently); the result is validated as a whole.
    """
    if not changes:
        raise PolicyChangeError("no changes given: pass KEY=VALUE, e.g. thresholds.window_days=14")
    document = policy.model_dump(mode="json")
    changed: dict[str, Any] = {}
    for key, value in changes:
        if key == "version":
            raise PolicyChangeError("version is not set by hand: each change adds one to it")
        for leaf, item in leaf_changes(key, value):
            _set_path(document, leaf, item)
            changed[leaf] = item
    document["version"] = policy.version + 1
    try:
        return Policy.model_validate(document)
    except ValidationError as errors:
        raise PolicyChangeError(_describe(errors, changed)) from None

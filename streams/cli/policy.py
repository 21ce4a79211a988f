"""`metasup policy show|set`: the policy in force, and changes to it as `policy.updated`.

The policy in force at a time is the latest `policy.updated` (by event time) at or
before it, else the versioned default file; `set` publishes the whole new policy.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, get_args, get_origin

import orjson
from pydantic import BaseModel, ValidationError

from projections.log import LogRecord, events, merged_by_receipt
from schemas.envelope import format_utc
from schemas.events import PolicyUpdated
from schemas.policy import Policy
from streams.cli.connection import LogUnavailable, read_log
from streams.cli.operator import PRODUCER, OperatorError, parse_time, publish_events
from streams.fleet_state import DEFAULT_POLICY_FILE, FleetState, apply_fleet_event, policy_at
from streams.settings import Settings

READ_TIMEOUT_S = 15.0

_SET_EPILOG = """\
examples:
  metasup policy set thresholds.window_days=14
  metasup policy set regime_caps.RISK_OFF=0.1 allocation.method=softmax --reason 'calmer sizing'
  metasup policy set capital.per_agent_cap_multiplier.momentum-7=0.5
  metasup policy set thresholds.horizons_hours='[1, 4, 24, 72]'

Keys are dotted paths into the policy (see `metasup policy show`); an unknown key is
an error, except new entries of the mappings regime_caps and
capital.per_agent_cap_multiplier. Values are read as JSON when they parse (14, 0.1,
true, [1, 4], {"a": 1}), else as text. `version` goes up by one on its own.
"""


class PolicyChangeError(ValueError):
    """A change that cannot apply to the policy; the message names the key."""


def parse_assignments(items: Sequence[str]) -> list[tuple[str, Any]]:
    """`KEY=VALUE` words as (key, value); the value is JSON when it parses, else the text."""
    changes: list[tuple[str, Any]] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PolicyChangeError(f"{item!r} is not of the form KEY=VALUE")
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        changes.append((key, value))
    return changes


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


def _leaf_changes(key: str, value: Any) -> Iterable[tuple[str, Any]]:
    """A JSON object set on a sub-model becomes one change per field, each checked."""
    kind = _field_type(key)
    if _is_model(kind) and isinstance(value, dict):
        if not value:
            raise PolicyChangeError(f"{key}: an empty object changes nothing")
        for name, item in value.items():
            yield from _leaf_changes(f"{key}.{name}", item)
    else:
        yield key, value


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
        for leaf, item in _leaf_changes(key, value):
            _set_path(document, leaf, item)
            changed[leaf] = item
    document["version"] = policy.version + 1
    try:
        return Policy.model_validate(document)
    except ValidationError as errors:
        raise PolicyChangeError(_describe(errors, changed)) from None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and (value or not prefix):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


_MISSING = object()


def policy_diff(old: Policy, new: Policy) -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every leaf that differs; a missing side is `_MISSING`."""
    before = _flatten(old.model_dump(mode="json"))
    after = _flatten(new.model_dump(mode="json"))
    return [
        (key, before.get(key, _MISSING), after.get(key, _MISSING))
        for key in sorted(before.keys() | after.keys())
        if before.get(key, _MISSING) != after.get(key, _MISSING)
    ]


def _show(value: Any) -> str:
    return "(unset)" if value is _MISSING else orjson.dumps(value).decode()


def fold_policies(records: Iterable[LogRecord]) -> FleetState:
    state = FleetState()
    for event in events(merged_by_receipt(records)):
        state = apply_fleet_event(state, event)
    return state


def change_in_force(state: FleetState, at: datetime) -> PolicyUpdated | None:
    """The `policy.updated` that `policy_at(state, at)` comes from; None means the default."""
    earlier = [change for change in state.policies if change.ts <= at]
    return earlier[-1] if earlier else None


def read_policy_log(settings: Settings, allow_durable: bool) -> tuple[FleetState, str]:
    """Fold the `policy` topic from the broker (or, for reading only, the durable log)."""
    try:
        records, where = read_log(settings, ["policy"], allow_durable, READ_TIMEOUT_S)
    except LogUnavailable as error:
        raise OperatorError(str(error)) from None
    return fold_policies(records), where


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "policy",
        help="show the policy in force, or change it",
        description="The policy: every threshold the supervisor decides with.",
    )
    actions = parser.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print the policy in force as JSON",
        description=(
            "Print the policy in force as JSON (standard output) and where it comes from "
            "(standard error): the default file or the policy.updated that set it."
        ),
    )
    show.add_argument(
        "--as-of",
        metavar="ISO",
        help="the policy in force at this time (ISO-8601 with a timezone); default: now",
    )
    show.set_defaults(run=run_show)
    change = actions.add_parser(
        "set",
        help="change policy values (publishes policy.updated)",
        description=(
            "Start from the policy in force now, apply KEY=VALUE changes, add one to\n"
            "`version`, validate, and publish the whole policy as policy.updated to `policy`."
        ),
        epilog=_SET_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    change.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="dotted key = value")
    change.add_argument(
        "--reason",
        default="",
        metavar="TEXT",
        help="why (stored on the event)"
        if "reason" in PolicyUpdated.model_fields
        else "why (printed only: policy.updated has no reason field)",
    )
    change.set_defaults(run=run_set)


def _provenance(change: PolicyUpdated | None) -> str:
    if change is None:
        return f"the default policy ({DEFAULT_POLICY_FILE})"
    return f"policy.updated {change.event_id} at {format_utc(change.ts)} by {change.producer}"


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    try:
        at = parse_time(args.as_of) if args.as_of else datetime.now(UTC)
        state, where = read_policy_log(settings, allow_durable=True)
    except OperatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    policy = policy_at(state, at)
    print(orjson.dumps(policy.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode())
    print(
        f"policy version {policy.version} in force at {format_utc(at)}: "
        f"{_provenance(change_in_force(state, at))} "
        f"({len(state.policies)} policy.updated in the {where})",
        file=sys.stderr,
    )
    return 0


def run_set(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    try:
        changes = parse_assignments(args.assignments)
        # Check the keys before touching the broker: a typo fails fast.
        for key, value in changes:
            list(_leaf_changes(key, value))
        state, _ = read_policy_log(settings, allow_durable=False)
        current = policy_at(state, now)
        updated = apply_policy_changes(current, changes)
    except (PolicyChangeError, OperatorError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, PolicyChangeError) else 1
    diff = [row for row in policy_diff(current, updated) if row[0] != "version"]
    if not diff:
        print(
            f"nothing to change: the policy in force (version {current.version}) already has "
            "these values; nothing sent"
        )
        return 0
    fields: dict[str, Any] = updated.model_dump()
    if "reason" in PolicyUpdated.model_fields:  # carried once the schema has the field
        fields["reason"] = args.reason
    event = PolicyUpdated.create(ts=now, producer=PRODUCER, **fields)
    if not publish_events(settings, [event]):
        return 1
    print(
        f"sent policy.updated {event.event_id} to policy: version {current.version} -> "
        f"{updated.version}, in force from {format_utc(now)}"
        + (f" (reason: {args.reason})" if args.reason else "")
    )
    for key, old, new in diff:
        print(f"  {key}: {_show(old)} -> {_show(new)}")
    return 0

"""`metasup policy show|set`: the policy in force and its history, and signed changes to it.

Arguments and printing only: the history, the change in force and the diff are computed
by the read model `projections.policy`, the next policy and its bounds by
`schemas.policy`. `set` checks the change against the policy in force (an out-of-bounds
value is refused here, with the bound named, and nothing is sent), then sends it as a
signed `policy.change.requested` to `commands`; the supervisor checks it again and
appends the signed `policy.updated`, carrying the actor and the reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from projections.policy import (
    MISSING,
    POLICY_TOPICS,
    change_in_force,
    describe_change,
    fold_policies,
    policy_diff,
)
from schemas.envelope import format_utc
from schemas.events import PolicyChangeRequested, PolicyUpdated
from schemas.policy import PolicyChangeError, apply_policy_changes, check_keys, partial_policy
from streams.cli.connection import LogUnavailable, read_log
from streams.cli.operator import (
    PRODUCER,
    OperatorError,
    add_actor,
    parse_time,
    send_event,
    signing_key,
)
from streams.core.fleet_state import DEFAULT_POLICY_FILE, FleetState, policy_at
from streams.fleet.commands import DEFAULT_MAX_AGE_S, new_nonce, sign
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier

READ_TIMEOUT_S = 15.0

_SET_EPILOG = """\
examples:
  metasup policy set thresholds.window_days=14 --reason 'faster reaction'
  metasup policy set regime_caps.RISK_OFF=0.1 allocation.method=softmax --reason 'calmer sizing'
  metasup policy set capital.per_agent_cap_multiplier.momentum-7=0.5 --reason 'new agent'
  metasup policy set thresholds.horizons_hours='[1, 4, 24, 72]' --reason 'add 3 days'

Keys are dotted paths into the policy (see `metasup policy show`); an unknown key is
an error, except new entries of the mappings regime_caps and
capital.per_agent_cap_multiplier. Values are read as JSON when they parse (14, 0.1,
true, [1, 4], {"a": 1}), else as text. `version` goes up by one on its own. Every value
has bounds (schemas/policy.py: rates and caps in [0, 1], window_days >= 0, ...); a value
outside them is refused with the bound named, and nothing is sent.

The change is signed with your operator key (`metasup keys new`), like kill/revive.
"""


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


def _show(value: Any) -> str:
    return "(unset)" if value is MISSING else orjson.dumps(value).decode()


def read_policy_log(settings: Settings, allow_durable: bool) -> tuple[FleetState, str]:
    """Fold the `policy` topic from the broker (or, for reading only, the durable log); only
    changes signed by the supervisor count."""
    try:
        records, where = read_log(settings, list(POLICY_TOPICS), allow_durable, READ_TIMEOUT_S)
    except LogUnavailable as error:
        raise OperatorError(str(error)) from None
    return fold_policies(records, load_verifier(settings)), where


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
        help="change policy values (sends a signed policy.change.requested)",
        description=(
            "Start from the policy in force now, apply KEY=VALUE changes, add one to\n"
            "`version` and check every bound; then send the changes, signed with your\n"
            "operator key, as policy.change.requested to `commands`. The supervisor\n"
            "checks them again and appends the new policy as policy.updated to `policy`."
        ),
        epilog=_SET_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    change.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="dotted key = value")
    change.add_argument(
        "--reason", required=True, metavar="TEXT", help="why (stored on policy.updated)"
    )
    add_actor(change)
    change.set_defaults(run=run_set)


def _provenance(change: PolicyUpdated | None) -> str:
    if change is None:
        return f"the default policy ({DEFAULT_POLICY_FILE})"
    return f"policy.updated {change.event_id} at {format_utc(change.ts)} by {change.actor}"


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    try:
        at = parse_time(args.as_of) if args.as_of else datetime.now(UTC)
        state, where = read_policy_log(settings, allow_durable=True)
    except OperatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    policy = policy_at(state, at)
    in_force = change_in_force(state, at)
    print(orjson.dumps(policy.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode())
    print(
        f"policy version {policy.version} in force at {format_utc(at)}: "
        f"{_provenance(in_force)} ({len(state.policies)} policy.updated in the {where})",
        file=sys.stderr,
    )
    for change in state.policies:
        mark = "  <- in force" if change is in_force else ""
        print(f"  {describe_change(change)}{mark}", file=sys.stderr)
    return 0


def run_set(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    try:
        changes = parse_assignments(args.assignments)
        check_keys(changes)  # before touching the broker: a typo fails fast
        actor, secret = signing_key(settings, args.actor)
    except (ValueError, orjson.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        state, _ = read_policy_log(settings, allow_durable=False)
    except OperatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    current = policy_at(state, now)
    try:
        updated = apply_policy_changes(current, changes)  # every bound, before sending
    except PolicyChangeError as error:
        print(f"error: {error}; nothing sent", file=sys.stderr)
        return 2
    diff = [row for row in policy_diff(current, updated) if row[0] != "version"]
    if not diff:
        print(
            f"nothing to change: the policy in force (version {current.version}) already has "
            "these values; nothing sent"
        )
        return 0
    command = PolicyChangeRequested.create(
        ts=now,
        producer=PRODUCER,
        actor=actor,
        reason=args.reason,
        nonce=new_nonce(),
        changes=partial_policy(changes),
    )
    detail = (
        f"version {current.version} -> {updated.version}, in force from {format_utc(now)}, "
        f"actor {actor!r}, reason {args.reason!r}"
    )
    if not send_event(settings, sign(command, secret), detail):
        return 1
    for key, old, new in diff:
        print(f"  {key}: {_show(old)} -> {_show(new)}")
    print(
        "the supervisor verifies it (signature, bounds, within "
        f"{round(DEFAULT_MAX_AGE_S / 60)} minutes) and appends policy.updated to `policy`: "
        "`metasup policy show`; a refused change goes to `deadletter`"
    )
    return 0

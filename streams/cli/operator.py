"""`metasup kill|revive`: signed operator commands, sent to `commands`.

The supervisor verifies each command (signature, freshness, nonce) and turns a
valid one into a fact on `kills`; a refused one goes to `deadletter` with why.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import orjson

from schemas.envelope import Event, format_utc, to_utc
from schemas.events import KillRequested, OperatorCommand, ReviveRequested, TargetType
from schemas.topics import topic_for
from streams.broker.publisher import Publisher
from streams.cli.connection import resolve_bootstrap
from streams.cli.keys import keyring_file
from streams.fleet.commands import DEFAULT_MAX_AGE_S, load_keyring, new_nonce, sign
from streams.runtime.settings import Settings

PRODUCER = "metasup.cli"
ACTOR_ENV = "METASUP_OPERATOR_ACTOR"
SEND_TIMEOUT_S = 30.0

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")

_EPILOG = """\
examples:
  metasup kill momentum-7 --reason 'runaway losses'
  metasup kill momentum-7 --reason 'pause for data fix' --until 2h
  metasup kill --strategy mean_reversion --reason 'regime mismatch' --until 2024-06-01T00:00Z
  metasup revive momentum-7 --reason 'data fixed'

The command is signed with the actor's key (see `metasup keys new`): --actor, else
$METASUP_OPERATOR_ACTOR, else the only actor in the keyring. The supervisor accepts
it only if the signature is valid and it arrives within {max_age} minutes. The result is a
fact on `kills` (`metasup subscribe kills`); a refusal goes to `deadletter`
(`metasup tail deadletter`).
"""


class OperatorError(ValueError):
    """A problem the operator can fix; the message says how."""


def parse_time(text: str) -> datetime:
    """An ISO-8601 time with a timezone (`Z` or an offset), as UTC; naive times are refused."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OperatorError(
            f"{text!r} is not an ISO-8601 time (e.g. 2024-06-01T12:00:00Z)"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise OperatorError(f"{text!r} has no timezone: add 'Z' for UTC or an offset like +02:00")
    return to_utc(value)


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `1d`, `1w`, `90s` or combinations such as `1h30m`."""
    compact = text.strip().replace(" ", "")
    if not _DURATION.fullmatch(compact):
        raise OperatorError(f"{text!r} is not a duration like 30m, 2h, 1d or 1h30m")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(compact))
    if seconds <= 0:
        raise OperatorError(f"duration {text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def parse_until(text: str, now: datetime) -> datetime:
    """When a timed kill ends: `now` plus a duration (30m, 2h, 1d), or an ISO-8601 time with
    a timezone. The result is UTC and strictly after `now`."""
    stripped = text.strip()
    if _DURATION.fullmatch(stripped.replace(" ", "")):
        return to_utc(now) + parse_duration(stripped)
    until = parse_time(stripped)
    if until <= now:
        raise OperatorError(f"--until {format_utc(until)} is not in the future")
    return until


def resolve_actor(
    explicit: str | None, from_env: str | None, keyring: Mapping[str, bytes], where: str
) -> str:
    """Who signs: --actor, else $METASUP_OPERATOR_ACTOR, else the keyring's only actor."""
    if not keyring:
        raise OperatorError(
            f"no operator keyring ({where} has no keys): run `metasup keys new` first"
        )
    actor = explicit or from_env
    if actor:
        if actor not in keyring:
            known = ", ".join(sorted(keyring))
            raise OperatorError(
                f"actor {actor!r} has no key in {where} (actors: {known}); "
                f"create one with `metasup keys new --actor {actor}`"
            )
        return actor
    if len(keyring) > 1:
        known = ", ".join(sorted(keyring))
        raise OperatorError(
            f"the keyring ({where}) has several actors ({known}): "
            f"choose one with --actor or {ACTOR_ENV}"
        )
    return next(iter(keyring))


def signing_key(settings: Settings, explicit: str | None) -> tuple[str, bytes]:
    """The actor who signs and their secret: `explicit` (--actor), else
    $METASUP_OPERATOR_ACTOR, else the only actor in the keyring."""
    where = (
        "METASUP_OPERATOR_KEYS"
        if settings.operator_keys is not None
        else str(keyring_file(settings))
    )
    keyring = load_keyring(settings.keyring_source())
    actor = resolve_actor(explicit, os.environ.get(ACTOR_ENV), keyring, where)
    return actor, keyring[actor]


def build_command(
    kind: type[KillRequested] | type[ReviveRequested],
    target_type: TargetType,
    target: str,
    reason: str,
    actor: str,
    secret: bytes,
    now: datetime,
    until: datetime | None = None,
) -> OperatorCommand:
    """A signed kill/revive request stamped `now`, with a fresh nonce."""
    command = kind.create(
        ts=now,
        producer=PRODUCER,
        target_type=target_type,
        target=target,
        reason=reason,
        actor=actor,
        nonce=new_nonce(),
        until=until,
    )
    return sign(command, secret)


async def send_events(bootstrap: str, prefix: str, events: Sequence[Event]) -> None:
    """Publish each event to its home topic; the producer is closed even if start fails."""
    publisher = Publisher(bootstrap, prefix)
    try:
        await publisher.start()
        for event in events:
            await publisher.publish(event)
    finally:
        await publisher.stop()


def publish_events(settings: Settings, events: Sequence[Event]) -> bool:
    """Send `events` to their home topics; on failure say why and return False."""
    bootstrap = resolve_bootstrap(settings)
    try:
        asyncio.run(
            asyncio.wait_for(
                send_events(bootstrap, settings.topic_prefix, events), timeout=SEND_TIMEOUT_S
            )
        )
    except Exception as error:
        detail = str(error) or type(error).__name__
        print(
            f"error: could not send to the broker at {bootstrap} ({detail}); "
            "is it running (`metasup up`)?",
            file=sys.stderr,
        )
        return False
    return True


def send_event(settings: Settings, event: Event, detail: str) -> bool:
    """Publish one event and print `sent <type> <id> to <topic>: <detail>`; on failure say
    why and return False."""
    if not publish_events(settings, [event]):
        return False
    print(f"sent {event.type} {event.event_id} to {topic_for(event).name}: {detail}")
    return True


def _add_target(parser: argparse.ArgumentParser, verb: str) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("agent", nargs="?", metavar="AGENT", help=f"the agent to {verb}")
    target.add_argument(
        "--strategy", metavar="CLASS", help=f"{verb} a whole strategy class instead of an agent"
    )


def add_actor(parser: argparse.ArgumentParser) -> None:
    """The --actor option of every signed command."""
    parser.add_argument(
        "--actor",
        metavar="NAME",
        help=f"sign as NAME (default: ${ACTOR_ENV}, else the only actor in the keyring)",
    )


def _command_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], verb: str, what: str
) -> argparse.ArgumentParser:
    """The parser of one signed command (`kill`, `revive`), with its target arguments."""
    parser = commands.add_parser(
        verb,
        help=f"ask the supervisor to {verb} {what} (signed command)",
        description=f"Send a signed {verb}.requested to `commands`.",
        epilog=_EPILOG.format(max_age=round(DEFAULT_MAX_AGE_S / 60)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target(parser, verb)
    return parser


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kill = _command_parser(commands, "kill", "an agent or a strategy class")
    kill.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the log)")
    kill.add_argument(
        "--until",
        metavar="WHEN",
        help="a timed kill: a duration from now (30m, 2h, 1d) or an ISO-8601 time with a "
        "timezone (2024-06-01T12:00Z); the supervisor revives it then. Default: until revived",
    )
    add_actor(kill)
    kill.set_defaults(run=run, command_kind=KillRequested)

    revive = _command_parser(commands, "revive", "a killed agent or strategy class")
    revive.add_argument("--reason", default="", metavar="TEXT", help="why (kept in the log)")
    add_actor(revive)
    revive.set_defaults(run=run, command_kind=ReviveRequested, until=None)


def run(args: argparse.Namespace, settings: Settings) -> int:
    kind: type[KillRequested] | type[ReviveRequested] = args.command_kind
    target_type: TargetType = "strategy_class" if args.strategy else "agent"
    target: str = (args.strategy or args.agent or "").strip()
    if not target:
        print("error: the agent or strategy class name is empty", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    try:
        until = parse_until(args.until, now) if args.until else None
        actor, secret = signing_key(settings, args.actor)
    except (ValueError, orjson.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    command = build_command(kind, target_type, target, args.reason, actor, secret, now, until)
    what = "strategy class" if target_type == "strategy_class" else "agent"
    timing = f" until {format_utc(until)}" if until is not None else ""
    reason = f", reason {command.reason!r}" if command.reason else ""
    if not send_event(settings, command, f"{what} {target!r}{timing}, actor {actor!r}{reason}"):
        return 1
    print(
        "the supervisor verifies it and records the result on `kills`: follow it with "
        "`metasup subscribe kills` (or `metasup tail kills --no-follow`); "
        "a refused command goes to `deadletter`"
    )
    return 0

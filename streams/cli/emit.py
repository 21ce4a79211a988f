"""`metasup emit FILE|-`: validate JSON events and send each to its catalogue topic."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator

import orjson

from schemas.codec import RejectedRecord, decode_event
from schemas.envelope import Event
from schemas.events import GovernanceFact
from schemas.topics import topic_for
from streams.broker.publisher import Publisher
from streams.cli.connection import resolve_bootstrap
from streams.runtime.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "emit", help="validate and send JSON events (a JSON array or one object per line)"
    )
    parser.add_argument("source", help="a file path, or - for standard input")
    parser.set_defaults(run=run)


def documents(text: str) -> Iterator[tuple[str, bytes]]:
    """(where, raw JSON) for each event: a JSON array, or one object per line."""
    stripped = text.strip()
    if stripped.startswith("["):
        for index, item in enumerate(orjson.loads(stripped), start=1):
            yield f"item {index}", orjson.dumps(item)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"line {number}", line.encode()


async def send(bootstrap: str, prefix: str, events: list[Event]) -> None:
    publisher = Publisher(bootstrap, prefix)
    await publisher.start()
    try:
        for event in events:
            await publisher.publish(event)
    finally:
        await publisher.stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.source == "-":
        text = sys.stdin.read()
    else:
        with open(args.source) as source:
            text = source.read()
    events: list[Event] = []
    failures = 0
    try:
        parsed = list(documents(text))
    except orjson.JSONDecodeError as error:
        print(f"error: the input is not valid JSON: {error}", file=sys.stderr)
        return 2
    for where, raw in parsed:
        try:
            event = decode_event(raw)
        except RejectedRecord as error:
            failures += 1
            print(f"error: {where}: {error}", file=sys.stderr)
            continue
        spec = topic_for(event)
        if spec.origin != "source" or isinstance(event, GovernanceFact):
            failures += 1
            print(
                f"error: {where}: {event.type} goes to `{spec.name}`, which only the "
                "supervisor writes (operators send signed commands to `commands`: "
                "`metasup kill|revive|policy set`)",
                file=sys.stderr,
            )
            continue
        events.append(event)
    if failures:
        print(f"nothing sent: fix the {failures} invalid event(s) above", file=sys.stderr)
        return 1
    asyncio.run(send(resolve_bootstrap(settings), settings.topic_prefix, events))
    for event in events:
        print(f"sent {event.type} {event.event_id} to {topic_for(event).name}")
    return 0

"""`metasup tail TOPIC` (alias `subscribe`): one JSON line per record, old or live."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys

import orjson

from streams.broker.consumers import assigned_consumer
from streams.broker.offsets import true_end_offsets
from streams.cli.connection import resolve_bootstrap
from streams.runtime.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, helptext in (
        ("tail", "print a topic as JSON lines"),
        ("subscribe", "follow a topic live (same as tail --live)"),
    ):
        parser = commands.add_parser(name, help=helptext)
        parser.add_argument("topic", help="a catalogue topic, e.g. signals or decisions")
        parser.add_argument(
            "--live",
            action="store_true",
            default=name == "subscribe",
            help="only records that arrive from now on",
        )
        parser.add_argument(
            "--no-follow",
            action="store_true",
            help="stop at the current end instead of waiting for more",
        )
        parser.add_argument(
            "--meta", action="store_true", help="wrap each line with partition, offset and key"
        )
        parser.set_defaults(run=run)


def render(value: bytes | None, key: bytes | None, partition: int, offset: int, meta: bool) -> str:
    try:
        payload: object = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        payload = {"_not_json_base64": base64.b64encode(value or b"").decode()}
    if meta:
        payload = {
            "partition": partition,
            "offset": offset,
            "key": key.decode(errors="replace") if key else None,
            "value": payload,
        }
    return orjson.dumps(payload).decode()


async def tail(bootstrap: str, topic: str, live: bool, follow: bool, meta: bool) -> None:
    async with assigned_consumer(bootstrap, [topic]) as (consumer, tps):
        ends = await true_end_offsets(consumer, tps)
        for tp in tps:
            consumer.seek(tp, ends[tp] if live else 0)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for m in messages:
                    print(render(m.value, m.key, m.partition, m.offset, meta), flush=True)
            if not follow and not batches:
                positions = [await consumer.position(tp) for tp in tps]
                if all(position >= ends[tp] for position, tp in zip(positions, tps, strict=True)):
                    return


def run(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = resolve_bootstrap(settings)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(
            tail(bootstrap, settings.topic(args.topic), args.live, not args.no_follow, args.meta)
        )
    sys.stdout.flush()
    return 0

"""`metasup replay`: the log read from its start (as of now, a receipt time or offsets),
streamed through the fleet projection every report is built from; prints where it read,
how much, how fast, and the position it reached."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from projections.fleet import REPORT_TOPICS, FleetProjection
from projections.replay import (
    AsOf,
    AsOfError,
    DurableLogSource,
    LogSource,
    Replay,
    format_offsets,
    parse_as_of_offsets,
)
from schemas.envelope import Event, format_utc
from schemas.topics import BY_NAME
from streams.cli.connection import open_log
from streams.cli.operator import OperatorError, parse_time
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier

_EPILOG = """\
examples:
  metasup replay
  metasup replay --as-of 2024-06-01T00:00:00Z
  metasup replay --as-of-offsets runs:0:1200,runs:1:990,kills:0:4
  metasup replay --topics runs,signals,reconciled --durable-log var/log.sqlite3

As of a time: the records the broker received at or before it (every partition is read
to its end: a producer's clock may step back). As of offsets: each named partition up to
that offset (exclusive); a partition not named is read to its end. The position printed
at the end, given back to --as-of-offsets, replays the same records (as of a time, the
same whenever each partition's receipt times never go back).
"""


@dataclass
class CountingProjection(FleetProjection):
    """The fleet projection, counting the events it admitted and folded."""

    folded: int = 0

    def apply(self, event: Event) -> None:
        self.folded += 1
        super().apply(event)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay",
        help="replay the log through the projections: counts, rate, time",
        description=(
            "Read the log from its start, stream it through the fleet projection the "
            "reports are built from, and say how much was read, how fast, and where it "
            "stopped. Reads the broker, or the durable log when the broker is down."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--topics",
        metavar="A,B",
        help="catalogue topics to replay (default: every public topic; the processors' "
        "internal inputs repeat them)",
    )
    as_of = parser.add_mutually_exclusive_group()
    as_of.add_argument(
        "--as-of", metavar="TIME", help="broker receipt time, ISO-8601 with a timezone"
    )
    as_of.add_argument(
        "--as-of-offsets",
        metavar="TOPIC:PARTITION:OFFSET,...",
        help="stop each named partition before OFFSET (others: read to the end)",
    )
    parser.add_argument(
        "--durable-log",
        type=Path,
        metavar="FILE",
        help="read this durable-log file (SQLite, as `metasup up` writes it) instead of the broker",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(run=run)


class TopicsError(ValueError):
    """--topics names something the catalogue does not have."""


def chosen_topics(text: str | None) -> list[str]:
    if text is None:
        return list(REPORT_TOPICS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        raise TopicsError(
            f"unknown topic(s) {', '.join(unknown) or '(none given)'} in --topics; "
            f"catalogue topics: {', '.join(BY_NAME)}"
        )
    return names


def chosen_as_of(args: argparse.Namespace, settings: Settings) -> AsOf:
    if args.as_of is not None:
        try:
            return AsOf(received_until=parse_time(args.as_of))
        except OperatorError as error:
            raise AsOfError(f"--as-of: {error}") from None
    if args.as_of_offsets is not None:
        return AsOf(offsets=parse_as_of_offsets(args.as_of_offsets, settings.topic_prefix))
    return AsOf()


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        names = chosen_topics(args.topics)
        as_of = chosen_as_of(args, settings)
    except (TopicsError, AsOfError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    verifier = load_verifier(settings)
    source: LogSource = (
        DurableLogSource(args.durable_log) if args.durable_log else open_log(settings)
    )
    projection = CountingProjection()
    started = time.perf_counter()
    with closing(source):
        replay = Replay(source, [settings.topic(n) for n in names], as_of, not args.no_progress)
        try:
            for record in replay:
                projection.apply_record(record, verifier, settings.topic_prefix)
        except AsOfError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    elapsed = time.perf_counter() - started
    print_summary(replay, projection, source.description, as_of, elapsed, settings.topic_prefix)
    return 0


def print_summary(
    replay: Replay,
    projection: CountingProjection,
    where: str,
    as_of: AsOf,
    elapsed: float,
    prefix: str,
) -> None:
    when = ""
    if as_of.received_until is not None:
        when = f", as of receipt time {format_utc(as_of.received_until)}"
    elif as_of.offsets:
        when = ", as of the offsets given"
    print(f"read from the {where}{when}")
    print(f"  {'topic':<16} {'records':>12}")
    for topic in replay.topics:
        print(f"  {topic.removeprefix(prefix):<16} {replay.records_by_topic[topic]:>12,}")
    records = replay.records_by_topic.total()
    rate = records / elapsed if elapsed > 0 else 0.0
    print(f"  {'total':<16} {records:>12,}")
    later = replay.records_read - records
    if later:
        print(f"  ({later:,} more records read were received after the as-of time)")
    rejected = projection.records - projection.folded
    print(
        f"{projection.folded:,} events folded through the fleet projection; {rejected:,} "
        "records not admitted (malformed, an unsigned or forged kill or policy fact, or an "
        "event time far ahead of its receipt: the workers refused them too)"
    )
    print(f"{elapsed:,.2f} s, {rate:,.0f} records/s")
    newest = replay.newest_received_at
    print(f"newest record received at {format_utc(newest) if newest else '(no records)'}")
    print("position reached (for --as-of-offsets):")
    print(f"  {format_offsets(replay.position, prefix) or '(no partitions)'}")

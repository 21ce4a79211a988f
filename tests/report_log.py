"""A recorded log for report tests: the demo desk's source events and everything the
pipeline derived from them, as broker records (one partition per topic, received at their
event time, governance facts signed by the session's supervisor key)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from projections.log import LogRecord, merged_by_receipt
from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.events import GovernanceFact
from schemas.topics import topic_for
from streams.demo.fleet import desk_policy
from streams.demo.replay import replay_desk
from streams.reconcile.csv_source import DEMO_CSV, price_events
from tests.keys import signed


def as_records(events: Iterable[Event]) -> list[LogRecord]:
    """Each event on its home topic's partition 0, received at its event time."""
    offsets: dict[str, int] = {}
    records = []
    for event in events:
        name = topic_for(event).name
        fact = signed(event) if isinstance(event, GovernanceFact) else event
        offset = offsets.get(name, 0)
        offsets[name] = offset + 1
        stamp = int(event.ts.timestamp() * 1000)
        records.append(LogRecord(name, 0, offset, stamp, encode_event(fact)))
    return list(merged_by_receipt(records))


@cache
def desk_log() -> tuple[LogRecord, ...]:
    """The 90-day demo desk (10 agents, 6 classes) on the default thresholds."""
    prices = list(price_events(DEMO_CSV, producer="metasup.demo", source="bitfinex"))
    desk = replay_desk(prices, desk_policy(prices[0].ts))
    derived = [routed.event for routed in desk.pipeline.emitted]
    return tuple(as_records([*desk.sources, *derived]))

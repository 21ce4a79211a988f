"""Reconciliation in Faust: one processor per symbol partition, over `reconcile-input`.

Signals and prices are re-keyed by base asset onto `reconcile-input` by their
intake agents, so the book of a symbol always lives on one partition whatever
key producers used. The book is a Faust table value (changelog-backed); the rule
is `streams.reconcile.rule`, the same function the projections replay.
"""

from __future__ import annotations

from typing import Any

import faust

from schemas.envelope import Event, derived_event_id
from schemas.events import PriceObserved, SignalEmitted, SignalUnreconcilable
from schemas.topics import topic
from streams.deadletter import accepted_events
from streams.fleet_state import policy_at
from streams.fleet_view import FleetView
from streams.outputs import FaustTopics, forward, send_events
from streams.reconcile.candles import base_asset
from streams.reconcile.rule import PRODUCER, Outcome, SymbolBook, Unreconcilable, apply_event
from streams.sharded_store import ShardedStore

Handlers = dict[str, list[Any]]

# Prices, pending and settled signals are stored per day (see streams.sharded_store).
BOOK_SHARDS = {"prices": "day:ts", "settled": "day:ts", "pending": "day:signal.ts"}


def outcome_event(outcome: Outcome, cause: Event) -> Event:
    """An Unreconcilable becomes a `signal.unreconcilable` fact with an id from its causes."""
    if not isinstance(outcome, Unreconcilable):
        return outcome
    return SignalUnreconcilable.create(
        event_id=derived_event_id("unreconcilable", outcome.signal_id, outcome.horizon_hours),
        ts=cause.ts,
        producer=PRODUCER,
        signal_id=outcome.signal_id,
        agent=outcome.agent,
        symbol=outcome.symbol,
        horizon_hours=outcome.horizon_hours,
        reason=str(outcome.reason),
    )


def register_reconcile(
    app: faust.App, topics: FaustTopics, handlers: Handlers, fleet: FleetView
) -> None:
    books = app.Table(
        "reconcile-books",
        key_type=bytes,
        value_type=bytes,
        partitions=topic("reconcile-input").partitions,
    )

    store = ShardedStore(books, SymbolBook, BOOK_SHARDS)

    async def to_reconcile(message: Any, event: Event) -> None:
        assert isinstance(event, SignalEmitted | PriceObserved)
        await forward(topics, "reconcile-input", base_asset(event.symbol), event)

    handlers["signals"].append(to_reconcile)
    handlers["prices"].append(to_reconcile)

    async def reconcile(stream: Any) -> None:
        await fleet.ready.wait()
        spec = topic("reconcile-input")
        async for message, event in accepted_events(stream, spec.types, topics["deadletter"]):
            book = store.load(message.key) or SymbolBook()
            thresholds = policy_at(fleet.state, event.ts).thresholds
            new_book, outcomes = apply_event(book, event, thresholds)
            # Emit first, then store: a crash in between re-emits the same ids (deduplicated
            # downstream) instead of losing them.
            await send_events(topics, [outcome_event(o, event) for o in outcomes])
            store.save(message.key, new_book)

    app.agent(topics["reconcile-input"], name="reconcile_signals")(reconcile)

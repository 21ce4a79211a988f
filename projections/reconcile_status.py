"""Reconciliation progress rebuilt from the log: pending, reconciled and unreconcilable
(with reasons) per symbol and horizon, and how far each symbol's price stream has come."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from schemas.envelope import Event
from schemas.events import PriceObserved, SignalEmitted, SignalReconciled, SignalUnreconcilable
from streams.core.fleet_state import FleetState, apply_fleet_event, policy_at
from streams.reconcile.candles import base_asset

STATUS_TOPICS = ("policy", "prices", "signals", "reconciled", "unreconciled")


@dataclass
class HorizonStatus:
    symbol: str
    horizon_hours: int
    signals: int = 0
    reconciled: int = 0
    unreconcilable: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def pending(self) -> int:
        return self.signals - self.reconciled - self.unreconcilable


@dataclass
class ReconcileStatus:
    """The counts folded one event at a time, so a live reader (the dashboard) keeps them as
    records arrive instead of rereading the log; each (signal, horizon) counts once,
    whatever the duplicates in the log."""

    rows: dict[tuple[str, int], HorizonStatus] = field(default_factory=dict)
    price_watermarks: dict[str, datetime] = field(default_factory=dict)
    # The policy in force decides a signal's horizons.
    fleet: FleetState = field(default_factory=FleetState)
    signals: set[object] = field(default_factory=set)
    settled: set[tuple[object, int]] = field(default_factory=set)

    def row(self, symbol: str, horizon: int) -> HorizonStatus:
        key = (base_asset(symbol), horizon)
        if key not in self.rows:
            self.rows[key] = HorizonStatus(*key)
        return self.rows[key]

    @property
    def pending(self) -> int:
        return sum(row.pending for row in self.rows.values())

    def apply(self, event: Event) -> None:
        self.fleet = apply_fleet_event(self.fleet, event)
        if isinstance(event, PriceObserved):
            symbol = base_asset(event.symbol)
            known = self.price_watermarks.get(symbol)
            self.price_watermarks[symbol] = max(known, event.ts) if known else event.ts
        elif isinstance(event, SignalEmitted) and event.event_id not in self.signals:
            self.signals.add(event.event_id)
            for horizon in policy_at(self.fleet, event.ts).thresholds.horizons_hours:
                self.row(event.symbol, horizon).signals += 1
        elif isinstance(event, SignalReconciled | SignalUnreconcilable):
            if (event.signal_id, event.horizon_hours) in self.settled:
                return
            self.settled.add((event.signal_id, event.horizon_hours))
            row = self.row(event.symbol, event.horizon_hours)
            if isinstance(event, SignalReconciled):
                row.reconciled += 1
            else:
                row.unreconcilable += 1
                row.reasons[event.reason] += 1


def reconcile_status(events: Iterable[Event]) -> ReconcileStatus:
    status = ReconcileStatus()
    for event in events:
        status.apply(event)
    return status

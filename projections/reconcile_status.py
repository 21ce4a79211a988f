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
    rows: dict[tuple[str, int], HorizonStatus] = field(default_factory=dict)
    price_watermarks: dict[str, datetime] = field(default_factory=dict)

    def row(self, symbol: str, horizon: int) -> HorizonStatus:
        key = (base_asset(symbol), horizon)
        if key not in self.rows:
            self.rows[key] = HorizonStatus(*key)
        return self.rows[key]


def reconcile_status(events: Iterable[Event]) -> ReconcileStatus:
    """Count each (signal, horizon) once, whatever the duplicates in the log."""
    status = ReconcileStatus()
    fleet = FleetState()
    signals: set[object] = set()
    settled: set[tuple[object, int]] = set()
    for event in events:
        fleet = apply_fleet_event(fleet, event)
        if isinstance(event, PriceObserved):
            symbol = base_asset(event.symbol)
            known = status.price_watermarks.get(symbol)
            status.price_watermarks[symbol] = max(known, event.ts) if known else event.ts
        elif isinstance(event, SignalEmitted) and event.event_id not in signals:
            signals.add(event.event_id)
            for horizon in policy_at(fleet, event.ts).thresholds.horizons_hours:
                status.row(event.symbol, horizon).signals += 1
        elif isinstance(event, SignalReconciled | SignalUnreconcilable):
            if (event.signal_id, event.horizon_hours) in settled:
                continue
            settled.add((event.signal_id, event.horizon_hours))
            row = status.row(event.symbol, event.horizon_hours)
            if isinstance(event, SignalReconciled):
                row.reconciled += 1
            else:
                row.unreconcilable += 1
                row.reasons[event.reason] += 1
    return status

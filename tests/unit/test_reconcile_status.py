"""Reconciliation progress folded one event at a time, as the dashboard keeps it live."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from projections.reconcile_status import ReconcileStatus, reconcile_status
from schemas.envelope import Event
from schemas.events import SignalEmitted, SignalReconciled, SignalUnreconcilable

AT = datetime(2026, 3, 2, 12, tzinfo=UTC)


def signal(symbol: str) -> SignalEmitted:
    return SignalEmitted.create(
        ts=AT,
        producer="test",
        agent="alpha",
        run_id=uuid.uuid4(),
        symbol=symbol,
        direction="LONG",
        confidence=0.6,
    )


def reconciled(of: SignalEmitted, horizon: int) -> SignalReconciled:
    return SignalReconciled.create(
        ts=AT + timedelta(hours=horizon),
        producer="test",
        signal_id=of.event_id,
        run_id=of.run_id,
        agent=of.agent,
        symbol=of.symbol,
        direction=of.direction,
        horizon_hours=horizon,
        entry_ts=AT,
        entry_price=100.0,
        exit_ts=AT + timedelta(hours=horizon),
        exit_price=101.0,
        realized_pnl_bps=100.0,
        confidence=of.confidence,
    )


def test_pending_is_kept_event_by_event_and_each_horizon_settles_once() -> None:
    btc, eth = signal("BTC"), signal("ETH")
    priced = reconciled(btc, 1)
    stale = SignalUnreconcilable.create(
        ts=AT + timedelta(hours=4),
        producer="test",
        signal_id=eth.event_id,
        agent="alpha",
        symbol="ETH",
        horizon_hours=4,
        reason="no price after the horizon",
    )
    log: list[Event] = [btc, eth, btc, priced, priced, stale]
    status = ReconcileStatus()
    pending = []
    for event in log:
        status.apply(event)
        pending.append(status.pending)
    # The default policy prices every signal at 1 h, 4 h and 24 h: 3 horizons a signal;
    # the redelivered signal and the redelivered reconciliation change nothing.
    assert pending == [3, 6, 6, 5, 5, 4]
    assert status.row("BTC", 1).reconciled == 1
    assert status.row("ETH", 4).reasons == {"no price after the horizon": 1}
    assert reconcile_status(log) == status

"""Issue 3: signals and prices in through Kafka, `reconciled` out, every value checked
against an independent computation of the rule, with duplicates and late signals."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from projections.log import events, merged_by_receipt, read_broker
from projections.reconcile_status import STATUS_TOPICS, reconcile_status
from schemas.envelope import Event
from schemas.events import PriceObserved, SignalEmitted, SignalReconciled, SignalUnreconcilable
from streams.broker.embedded import EmbeddedBroker
from tests.fleet_data import START, price_series
from tests.integration.stack import Worker, create_topics, produce, wait_for_events, worker_settings

HORIZONS = (1, 4, 24)
STALE = timedelta(hours=2)


def expected_outcome(
    signal: SignalEmitted, prices: list[PriceObserved], horizon: int
) -> tuple[datetime, float, datetime, float, float] | str | None:
    """The rule of SPEC section 5, written independently: a result, a reason, or None
    (not yet decidable: the price stream has not reached t0 + h). Under the default
    `stale_exit` policy (`next_open`) a stale exit is taken at the first price after
    t0 + h, what a trader would actually get."""
    end = signal.ts + timedelta(hours=horizon)
    if max(p.ts for p in prices) < end:
        return None
    before = [p for p in prices if p.ts <= signal.ts]
    if not before:
        return "no entry"
    entry = max(before, key=lambda p: p.ts)
    exit_ = max((p for p in prices if p.ts <= end), key=lambda p: p.ts)
    if signal.ts - entry.ts > STALE:
        return "stale entry"
    if end - exit_.ts > STALE:
        exit_ = min((p for p in prices if p.ts > end), key=lambda p: p.ts)
    ratio = exit_.price / entry.price if signal.direction == "LONG" else entry.price / exit_.price
    return entry.ts, entry.price, exit_.ts, exit_.price, (ratio - 1) * 10_000


async def test_every_reconciliation_matches_an_independent_computation(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(3)
    # 4 days of hourly prices with a 5-hour hole on day 2 (for stale exits).
    hourly = price_series(seed=11, hours=96)
    prices = [p for hour, p in enumerate(hourly) if not 40 <= hour < 45]
    signals = [
        SignalEmitted.create(
            ts=START + timedelta(minutes=rng.randrange(-90, 95 * 60)),
            producer="test",
            agent=rng.choice(["a", "b", "c"]),
            run_id=uuid.uuid4(),
            symbol="ETH",
            direction=rng.choice(["LONG", "SHORT"]),
            confidence=0.6,
        )
        for _ in range(120)
    ]
    # Prices in time order; signals anywhere: before their entry price, among the prices,
    # or after all of them (late); a quarter of both sent twice.
    stream: list[Event] = list(prices)
    for signal in signals:
        stream.insert(rng.randrange(len(stream) + 1), signal)
    stream += rng.sample(signals, 30) + rng.sample(prices, 20)
    await create_topics(broker, prefix)
    expected = {
        (s.event_id, h): outcome
        for s in signals
        for h in HORIZONS
        if (outcome := expected_outcome(s, prices, h)) is not None
    }
    reconciled_count = sum(1 for o in expected.values() if not isinstance(o, str))
    worker = Worker(broker, worker_settings(prefix, tmp_path))
    worker.start()
    try:
        await produce(broker, prefix, stream)
        found = await wait_for_events(broker, prefix, "reconciled", reconciled_count, 90)
        unreconciled = await wait_for_events(
            broker, prefix, "unreconciled", len(expected) - reconciled_count, 30
        )
        records = await read_broker(broker.bootstrap, [prefix + t for t in STATUS_TOPICS])
    finally:
        await worker.stop()
    got = {
        (r.signal_id, r.horizon_hours): (
            r.entry_ts,
            r.entry_price,
            r.exit_ts,
            r.exit_price,
            r.realized_pnl_bps,
        )
        for r in found
        if isinstance(r, SignalReconciled)
    }
    assert len(found) == len(got), "a (signal, horizon) was reconciled twice"
    wanted = {k: v for k, v in expected.items() if not isinstance(v, str)}
    assert got.keys() == wanted.keys()
    for key, (entry_ts, entry, exit_ts, exit_, pnl) in wanted.items():
        assert got[key][:4] == (entry_ts, entry, exit_ts, exit_)
        assert got[key][4] == pytest.approx(pnl, abs=1e-9)
    reasons = {
        (u.signal_id, u.horizon_hours): u.reason
        for u in unreconciled
        if isinstance(u, SignalUnreconcilable)
    }
    assert {k for k, v in expected.items() if isinstance(v, str)} == reasons.keys()
    assert any("no price at or before" in r for r in reasons.values())
    delayed = {
        (r.signal_id, r.horizon_hours)
        for r in found
        if isinstance(r, SignalReconciled) and r.exit_delayed
    }
    signal_ts = {s.event_id: s.ts for s in signals}
    exits_after_the_horizon = {
        (signal_id, h)
        for (signal_id, h), (_, _, exit_ts, _, _) in wanted.items()
        if exit_ts > signal_ts[signal_id] + timedelta(hours=h)
    }
    assert delayed == exits_after_the_horizon and delayed  # the hole on day 2 delays some
    status = reconcile_status(events(merged_by_receipt(records)))
    row = status.rows[("ETH", 24)]
    assert row.signals == len(signals)
    assert row.reconciled == sum(1 for (_, h), v in wanted.items() if h == 24)
    assert row.pending == sum(1 for s in signals if (s.event_id, 24) not in expected)

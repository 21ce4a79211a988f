"""The meta report over the demo desk's recorded log (90 days of real BTC prices, ten
agents), checked against computations made here from the raw events, and frozen.

The golden file `tests/golden/meta-desk.json` was read by hand once (the kills and their
reasons match the desk test's, the fleet figures match the checks below); rerun with
`METASUP_UPDATE_GOLDEN=1` to rewrite it after an intended change, and read the diff.
"""

from __future__ import annotations

import os
import uuid
from bisect import bisect_right
from datetime import timedelta
from functools import cache
from pathlib import Path

import orjson
import pytest

from projections.fleet import project_fleet
from projections.log import LogRecord, merged_by_receipt
from projections.reports.meta import MetaReport, meta_report, report_json
from schemas.codec import decode_event, encode_event
from schemas.envelope import Event
from schemas.events import (
    AgentKilled,
    AllocationUpdated,
    DecisionMade,
    KillFact,
    RunCompleted,
    SignalReconciled,
)
from tests.keys import SUPERVISOR_KEY
from tests.report_log import desk_log

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "meta-desk.json"
VERIFIER = SUPERVISOR_KEY.verifier


@cache
def desk_events() -> list[Event]:
    return [decode_event(record.value) for record in desk_log()]


@cache
def desk_report() -> MetaReport:
    return meta_report(project_fleet(desk_log(), VERIFIER))


def test_the_fleet_figures_are_the_trades_of_the_window_recomputed_here() -> None:
    report = desk_report()
    events = desk_events()
    clock = report.meta.event_time
    assert clock is not None
    start = clock - timedelta(days=report.meta.window_days)
    trades = {
        e.event_id: e
        for e in events
        if isinstance(e, SignalReconciled)
        and e.horizon_hours == report.meta.focus_horizon_hours
        and start < e.exit_ts <= clock
    }
    pnls = [t.realized_pnl_bps for t in trades.values()]
    assert report.fleet.trades == len(pnls) > 20
    assert report.fleet.pnl_bps == pytest.approx(sum(pnls), abs=1e-9)
    assert report.fleet.hit_rate == pytest.approx(sum(p > 0 for p in pnls) / len(pnls))
    assert report.meta.severity == ("high" if report.fleet.deployed.pnl_bps < 0 else "normal")


def test_the_deployed_portfolio_weights_each_trade_by_the_allocation_at_its_signal() -> None:
    """Independent of streams.fleet.deployed: the newest recorded allocation at or before
    each signal, its agent's weight (0 before the first), summed in trade order."""
    report = desk_report()
    events = desk_events()
    allocations = sorted(
        (e for e in events if isinstance(e, AllocationUpdated)), key=lambda a: a.ts
    )
    times = [a.ts for a in allocations]
    clock = report.meta.event_time
    assert clock is not None
    start = clock - timedelta(days=report.meta.window_days)
    trades = sorted(
        {
            (e.exit_ts, e.signal_id, e.event_id): e
            for e in events
            if isinstance(e, SignalReconciled)
            and e.horizon_hours == report.meta.focus_horizon_hours
            and start < e.exit_ts <= clock
        }.items()
    )
    cum = peak = worst = 0.0
    for _, trade in trades:
        signalled = trade.ts - timedelta(hours=trade.horizon_hours)
        index = bisect_right(times, signalled)
        weight = allocations[index - 1].weights.get(trade.agent, 0.0) if index else 0.0
        cum += trade.realized_pnl_bps * weight
        peak = max(peak, cum)
        worst = max(worst, peak - cum)
    deployed = report.fleet.deployed
    assert deployed.pnl_bps == pytest.approx(cum, abs=1e-9)
    assert deployed.max_drawdown_bps == pytest.approx(worst, abs=1e-9)
    assert deployed.current_drawdown_bps == pytest.approx(peak - cum, abs=1e-9)
    assert deployed.pnl_bps != report.fleet.pnl_bps  # weighting changes the figure


def test_agents_carry_the_recorded_decision_and_the_kill_in_force() -> None:
    report = desk_report()
    events = desk_events()
    latest: dict[str, DecisionMade] = {}
    for event in events:
        if isinstance(event, DecisionMade):
            latest[event.agent] = event
    rows = {row.agent: row for row in report.agents}
    assert set(rows) == {e.agent for e in events if isinstance(e, RunCompleted)}
    for agent, made in latest.items():
        assert (rows[agent].decision, rows[agent].reasons) == (made.decision, made.reasons)
    killed = {e.target for e in events if isinstance(e, AgentKilled) and e.until is None}
    assert killed and all(rows[agent].stopped is not None for agent in killed)
    kill_facts = [e for e in events if isinstance(e, KillFact)]
    assert len(report.kill_list.history) == len(kill_facts)
    assert all(row.signature_verified for row in report.kill_list.history)
    assert [r.ts for r in report.kill_list.history] == sorted(
        r.ts for r in report.kill_list.history
    )


def test_psr_dsr_and_contributions_reach_the_report() -> None:
    report = desk_report()
    latest = [e for e in desk_events() if isinstance(e, AllocationUpdated)][-1]
    rows = {row.agent: row for row in report.agents}
    assert any(row.stats.psr is not None and row.stats.dsr is not None for row in rows.values())
    for agent, contribution in latest.contributions.items():
        assert rows[agent].contribution_bps == contribution
    assert report.allocation is not None
    assert list(report.allocation.weights.values()) == sorted(
        report.allocation.weights.values(), reverse=True
    )


def test_the_same_records_give_the_same_bytes_and_redeliveries_change_nothing() -> None:
    first = report_json(desk_report())
    assert report_json(meta_report(project_fleet(desk_log(), VERIFIER))) == first
    log = list(desk_log())
    twice = list(merged_by_receipt([*log, *(_redelivered(r, len(log)) for r in log)]))
    doubled = meta_report(project_fleet(twice, VERIFIER))
    assert doubled.meta.records == 2 * len(log)
    assert doubled.model_copy(update={"meta": desk_report().meta}) == desk_report()


def _redelivered(record: LogRecord, shift: int) -> LogRecord:
    """The same value again, later in its partition (at-least-once redelivery)."""
    return LogRecord(record.topic, 1, record.offset + shift, record.timestamp_ms, record.value)


def test_a_forged_kill_is_listed_as_unverified_and_stops_nobody() -> None:
    log = list(desk_log())
    victim = "llm-trend"
    at = max(r.received_at for r in log)
    forged = AgentKilled.create(
        ts=at, producer="mallory", target=victim, source="operator", reason="forged"
    )
    record = LogRecord("kills", 0, 10_000, int(at.timestamp() * 1000), encode_event(forged))
    report = meta_report(project_fleet([*log, record], VERIFIER))
    row = next(r for r in report.kill_list.history if r.event_id == forged.event_id)
    assert not row.signature_verified and row.problem is not None
    assert "unsigned" in row.problem
    assert next(a for a in report.agents if a.agent == victim).stopped is None


def test_a_run_stamped_far_ahead_of_its_receipt_is_not_counted() -> None:
    """The intakes refused it (deadletter); the report must not count it either."""
    log = list(desk_log())
    run = next(e for e in desk_events() if isinstance(e, RunCompleted))
    received = max(r.received_at for r in log)
    ahead = run.model_copy(
        update={"ts": received + timedelta(days=30), "event_id": uuid.uuid5(run.event_id, "x")}
    )
    record = LogRecord("runs", 0, 10_000, int(received.timestamp() * 1000), encode_event(ahead))
    with_it = meta_report(project_fleet([*log, record], VERIFIER))
    without = desk_report()
    assert (with_it.fleet, with_it.agents) == (without.fleet, without.agents)


def test_the_report_is_frozen_in_the_golden_file() -> None:
    body = report_json(desk_report())
    if os.environ.get("METASUP_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(body)
    assert body == GOLDEN.read_bytes(), "meta report changed; see the module docstring"
    assert orjson.loads(body)["meta"]["records"] == len(desk_log())

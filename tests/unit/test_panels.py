"""The dashboard's panels: the same figures as the meta report, curves that end where the
figures stand and never hide a fall, each agent's health, and the feed."""

from __future__ import annotations

import base64
import math
from datetime import datetime, timedelta
from functools import cache

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.fleet import FleetProjection, project_fleet
from projections.log import LogRecord
from projections.panels import (
    CurvePoint,
    FeedItem,
    allocation_panel,
    curves_panel,
    dashboard_state,
    downsample,
)
from projections.reports.meta import AgentRow, meta_report, report_json
from schemas.codec import decode_event, encode_event
from schemas.envelope import derived_event_id
from schemas.events import (
    AgentKilled,
    Decision,
    Direction,
    EventRejected,
    OrderIntent,
    RunCompleted,
)
from tests.builders import policy_update
from tests.keys import SUPERVISOR_KEY, signed
from tests.report_events import (
    DAY,
    HOSTILE,
    T0,
    allocation,
    decision,
    folded,
    portfolio_log,
    run,
    trade,
)
from tests.report_log import desk_log


@cache
def desk() -> FleetProjection:
    return project_fleet(desk_log(), SUPERVISOR_KEY.verifier)


def worst_drawdown(points: list[CurvePoint]) -> float:
    return max(point.drawdown_bps for point in points)


# --- curves -------------------------------------------------------------------------------


def test_the_desk_curves_cover_the_window_and_end_at_the_report_figures() -> None:
    projection = desk()
    report = meta_report(projection)
    curves = curves_panel(projection)
    assert (curves.start, curves.end) == (projection.window_start(), projection.clock)
    assert curves.start is not None and curves.end is not None
    deployed = report.fleet.deployed
    portfolio = curves.portfolio
    assert portfolio.trades == deployed.trades == len(portfolio.points) > 0
    assert all(curves.start < p.ts <= curves.end for p in portfolio.points)
    assert portfolio.points[-1].equity_bps == deployed.pnl_bps
    assert portfolio.points[-1].drawdown_bps == deployed.current_drawdown_bps
    assert worst_drawdown(portfolio.points) == deployed.max_drawdown_bps
    rows = {row.agent: row for row in report.agents}
    assert curves.agents.keys() == rows.keys()
    traded = 0
    for agent, own in curves.agents.items():
        stats = rows[agent].stats
        assert own.trades == stats.trades
        if own.trades:
            traded += 1
            # The stats fold sums day by day, the curve trade by trade: the same up to
            # rounding.
            assert own.points[-1].equity_bps == pytest.approx(stats.pnl_sum_bps, abs=1e-9)
            assert worst_drawdown(own.points) == pytest.approx(stats.max_drawdown_bps, abs=1e-9)
    assert traded >= 2


def test_hand_worked_curves_of_a_small_desk() -> None:
    # portfolio_log: alpha holds half the capital; trades alpha +100, beta -40, alpha -300.
    curves = curves_panel(folded(portfolio_log()))
    assert [(p.equity_bps, p.drawdown_bps) for p in curves.portfolio.points] == [
        (50.0, 0.0),
        (50.0, 0.0),
        (-100.0, 150.0),
    ]
    assert [p.trade for p in curves.portfolio.points] == [1, 2, 3]
    assert [(p.equity_bps, p.drawdown_bps) for p in curves.agents["alpha"].points] == [
        (100.0, 0.0),
        (-200.0, 300.0),
    ]
    # A first loss is a drawdown from the starting line, not from the first point.
    assert [(p.equity_bps, p.drawdown_bps) for p in curves.agents["beta"].points] == [(-40.0, 40.0)]
    assert curves.agents["alpha"].points[0].ts == T0 + 2 * DAY


def test_a_downsampled_desk_curve_still_shows_its_deepest_fall_and_where_it_ends() -> None:
    projection = desk()
    deployed = meta_report(projection).fleet.deployed
    sampled = curves_panel(projection, max_points=8).portfolio
    assert sampled.trades == deployed.trades > 8
    assert len(sampled.points) <= 8
    assert sampled.points[-1].equity_bps == deployed.pnl_bps
    assert worst_drawdown(sampled.points) == deployed.max_drawdown_bps


def points_of(equities: list[float]) -> list[CurvePoint]:
    points, peak = [], 0.0
    for number, equity in enumerate(equities, 1):
        peak = max(peak, equity)
        points.append(
            CurvePoint(
                trade=number,
                ts=T0 + number * timedelta(minutes=1),
                equity_bps=equity,
                drawdown_bps=peak - equity,
            )
        )
    return points


def test_a_long_curve_is_cut_to_the_limit_keeping_a_short_sharp_crash() -> None:
    # 10,000 trades of a gentle rise with a three-trade crash in the middle: one point in
    # twenty is kept, and the crash must be among them.
    equities = [float(i) for i in range(10_000)]
    equities[6001:6004] = [-5000.0, -6000.0, -5500.0]
    points = points_of(equities)
    sampled = downsample(points, 500)
    assert len(sampled) <= 500
    assert sampled[0] == points[0] and sampled[-1] == points[-1]
    assert min(p.equity_bps for p in sampled) == -6000.0
    assert worst_drawdown(sampled) == 6000.0 + 6000.0  # from the peak 6000 before the crash
    assert max(p.equity_bps for p in sampled) == 9999.0
    assert downsample(points, 500) == sampled


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300),
    st.integers(5, 40),
)
def test_downsampling_keeps_the_ends_and_every_extreme_in_order(
    equities: list[float], max_points: int
) -> None:
    points = points_of(equities)
    sampled = downsample(points, max_points)
    assert len(sampled) <= max_points
    assert [p.trade for p in sampled] == sorted({p.trade for p in sampled})
    assert all(points[p.trade - 1] == p for p in sampled)
    assert sampled[0] == points[0] and sampled[-1] == points[-1]
    assert min(p.equity_bps for p in sampled) == min(equities)
    assert max(p.equity_bps for p in sampled) == max(equities)
    assert worst_drawdown(sampled) == worst_drawdown(points)
    if len(points) <= max_points:
        assert sampled == points


def test_a_fall_from_a_new_high_is_kept_though_it_is_not_the_lowest_point() -> None:
    # One run between the ends: its lowest (-100) and highest (2000) points do not show the
    # 500 bps fall after the high.
    sampled = downsample(points_of([0.0, -100.0, 2000.0, 1500.0, 1900.0, 1950.0]), 5)
    assert [p.equity_bps for p in sampled] == [0.0, -100.0, 2000.0, 1500.0, 1950.0]
    assert worst_drawdown(sampled) == 500.0


def test_a_limit_too_small_to_keep_the_extremes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        downsample(points_of([1.0] * 10), 4)


# --- portfolio, agents, allocation ----------------------------------------------------------


def test_the_dashboard_carries_the_report_figures_and_the_mode_of_the_newest_order() -> None:
    projection = desk()
    report = meta_report(projection)
    state = dashboard_state(projection)
    assert state.portfolio.fleet == report.fleet
    assert state.portfolio.meta == report.meta
    assert state.kill_list == report.kill_list
    assert state.lineage == report.lineage
    assert state.allocation.allocation == report.allocation
    orders = [decode_event(record.value) for record in desk_log() if record.topic == "orders"]
    newest = max(orders, key=lambda order: order.ts)
    assert isinstance(newest, OrderIntent)
    assert (state.portfolio.mode, state.portfolio.mode_since) == ("shadow", newest.ts)


def test_the_agents_table_is_the_report_rows_with_their_health() -> None:
    projection = desk()
    report = meta_report(projection)
    rows = dashboard_state(projection).agents.rows
    assert [AgentRow(**row.model_dump(exclude={"health"})) for row in rows] == report.agents
    for row in rows:
        assert (row.health.errors, row.health.error_rate) == (
            row.stats.errors,
            row.stats.error_rate,
        )
        assert row.health.consumer_lag is None  # the server's to fill
    assert any(row.health.errors > 0 for row in rows)


def order(at: datetime, mode: str) -> OrderIntent:
    return OrderIntent.create(
        ts=at,
        producer="test",
        signal_id=derived_event_id("test-order", at),
        agent="alpha",
        symbol="BTC",
        direction=Direction.LONG,
        target_usd=100.0,
        mode=mode,
        routed=mode == "live",
        reason="sized",
    )


def test_the_mode_is_that_of_the_newest_order_in_event_time_not_the_last_received() -> None:
    assert dashboard_state(folded(portfolio_log())).portfolio.mode is None
    projection = folded([*portfolio_log(), order(T0 + DAY, "shadow"), order(T0 + 2 * DAY, "live")])
    late_copy = order(T0 + DAY + timedelta(hours=1), "shadow")  # received last, older
    projection.apply(late_copy)
    portfolio = dashboard_state(projection).portfolio
    assert (portfolio.mode, portfolio.mode_since) == ("live", T0 + 2 * DAY)


def cost_run(agent: str, at: datetime, cost_usd: float) -> RunCompleted:
    return run(agent, 0, cost_usd=cost_usd).model_copy(
        update={"ts": at, "started_at": at, "run_id": derived_event_id("cost-run", agent, at)}
    )


def test_budget_burn_is_the_cost_of_the_clocks_utc_day_against_the_budget_in_force() -> None:
    day3 = T0 + 3 * DAY
    events = [
        policy_update(T0, daily_budget_usd=2.0),
        cost_run("alpha", day3 - timedelta(hours=1), 0.40),  # the day before: not today's
        cost_run("alpha", day3, 0.25),
        cost_run("alpha", day3 + timedelta(hours=6), 0.35),
        cost_run("beta", day3 + timedelta(hours=1), 2.50),
        trade("alpha", 1, 10.0),  # exits on day 2
        decision("alpha", day3 + timedelta(hours=12), Decision.HOLD),  # the clock: day 3
    ]
    rows = {row.agent: row for row in dashboard_state(folded(events)).agents.rows}
    alpha, beta = rows["alpha"].health.budget, rows["beta"].health.budget
    assert alpha is not None and beta is not None
    assert (alpha.day, alpha.budget_usd) == ("2025-03-04", 2.0)
    assert alpha.cost_usd == pytest.approx(0.60)
    assert alpha.burn == pytest.approx(0.30)
    assert beta.burn == pytest.approx(1.25)  # over budget shows above 1
    # With no budget in the policy there is nothing to burn against.
    unbudgeted = dashboard_state(folded(events[1:])).agents.rows[0].health.budget
    assert unbudgeted is not None
    assert (unbudgeted.budget_usd, unbudgeted.burn) == (None, None)
    assert unbudgeted.cost_usd == pytest.approx(0.60)


def rejected(offset: int, raw: bytes) -> EventRejected:
    return EventRejected.create(
        event_id=derived_event_id("rejected", "signals", 0, offset),
        ts=T0 + DAY,
        producer="test",
        source_topic="signals",
        partition=0,
        offset=offset,
        reason="invalid",
        raw_value=base64.b64encode(raw).decode("ascii"),
    )


def test_a_rejected_record_counts_against_the_agent_its_raw_value_names() -> None:
    bad_signal = rejected(1, orjson.dumps({"agent": "alpha", "confidence": 7}))
    events = [
        *portfolio_log(),
        bad_signal,
        bad_signal,  # redelivered: the same rejection
        rejected(2, orjson.dumps({"agent": "alpha"})),
        rejected(3, b"\xff not json"),
        rejected(4, orjson.dumps(["agent", "beta"])),
        rejected(5, orjson.dumps({"agent": 42})),
        rejected(6, orjson.dumps({"agent": "x" * 129})),  # longer than any agent name
        rejected(7, orjson.dumps({"agent": "nobody-else"})),
    ]
    state = dashboard_state(folded(events))
    health = {row.agent: row.health.deadletter for row in state.agents.rows}
    assert health == {"alpha": 2, "beta": 0}
    assert state.portfolio.fleet.deadletter == 7


def test_allocation_slices_are_the_weights_and_cash_even_for_an_agent_named_cash() -> None:
    before = allocation_panel(meta_report(folded([trade("alpha", 1, 5.0)])))
    assert [(s.label, s.weight, s.cash) for s in before.slices] == [("cash", 1.0, True)]
    at = T0 + DAY
    panel = allocation_panel(
        meta_report(folded([allocation(at, {"cash": 0.2, "alpha": 0.5, "idle": 0.0})]))
    )
    assert [(s.label, s.weight, s.cash) for s in panel.slices] == [
        ("alpha", 0.5, False),
        ("cash", 0.2, False),
        ("cash", pytest.approx(0.3), True),
    ]
    assert math.fsum(s.weight for s in panel.slices) == pytest.approx(1.0)


def test_hostile_agent_names_are_carried_as_they_were_written() -> None:
    events = [allocation(T0, dict.fromkeys(HOSTILE, 0.1))]
    events += [trade(name, k, 10.0 * k) for k, name in enumerate(HOSTILE, 1)]
    events += [decision(name, T0 + 9 * DAY, Decision.HOLD) for name in HOSTILE]
    state = orjson.loads(report_json(dashboard_state(folded(events))))
    assert sorted(row["agent"] for row in state["agents"]["rows"]) == sorted(HOSTILE)
    assert sorted(state["curves"]["agents"]) == sorted(HOSTILE)
    assert {s["label"] for s in state["allocation"]["slices"] if not s["cash"]} == set(HOSTILE)
    assert {item["decision"]["agent"] for item in state["feed"]["items"]} == set(HOSTILE)


# --- feed, determinism -----------------------------------------------------------------------


def subject(item: FeedItem) -> str:
    if item.decision is not None:
        return item.decision.agent
    assert item.kill is not None
    return item.kill.target


def test_the_feed_is_newest_first_a_kill_above_its_decision_and_forgeries_left_out() -> None:
    at = T0 + 5 * DAY
    killed = signed(AgentKilled.create(ts=at, producer="supervisor", target="alpha", source="auto"))
    forged = AgentKilled.create(ts=at + DAY, producer="mallory", target="beta", source="operator")
    projection = folded(
        [
            decision("alpha", T0 + DAY, Decision.HOLD),
            decision("beta", T0 + 2 * DAY, Decision.PROMOTE, Decision.HOLD),
            decision("alpha", at, Decision.KILL, Decision.HOLD, ["pnl_sum -200 bps"]),
            killed,
        ]
    )
    projection.apply_record(
        LogRecord("kills", 0, 9, int(forged.ts.timestamp() * 1000), encode_event(forged)),
        SUPERVISOR_KEY.verifier,
    )
    state = dashboard_state(projection)
    assert [row.target for row in state.kill_list.history] == ["alpha", "beta"]
    feed = [(item.kind, item.ts, subject(item)) for item in state.feed.items]
    assert feed == [
        ("kill", at, "alpha"),
        ("decision", at, "alpha"),
        ("decision", T0 + 2 * DAY, "beta"),
        ("decision", T0 + DAY, "alpha"),
    ]
    bounded = dashboard_state(projection, feed_size=2).feed
    assert (bounded.size, bounded.items) == (2, state.feed.items[:2])


def test_the_desk_feed_is_the_newest_of_its_decisions_and_kills() -> None:
    projection = desk()
    state = dashboard_state(projection, feed_size=10)
    times = [item.ts for item in state.feed.items]
    assert len(times) == 10 and times == sorted(times, reverse=True)
    decided = sorted(made.ts for made in projection.decision_history)
    killed = sorted(row.ts for row in state.kill_list.history)
    assert times == sorted(decided + killed, reverse=True)[:10]


def test_the_same_records_give_the_same_bytes() -> None:
    again = project_fleet(desk_log(), SUPERVISOR_KEY.verifier)
    first = report_json(dashboard_state(desk()))
    assert report_json(dashboard_state(again)) == first
    assert orjson.loads(first)["agents"]["rows"]

"""The engine benchmark's helpers at toy size: a deterministic generator, sane results.

No timing is asserted; only that the benchmark measures what it says it measures.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

from bench.engine import (
    START,
    FleetSpec,
    every_hours_for,
    fleet_stream,
    log_events,
    measure_window_case,
    replay_log,
    replay_spec,
    window_case,
    write_log,
)
from schemas.codec import decode_event, encode_event
from schemas.events import PolicyUpdated, RunCompleted, SignalEmitted


def test_generator_is_deterministic_and_in_event_time_order() -> None:
    spec = replay_spec(agents=4, symbols=2, seed=11)
    first = [encode_event(event) for event in log_events(spec, 300)]
    again = [encode_event(event) for event in log_events(spec, 300)]
    assert first == again
    assert len(first) == 300
    other = [encode_event(event) for event in log_events(replay_spec(4, 2, seed=12), 300)]
    assert other != first
    events = [decode_event(raw) for raw in first]
    assert isinstance(events[0], PolicyUpdated)
    assert events[0].thresholds.window_days == 30
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert len({e.event_id for e in events}) == len(events)
    assert {e.type for e in events} >= {"price.observed", "run.completed", "signal.emitted"}


def test_staggered_agents_each_act_every_k_hours() -> None:
    spec = FleetSpec(agents=10, every_hours=5, window_days=1)
    runs = [e for e in fleet_stream(spec, 10) if isinstance(e, RunCompleted)]
    assert len(runs) == 10 * 10 // 5
    assert len({run.agent for run in runs}) == 10
    for agent in {run.agent for run in runs}:
        hours = [run.ts for run in runs if run.agent == agent]
        assert len(hours) == 2 and hours[1] - hours[0] == timedelta(hours=5)
    assert every_hours_for(1_000, 90, 200_000) > 1
    assert every_hours_for(10, 1, 200_000) == 1


def test_replay_of_a_small_log_counts_everything(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = write_log(log_events(replay_spec(3, 1, seed=5), 150), path)
    assert log["events"] == 150 and log["bytes"] == path.stat().st_size
    assert log["first_ts"] == START.isoformat()
    floor = replay_log(path, "floor", chunk=40)
    replay = replay_log(path, "replay", chunk=40)
    for result in (floor, replay):
        assert result["events"] == 150 and result["complete"]
        assert result["events_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert floor["outputs"] == 0
    assert replay["outputs"] > 0
    assert "signal.reconciled" in replay["outputs_by_type"]


def test_window_case_fills_the_window_then_measures() -> None:
    case = window_case("toy", agents=2, window_days=1, every_hours=1, measure_events=30, seed=3)
    stream = list(itertools.islice(fleet_stream(case.spec, case.total_hours()), 5))
    assert isinstance(stream[0], PolicyUpdated) and stream[0].thresholds.window_days == 1
    result = measure_window_case(case, chunk=100)
    assert result["measured_events"] == 30
    assert result["measured_from"] >= case.measure_start().isoformat()
    assert result["fill_hours"] == 24 + 24 + 1
    signals = result["fill_events_by_type"][SignalEmitted.TYPE]
    assert 0 < signals <= 2 * result["fill_hours"]
    # A full 1-day window: about 24 signals per agent, each reconciled at 3 horizons.
    assert result["trades_per_agent_in_window"] > 24
    assert result["us_per_event"] > 0 and result["outputs_per_event"] > 0

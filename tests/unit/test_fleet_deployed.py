"""The portfolio as deployed: weights in force at a time, the series, its attribution."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.envelope import derived_event_id
from streams.fleet.deployed import (
    DeployedDay,
    DeployedTrade,
    WeightsAt,
    attribute_drawdown,
    contributions_bps,
    drawdown_bps,
    weights_at,
    with_deployed,
    with_weights,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def history(*entries: tuple[datetime, dict[str, float]]) -> tuple[WeightsAt, ...]:
    kept: tuple[WeightsAt, ...] = ()
    for at, weights in entries:
        kept = with_weights(kept, at, weights, None)
    return kept


def test_a_signal_before_the_first_allocation_is_in_cash() -> None:
    kept = history((T0, {"a": 0.5}))
    assert weights_at(kept, T0 - HOUR) == {}
    assert weights_at(kept, T0) == {"a": 0.5}  # in force from its own time
    assert weights_at(kept, T0 + 100 * HOUR) == {"a": 0.5}


def test_the_later_of_two_allocations_at_one_time_is_in_force() -> None:
    kept = history((T0 + HOUR, {"a": 0.2}), (T0, {"a": 1.0}), (T0, {"a": 0.4}))
    assert [entry.ts for entry in kept] == [T0, T0, T0 + HOUR]
    assert weights_at(kept, T0 + HOUR / 2) == {"a": 0.4}


def test_eviction_keeps_the_allocation_in_force_at_the_bound() -> None:
    kept = history((T0, {"a": 1.0}), (T0 + HOUR, {"a": 0.5}), (T0 + 3 * HOUR, {"a": 0.2}))

    kept = with_weights(kept, T0 + 4 * HOUR, {"a": 0.1}, keep_from=T0 + 2 * HOUR)

    assert [entry.ts for entry in kept] == [T0 + HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]
    assert weights_at(kept, T0 + 2 * HOUR) == {"a": 0.5}


def series(*pnls: tuple[str, float]) -> dict[str, DeployedDay]:
    """Weighted trades of the given agents, an hour apart from T0 + 1 h."""
    days: dict[str, DeployedDay] = {}
    for k, (agent, pnl) in enumerate(pnls, start=1):
        trade = DeployedTrade(
            event_id=derived_event_id("deployed", k),
            signal_id=uuid.UUID(int=k),
            exit_ts=T0 + k * HOUR,
            agent=agent,
            pnl_bps=pnl,
        )
        days = with_deployed(days, trade, None)
    return days


def test_the_attribution_runs_from_the_last_peak_to_the_lowest_point_since() -> None:
    # 0 -> +50 -> +100 (peak) -> -150 -> -200 (trough) -> -150: 250 below the peak now.
    days = series(("a", 50.0), ("b", 50.0), ("a", -250.0), ("c", -50.0), ("b", 50.0))
    end = T0 + 5 * HOUR

    attribution = attribute_drawdown(days, None, end)

    assert drawdown_bps(days, None, end) == pytest.approx(250.0)
    assert attribution.peak_to_trough_bps == pytest.approx(300.0)
    assert (attribution.peak_at, attribution.trough_at) == (T0 + 2 * HOUR, T0 + 4 * HOUR)
    assert attribution.by_agent_bps == {"a": -250.0, "c": -50.0}


def test_a_series_that_never_rose_is_measured_from_zero() -> None:
    days = series(("a", -100.0), ("b", -200.0))

    attribution = attribute_drawdown(days, None, T0 + 2 * HOUR)

    assert attribution.peak_at is None
    assert attribution.peak_to_trough_bps == pytest.approx(300.0)
    assert attribution.by_agent_bps == {"a": -100.0, "b": -200.0}


def test_the_window_starts_after_its_start_and_restarts_the_series() -> None:
    days = series(("a", -400.0), ("b", 30.0), ("a", -10.0))
    end = T0 + 3 * HOUR

    # (T0 + 1 h, end]: the first loss is out; from 0 to +30, then 10 below that peak.
    assert drawdown_bps(days, T0 + HOUR, end) == pytest.approx(10.0)
    assert contributions_bps(days, T0 + HOUR, end) == {"a": -10.0, "b": 30.0}
    assert contributions_bps(days, None, end) == {"a": -410.0, "b": 30.0}

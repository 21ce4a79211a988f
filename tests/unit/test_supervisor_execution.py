"""Execution gate: blocking, sizing with haircut and cap, shadow vs live routing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from schemas.envelope import derived_event_id
from schemas.events import Direction, OrderIntent, SignalEmitted
from schemas.policy import Policy
from streams.agents.execution import PaperBroker, dispatch, order_for_signal

POLICY = Policy()
SIGNAL = SignalEmitted.create(
    event_id=uuid.UUID("00000000-0000-0000-0000-000000000001"),
    ts=datetime(2024, 3, 1, tzinfo=UTC),
    agent="a",
    run_id=uuid.UUID("00000000-0000-0000-0000-000000000002"),
    symbol="BTC-USD",
    direction=Direction.LONG,
    confidence=0.5,
    strategy_class="momentum",
)


def test_killed_agent_is_blocked_with_the_kill_that_blocks_it() -> None:
    order = order_for_signal(SIGNAL, 0.4, 0.0, "strategy class momentum killed", "live", POLICY)
    assert (order.target_usd, order.routed) == (0.0, False)
    assert order.reason == "blocked: strategy class momentum killed"


def test_zero_weight_is_blocked() -> None:
    order = order_for_signal(SIGNAL, 0.0, 0.0, None, "live", POLICY)
    assert (order.target_usd, order.routed, order.reason) == (
        0.0,
        False,
        "blocked: allocation weight is 0",
    )


@pytest.mark.parametrize(
    ("weight", "drawdown", "target"),
    [
        (0.2, 0.0, 100.0),  # 1000 x 0.2 x 0.5
        (0.2, 149.9, 100.0),
        (0.2, 150.0, 50.0),  # haircut from exactly 150 bps
        (0.2, -200.0, 50.0),  # a signed drawdown counts by its size
        (0.5, 0.0, 250.0),  # exactly the cap
        (0.9, 0.0, 250.0),  # 450 capped at 250
        (0.9, 150.0, 225.0),  # haircut before the cap
    ],
)
def test_sizing(weight: float, drawdown: float, target: float) -> None:
    order = order_for_signal(SIGNAL, weight, drawdown, None, "shadow", POLICY)
    assert order.target_usd == pytest.approx(target)
    assert not order.routed


def test_reason_shows_the_arithmetic() -> None:
    order = order_for_signal(SIGNAL, 0.9, 150.0, None, "shadow", POLICY)
    assert order.reason == (
        "1000.00 USD x weight 0.9000 x confidence 0.500 x haircut 0.50 = 225.00 USD "
        "(agent drawdown 150.0 bps >= 150.0 bps); shadow mode, not routed"
    )
    capped = order_for_signal(SIGNAL, 0.9, 0.0, None, "shadow", POLICY)
    assert ", capped at 250.00 USD" in capped.reason


def test_order_identity_comes_from_the_signal() -> None:
    order = order_for_signal(SIGNAL, 0.2, 0.0, None, "live", POLICY)
    assert order.event_id == derived_event_id("order", SIGNAL.event_id)
    assert (order.signal_id, order.agent, order.strategy_class, order.symbol) == (
        SIGNAL.event_id,
        "a",
        "momentum",
        "BTC-USD",
    )
    assert order.ts == SIGNAL.ts and order.mode == "live" and order.routed


def test_only_live_unblocked_orders_reach_the_broker() -> None:
    broker = PaperBroker()
    live = dispatch(order_for_signal(SIGNAL, 0.2, 0.0, None, "live", POLICY), broker)
    dispatch(order_for_signal(SIGNAL, 0.2, 0.0, None, "shadow", POLICY), broker)
    dispatch(order_for_signal(SIGNAL, 0.2, 0.0, "killed", "live", POLICY), broker)
    assert broker.orders == [live] and live.routed


class RefusingBroker:
    def route(self, order: OrderIntent) -> bool:
        return False


def test_a_refused_order_is_not_routed() -> None:
    order = dispatch(order_for_signal(SIGNAL, 0.2, 0.0, None, "live", POLICY), RefusingBroker())
    assert not order.routed and order.reason.endswith("; broker refused the order")

"""Execution gate: every signal becomes an order intent, sized, blocked or routed.

Kills are enforced here too: a killed agent or class gets a blocked intent
(target 0, not routed) with the kill that blocked it, so the audit trail shows
every signal and what became of it.
"""

from __future__ import annotations

from typing import Literal, Protocol

from schemas.envelope import derived_event_id
from schemas.events import OrderIntent, SignalEmitted
from schemas.policy import Policy
from streams.core.kill_facts import PRODUCER

TradingMode = Literal["shadow", "live"]


def _intent(
    signal: SignalEmitted, target_usd: float, mode: TradingMode, routed: bool, reason: str
) -> OrderIntent:
    return OrderIntent.create(
        event_id=derived_event_id("order", signal.event_id),
        ts=signal.ts,
        producer=PRODUCER,
        signal_id=signal.event_id,
        agent=signal.agent,
        strategy_class=signal.strategy_class,
        symbol=signal.symbol,
        direction=signal.direction,
        target_usd=target_usd,
        mode=mode,
        routed=routed,
        reason=reason,
    )


def order_for_signal(
    signal: SignalEmitted,
    weight: float,
    agent_drawdown_bps: float,
    killed_reason: str | None,
    mode: TradingMode,
    policy: Policy,
) -> OrderIntent:
    """Size the order for a signal: budget x weight x signal confidence x haircut, capped.

    The confidence multiplier is not applied again: the weight already carries
    it (quality and softmax both scale by it). The haircut applies when the
    agent's drawdown, read by its size, reaches the policy's haircut level.
    `routed` is True only for an unblocked order in live mode; the order's time
    and id come from the signal, so a replay sizes it identically.
    """
    if killed_reason is not None:
        return _intent(signal, 0.0, mode, False, f"blocked: {killed_reason}")
    if weight <= 0:
        return _intent(signal, 0.0, mode, False, "blocked: allocation weight is 0")
    capital, t = policy.capital, policy.thresholds
    drawdown = abs(agent_drawdown_bps)
    haircut = t.haircut if drawdown >= t.haircut_drawdown_bps else 1.0
    raw = capital.order_risk_budget_usd * weight * signal.confidence * haircut
    target = min(raw, capital.max_position_usd)
    reason = (
        f"{capital.order_risk_budget_usd:.2f} USD x weight {weight:.4f} "
        f"x confidence {signal.confidence:.3f} x haircut {haircut:.2f} = {raw:.2f} USD"
    )
    if haircut != 1.0:
        reason += f" (agent drawdown {drawdown:.1f} bps >= {t.haircut_drawdown_bps:.1f} bps)"
    if raw > capital.max_position_usd:
        reason += f", capped at {capital.max_position_usd:.2f} USD"
    reason += "; routed to broker" if mode == "live" else "; shadow mode, not routed"
    return _intent(signal, target, mode, mode == "live", reason)


class BrokerAdapter(Protocol):
    """Where live orders go; returns whether the broker accepted the order."""

    def route(self, order: OrderIntent) -> bool: ...


class PaperBroker:
    """The default adapter: accepts every order and keeps it in memory, trades nothing."""

    def __init__(self) -> None:
        self.orders: list[OrderIntent] = []

    def route(self, order: OrderIntent) -> bool:
        self.orders.append(order)
        return True


def dispatch(order: OrderIntent, broker: BrokerAdapter) -> OrderIntent:
    """Send an order marked `routed` to the broker; a refusal turns it into an unrouted one."""
    if not order.routed or broker.route(order):
        return order
    return order.model_copy(
        update={"routed": False, "reason": f"{order.reason}; broker refused the order"}
    )

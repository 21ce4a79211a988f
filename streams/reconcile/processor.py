"""The reconcile processor as a pure step: `reconcile-input` records in, outcomes out.

Its input carries the signals and prices of the symbols hashed to the partition
(re-keyed by base asset by the intakes) and every policy change (broadcast by
the policy relay), so the thresholds it settles with come from its own input.
"""

from __future__ import annotations

from schemas.envelope import Event, derived_event_id
from schemas.events import PriceObserved, SignalEmitted, SignalReconciled, SignalUnreconcilable
from streams.core.fleet_state import FleetState, policy_at
from streams.core.processing import Routed, routed
from streams.reconcile.candles import base_asset
from streams.reconcile.rule import PRODUCER, Outcome, SymbolBook, Unreconcilable, apply_event


def outcome_event(outcome: Outcome, cause: Event) -> Event:
    """An Unreconcilable becomes a `signal.unreconcilable` fact with an id from its causes."""
    if not isinstance(outcome, Unreconcilable):
        return outcome
    return SignalUnreconcilable.create(
        event_id=derived_event_id("unreconcilable", outcome.signal_id, outcome.horizon_hours),
        ts=cause.ts,
        producer=PRODUCER,
        signal_id=outcome.signal_id,
        agent=outcome.agent,
        symbol=outcome.symbol,
        horizon_hours=outcome.horizon_hours,
        reason=str(outcome.reason),
    )


class ReconcileProcessor:
    name = "reconcile_signals"
    input_topic = "reconcile-input"
    state_model = SymbolBook

    def key_of(self, event: Event) -> str | None:
        if isinstance(event, SignalEmitted | PriceObserved):
            return base_asset(event.symbol)
        return None

    def step(
        self, facts: FleetState, state: SymbolBook | None, event: Event
    ) -> tuple[SymbolBook, list[Routed]]:
        """Settle what the event closes. Focus-horizon reconciliations also go to the agent
        processor's input, where they meet that agent's runs and signals in one order."""
        thresholds = policy_at(facts, event.ts).thresholds
        book, outcomes = apply_event(state or SymbolBook(), event, thresholds)
        events = [outcome_event(outcome, event) for outcome in outcomes]
        forwards = [
            Routed("agent-input", e.agent.encode(), e)
            for e in events
            if isinstance(e, SignalReconciled) and e.horizon_hours == thresholds.focus_horizon_hours
        ]
        return book, [*routed(events), *forwards]

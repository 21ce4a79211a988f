"""The per-agent processor as a pure step: `agent-input` records in, agent events out.

Its input carries, in one order per partition: the runs and signals of the
agents hashed to it (re-keyed by the intakes), their focus-horizon
reconciliations (sent by the reconcile processor), and every policy, kill and
allocation fact (broadcast by the relays). So a decision, a confidence update
or an order is a function of this input alone.
"""

from __future__ import annotations

from schemas.envelope import Event
from schemas.events import RunCompleted, SignalEmitted, SignalReconciled
from streams.agents.assess import AgentState, apply_agent_event
from streams.agents.execution import TradingMode
from streams.core.fleet_state import FleetState, policy_at
from streams.core.processing import Routed, routed


class AgentProcessor:
    name = "assess_agents"
    input_topic = "agent-input"
    state_model = AgentState

    def __init__(self, mode: TradingMode) -> None:
        self.mode = mode

    def key_of(self, event: Event) -> str | None:
        if isinstance(event, RunCompleted | SignalEmitted | SignalReconciled):
            return event.agent
        return None

    def step(
        self, facts: FleetState, state: AgentState | None, event: Event
    ) -> tuple[AgentState, list[Routed]]:
        """Fold the agent's event; a new focus-horizon trade reaches the fleet processor
        inside the assessment it caused."""
        assert isinstance(event, RunCompleted | SignalEmitted | SignalReconciled)
        state = state or AgentState.start(event.agent, policy_at(facts, event.ts))
        new_state, outputs = apply_agent_event(state, event, facts, self.mode)
        return new_state, routed(outputs)

"""Agent states rebuilt from the log: the same fold the live per-agent processor runs.

The key test of the design: this projection, over the same log, gives exactly
the stats and multipliers the live `agent-state` table holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from schemas.envelope import Event
from schemas.events import RunCompleted, SignalEmitted, SignalReconciled
from schemas.stats import AgentStats
from streams.agents.assess import AgentState, apply_agent_event
from streams.agents.stats import stats_at
from streams.fleet_state import FleetState, apply_fleet_event, policy_at

# What the projection reads, in broker-receipt order.
AGENT_TOPICS = ("policy", "regimes", "kills", "allocations", "runs", "signals", "reconciled")


@dataclass
class AgentProjection:
    fleet: FleetState = field(default_factory=FleetState)
    agents: dict[str, AgentState] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        self.fleet = apply_fleet_event(self.fleet, event)
        if not isinstance(event, RunCompleted | SignalEmitted | SignalReconciled):
            return
        state = self.agents.get(event.agent) or AgentState.start(
            event.agent, policy_at(self.fleet, event.ts)
        )
        self.agents[event.agent], _ = apply_agent_event(state, event, self.fleet, "shadow")

    def window_stats(self, agent: str, as_of: datetime | None = None) -> AgentStats:
        """Rolling-window stats as of `as_of` (default: the agent's newest fact time)."""
        state = self.agents[agent]
        at = as_of or state.stats.watermark
        if at is None:
            return AgentStats()
        return stats_at(state.stats, at, policy_at(self.fleet, at).thresholds.window_days)


def project_agents(events: Iterable[Event]) -> AgentProjection:
    projection = AgentProjection()
    for event in events:
        projection.apply(event)
    return projection

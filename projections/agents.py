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
from streams.agents.assess import AgentState, apply_agent_event, reported_window
from streams.agents.stats import StatsState, apply_event
from streams.core.fleet_state import FleetState, apply_fleet_event, policy_at
from streams.fleet.book import PORTFOLIO

# What the projection reads, in broker-receipt order.
AGENT_TOPICS = ("policy", "regimes", "kills", "allocations", "runs", "signals", "reconciled")


@dataclass
class AgentProjection:
    fleet: FleetState = field(default_factory=FleetState)
    agents: dict[str, AgentState] = field(default_factory=dict)
    # The same stats fold pooled per strategy class and over the whole fleet.
    classes: dict[str, StatsState] = field(default_factory=dict)
    portfolio: StatsState = field(default_factory=StatsState)

    def apply(self, event: Event) -> None:
        self.fleet = apply_fleet_event(self.fleet, event)
        if not isinstance(event, RunCompleted | SignalEmitted | SignalReconciled):
            return
        state = self.agents.get(event.agent) or AgentState.start(
            event.agent, policy_at(self.fleet, event.ts)
        )
        self.agents[event.agent], _ = apply_agent_event(state, event, self.fleet, "shadow")
        if isinstance(event, SignalEmitted):
            return
        thresholds = policy_at(self.fleet, event.ts).thresholds
        self.portfolio = apply_event(self.portfolio, event, thresholds)
        group = event.strategy_class or self.agents[event.agent].strategy_class
        if group is not None:
            self.classes[group] = apply_event(
                self.classes.get(group, StatsState()), event, thresholds
            )

    def _window(
        self, stats: StatsState, as_of: datetime | None, strategy_class: str | None = None
    ) -> AgentStats:
        return reported_window(stats, self.fleet, as_of, strategy_class) or AgentStats()

    def window_stats(self, agent: str, as_of: datetime | None = None) -> AgentStats:
        """Rolling-window stats as of `as_of` (default: the agent's newest fact time), with
        PSR/DSR against the trials of the agent's class."""
        state = self.agents[agent]
        return self._window(state.stats, as_of, state.strategy_class)

    def contribution_bps(self, agent: str) -> float | None:
        """The agent's leave-one-out contribution in the latest allocation (the fleet
        processor's figure over its window), None before any allocation names it."""
        allocation = self.fleet.allocation
        return None if allocation is None else allocation.contributions.get(agent)

    def group_stats(self, as_of: datetime | None = None) -> dict[str, AgentStats]:
        """Window stats per strategy class, and for the whole portfolio."""
        groups = {name: self._window(stats, as_of) for name, stats in sorted(self.classes.items())}
        return {**groups, PORTFOLIO: self._window(self.portfolio, as_of)}


def project_agents(events: Iterable[Event]) -> AgentProjection:
    projection = AgentProjection()
    for event in events:
        projection.apply(event)
    return projection

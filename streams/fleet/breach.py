"""Drawdown breach: while the deployed portfolio stands too far below its peak, promoted
agents are stopped.

Promoted agents carry the capital, so they are the ones that made the loss possible;
HOLD agents get no new capital from a promotion they lack. The drawdown is the current
one of what was deployed (streams.fleet.deployed): the series of trades scaled by their
agents' weights at entry, from its running peak. It is judged now, not as the worst of
the window, so once the series recovers above the line new promotions stand; the kills
already made stay on the kill list until an operator revives them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from schemas.envelope import UtcDatetime, WireModel
from schemas.events import AgentKilled, Decision
from schemas.policy import Policy
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import KillList, is_killed

# The agents a kill's reason names as the drawdown's main sources; the evidence has all.
NAMED_SOURCES = 3


class BreachEvidence(WireModel):
    """What a breach kill was judged on, carried in its `evidence`."""

    drawdown_bps: float  # the deployed series' current drawdown from its running peak
    limit_bps: float
    peak_at: UtcDatetime | None  # None: the series never rose above 0 in the window
    trough_at: UtcDatetime | None
    peak_to_trough_bps: float
    # Each agent's weighted PnL from the peak to the trough: they sum to -peak_to_trough_bps.
    attribution_bps: dict[str, float]
    # The unweighted fleet's max drawdown over the window: reported, never acted on.
    fleet_max_drawdown_bps: float

    def reason(self) -> str:
        losers = sorted((pnl, agent) for agent, pnl in self.attribution_bps.items() if pnl < 0)[
            :NAMED_SOURCES
        ]
        sources = ", ".join(f"{agent} {pnl:.1f} bps" for pnl, agent in losers) or "none"
        return (
            f"deployed portfolio drawdown {self.drawdown_bps:.1f} bps >= "
            f"{self.limit_bps:.1f} bps; peak to trough {self.peak_to_trough_bps:.1f} bps, "
            f"most from {sources}"
        )


def breach_targets(
    drawdown_bps: float,
    decisions_by_agent: Mapping[str, Decision],
    kill_list: KillList,
    policy: Policy,
    at: datetime,
) -> list[str]:
    """The agents a breach kills now, in name order: every PROMOTE agent not already
    killed, while the drawdown is at or over the limit; none below it."""
    if drawdown_bps < policy.thresholds.max_drawdown_bps:
        return []
    return [
        agent
        for agent in sorted(decisions_by_agent)
        if decisions_by_agent[agent] == Decision.PROMOTE
        and not is_killed(kill_list, agent, None, at)
    ]


def breach_kills(
    targets: list[str], evidence: BreachEvidence, at: datetime, cause_id: uuid.UUID | str
) -> list[AgentKilled]:
    """Kill each target (source `breach`) with the evidence. Ids derive from the agent and
    `cause_id`, so the same breach seen twice kills each agent once."""
    reason = evidence.reason()
    document = evidence.model_dump(mode="json")
    return [
        kill_fact(
            AgentKilled,
            target=agent,
            source="breach",
            at=at,
            causes=("breach", cause_id),
            reason=reason,
            evidence=document,
        )
        for agent in targets
    ]

"""Drawdown breach: when the portfolio falls too far, every promoted agent is stopped.

Promoted agents carry the capital, so they are the ones that made the loss
possible; HOLD agents get no new capital from a promotion they lack.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from schemas.events import AgentKilled, Decision
from schemas.policy import Policy
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import KillList, is_killed


def breach_kills(
    portfolio_max_drawdown_bps: float,
    decisions_by_agent: Mapping[str, Decision],
    kill_list: KillList,
    policy: Policy,
    at: datetime,
    cause_id: uuid.UUID | str,
) -> list[AgentKilled]:
    """Kill (source `breach`) every PROMOTE agent not already killed, once dd >= the limit.

    The drawdown is read by its size, whether the stats report it as a positive
    depth or a negative change. Ids derive from agent and `cause_id`, so the
    same breach seen twice kills each agent once.
    """
    drawdown = abs(portfolio_max_drawdown_bps)
    limit = policy.thresholds.max_drawdown_bps
    if drawdown < limit:
        return []
    return [
        kill_fact(
            AgentKilled,
            target=agent,
            source="breach",
            at=at,
            causes=("breach", cause_id),
            reason=f"portfolio max drawdown {drawdown:.1f} bps >= {limit:.1f} bps",
        )
        for agent in sorted(decisions_by_agent)
        if decisions_by_agent[agent] == Decision.PROMOTE
        and not is_killed(kill_list, agent, None, at)
    ]

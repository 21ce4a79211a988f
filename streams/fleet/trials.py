"""Trials per strategy class: the N of the deflated Sharpe ratio (SPEC section 6).

Every agent ever seen in a class counts, whether it first appeared in the fleet's input
(its first assessment) or was spawned into the class (`agent.spawned` on `lineage`), and
it keeps counting after it is killed: a class that tried twenty agents to find one good
one must clear the bar of the best of twenty. The count only grows; each growth is a
`strategy.trials` fact that the relays broadcast to the agent processors.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from schemas.envelope import derived_event_id
from schemas.events import StrategyTrials
from streams.core.kill_facts import PRODUCER


def with_member(
    members: Mapping[str, tuple[str, ...]], strategy_class: str | None, agent: str, at: datetime
) -> tuple[dict[str, tuple[str, ...]] | None, list[StrategyTrials]]:
    """The class members with `agent` added, and the fact that announces the new count;
    (None, []) when the agent is known (or has no class). The fact's id derives from the
    class and the count, so a replay announces each count once, with the same id."""
    if strategy_class is None:
        return None, []
    known = members.get(strategy_class, ())
    if agent in known:
        return None, []
    grown = tuple(sorted((*known, agent)))
    fact = StrategyTrials.create(
        event_id=derived_event_id("trials", strategy_class, str(len(grown))),
        ts=at,
        producer=PRODUCER,
        strategy_class=strategy_class,
        trials=len(grown),
    )
    return {**members, strategy_class: grown}, [fact]

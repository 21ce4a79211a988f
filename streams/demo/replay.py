"""The demo desk replayed in memory through the whole pipeline, no broker: what the
supervisor makes of this fleet under a policy, in seconds.

The desk's source events are the live demo's (same prices, same seeded agents, same
ids); runs are built with the SDK's own `Run`, and an agent the kill list stops is
refused as the SDK guard refuses it (a skipped run with the reason). Used by the test
that the demo shows a working supervisor on the default thresholds, and by anyone
who wants to see a policy's effect before publishing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from projections.pipeline import InMemoryPipeline
from schemas.envelope import Event
from schemas.events import PolicyUpdated, PriceObserved
from streams.core.kill_list import kill_reason
from streams.demo.fleet import PRODUCER, DemoAgent, Desk, Market, act, run_id_of
from streams.sdk.run_context import Run


def agent_turn(
    agent: DemoAgent, at: datetime, market: Market, refused: str | None
) -> list[Event]:
    """The events of one scheduled run, as the SDK's run lifecycle emits them."""
    run = Run(
        agent=agent.name,
        producer=PRODUCER,
        strategy_class=agent.strategy_class,
        clock=lambda: at,
        monotonic=lambda: 0.0,
        run_id=run_id_of(agent, at),
    )
    run.begin()
    if refused is not None:
        return [run.end(failed=False, skipped_reason=refused)]
    try:
        signal = act(agent, run, market)
    except RuntimeError:
        return [run.end(failed=True)]
    return [*([signal] if signal is not None else []), run.end(failed=False)]


@dataclass
class DeskReplay:
    """The source events the desk sent, and the pipeline that processed them."""

    pipeline: InMemoryPipeline = field(default_factory=InMemoryPipeline)
    sources: list[Event] = field(default_factory=list)

    def feed(self, events: list[Event]) -> None:
        self.sources += events
        self.pipeline.feed(events)


def replay_desk(prices: Iterable[PriceObserved], policy: PolicyUpdated | None) -> DeskReplay:
    """Run the desk over `prices` under `policy` (None: the shipped default)."""
    replay = DeskReplay()
    if policy is not None:
        replay.feed([policy])
    series = list(prices)
    desk = Desk([price.price for price in series])
    for price in series:
        regime = desk.observe(price)
        replay.feed([*([regime] if regime is not None else []), price])
        for agent in desk.due(price.ts):
            kills = replay.pipeline.facts["agent-input"].kills
            refused = kill_reason(kills, agent.name, agent.strategy_class, price.ts)
            replay.feed(agent_turn(agent, price.ts, desk.market(), refused))
    return replay

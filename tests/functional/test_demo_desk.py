"""What the supervisor makes of the demo desk on the default thresholds (issue 12): over its
90 days of real BTC prices it promotes, watches, kills a few agents with reasons and only
on enough evidence, pauses an agent for its LLM budget until midnight, and keeps capital
deployed most of the time. And the literal rules of old, on the same source log, wipe the
fleet out within days: the what-if that motivated the evidence minimums."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TypeVar

from projections.agents import project_agents
from projections.pipeline import InMemoryPipeline
from schemas.envelope import Event
from schemas.events import (
    AgentKilled,
    AllocationUpdated,
    Decision,
    DecisionMade,
    PolicyUpdated,
    PriceObserved,
    RunCompleted,
    StrategyKilled,
)
from streams.core.fleet_state import default_policy
from streams.demo.fleet import FLEET, desk_policy
from streams.demo.replay import DeskReplay, replay_desk
from streams.reconcile.csv_source import DEMO_CSV, price_events

WEEK = timedelta(days=7)
E = TypeVar("E", bound=Event)


@cache
def prices() -> tuple[PriceObserved, ...]:
    return tuple(price_events(DEMO_CSV, producer="metasup.demo", source="bitfinex"))


@cache
def desk() -> DeskReplay:
    return replay_desk(prices(), desk_policy(prices()[0].ts))


def emitted(pipeline: InMemoryPipeline) -> Iterator[Event]:
    return (routed.event for routed in pipeline.emitted)


def of_type(pipeline: InMemoryPipeline, kind: type[E]) -> list[E]:
    return [e for e in emitted(pipeline) if isinstance(e, kind)]


def decisions() -> list[DecisionMade]:
    return of_type(desk().pipeline, DecisionMade)


def verdict_kills(pipeline: InMemoryPipeline) -> list[AgentKilled | StrategyKilled]:
    return [
        e
        for e in emitted(pipeline)
        if isinstance(e, AgentKilled | StrategyKilled) and e.source != "budget"
    ]


def test_the_desk_changes_no_threshold_of_a_verdict() -> None:
    desk_thresholds = desk_policy(prices()[0].ts).thresholds.model_dump()
    default = default_policy().thresholds.model_dump()
    changed = {key for key in default if desk_thresholds[key] != default[key]}
    assert changed == {"daily_budget_usd"}


def test_agents_are_promoted_and_watched() -> None:
    promoted = {d.agent for d in decisions() if d.decision == Decision.PROMOTE}
    watched = {d.agent for d in decisions() if d.retirement_label == "WATCH"}
    assert len(promoted) >= 2, promoted
    assert watched, "no agent was ever labelled WATCH"


def test_a_few_kills_each_with_its_reason_and_never_before_the_evidence() -> None:
    kills = verdict_kills(desk().pipeline)
    own_verdicts = {k.target for k in kills if isinstance(k, AgentKilled) and k.source == "auto"}
    assert 1 <= len(own_verdicts) <= len(FLEET) // 2, [(k.target, k.reason) for k in kills]
    assert all(kill.reason for kill in kills)
    for made in (d for d in decisions() if d.decision == Decision.KILL):
        for reason in made.reasons:
            needed = "trades" if reason.startswith("pnl_sum") else "runs"
            assert made.stats[needed] >= 10, (made.agent, reason, made.stats[needed])


def test_the_fleet_is_not_wiped_out_in_its_first_week() -> None:
    start = prices()[0].ts
    early = [k for k in verdict_kills(desk().pipeline) if k.ts < start + WEEK]
    assert early == [], [(k.target, k.reason) for k in early]


def test_an_agent_over_its_llm_budget_is_paused_until_midnight_then_runs_again() -> None:
    pauses = [e for e in of_type(desk().pipeline, AgentKilled) if e.source == "budget"]
    assert pauses, "no agent went over the daily budget"
    pause = pauses[0]
    midnight = datetime.combine(pause.ts.date() + timedelta(days=1), datetime.min.time(), UTC)
    assert pause.until == midnight
    runs = [e for e in desk().sources if isinstance(e, RunCompleted) and e.agent == pause.target]
    during = [r for r in runs if pause.ts < r.ts < midnight]
    after = [r for r in runs if r.ts >= midnight]
    assert during and all(r.skipped_reason and "budget" in r.skipped_reason for r in during)
    assert after and after[0].skipped_reason is None


def test_capital_is_deployed_most_of_the_time() -> None:
    allocations = of_type(desk().pipeline, AllocationUpdated)
    start, end = prices()[0].ts, prices()[-1].ts
    deployed = timedelta()
    for current, following in zip(allocations, [*allocations[1:], None], strict=True):
        until = following.ts if following is not None else end
        if current.cash_weight < 0.999:
            deployed += until - current.ts
    assert deployed / (end - start) > 0.5


def test_the_old_literal_rules_kill_the_fleet_within_days_on_the_same_log() -> None:
    """What-if on one source log (the desk's, as sent under the default thresholds),
    replayed under the literal rules: no evidence minimums."""
    policy = desk_policy(prices()[0].ts)
    sources = [e for e in desk().sources if e is not policy and e.type != "policy.updated"]
    literal = policy.model_copy(
        update={
            "thresholds": policy.thresholds.model_copy(
                update={"kill_min_trades": 0, "kill_min_runs": 0, "promote_min_trades": 0}
            )
        }
    )
    start = prices()[0].ts

    def killed_in_first_week(policy_in_force: PolicyUpdated) -> set[str]:
        pipeline = InMemoryPipeline()
        pipeline.feed([policy_in_force, *sources])
        return {k.target for k in verdict_kills(pipeline) if k.ts < start + WEEK}

    assert len(killed_in_first_week(literal)) >= len(FLEET) // 2
    assert killed_in_first_week(policy) == set()


def test_metasup_stats_reports_significance_cost_per_bps_and_contribution() -> None:
    """The stats projection (`metasup stats`) over the desk's log: PSR/DSR deflated by
    the trials of the agent's class, cost per realized bps, and the contribution the
    latest allocation reported."""
    log = [*desk().sources, *emitted(desk().pipeline)]
    projection = project_agents(log)
    research = projection.window_stats("llm-research")
    assert research.psr is not None and research.dsr is not None
    assert research.trials == 4 and research.dsr < research.psr  # four llm_macro agents
    assert research.cost_per_bps_usd == research.cost_usd / research.pnl_sum_bps
    latest = of_type(desk().pipeline, AllocationUpdated)[-1]
    assert projection.contribution_bps("llm-research") == latest.contributions.get("llm-research")

"""Everything the supervisor knows about one agent, as one pure fold.

The per-agent processor folds runs, signals and focus-horizon reconciliations
of one agent into `AgentState` and returns the events that follow: confidence
updates, decision changes (with auto kills), order intents, and the assessment
sent to the fleet processor. Stats and confidence share one state so a
duplicate is recognised once (by the stats window's event ids) for both.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from pydantic import Field

from schemas.envelope import Event, WireModel, derived_event_id, to_utc
from schemas.events import (
    AgentAssessed,
    AgentKilled,
    Decision,
    RunCompleted,
    SignalEmitted,
    SignalReconciled,
)
from schemas.policy import Policy
from schemas.stats import AgentStats
from streams.agents import confidence
from streams.agents.decide import decide, decision_events
from streams.agents.execution import TradingMode, order_for_signal
from streams.agents.significance import with_significance
from streams.agents.stats import (
    StatsState,
    apply_event,
    rule_stats_at,
    stats_at,
    window_drawdown_bps,
)
from streams.core.day_window import day_of
from streams.core.fleet_state import FleetState, policy_at, trials_of, weight_of
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import KillEntry, kill_reason

PRODUCER = "metasup.agents"
# At-least-once redelivers seconds of traffic; a producer's retry comes within minutes.
SIGNAL_IDS_KEPT = 256


class AgentState(WireModel):
    agent: str
    strategy_class: str | None = None
    stats: StatsState = Field(default_factory=StatsState)
    confidence: confidence.ConfidenceState
    decision: Decision | None = None
    # The kill this processor emitted (auto, or a budget pause) that the kill list (folded
    # from `kills` on this input) does not show yet: until it does, the agent counts as
    # killed, so the decision does not flap KILL -> HOLD -> KILLED while the fact travels.
    unseen_kill: KillEntry | None = None
    # The last UTC day the daily LLM budget paused the agent: one pause a day at most.
    budget_paused_day: str | None = None
    # Assessments sent so far: their order for the fleet processor (times can tie).
    assessments: int = 0
    # Whether the last assessment sent had an error rate over the allocator's bar.
    over_error_limit: bool = False
    # The last SIGNAL_IDS_KEPT signals answered with an order: a redelivered signal must not
    # reach a live broker twice. Kept as text: a membership test among strings is native
    # code, among UUIDs a Python call per comparison.
    signal_ids: tuple[str, ...] = ()

    @classmethod
    def start(cls, agent: str, policy: Policy) -> AgentState:
        return cls(
            agent=agent, confidence=confidence.ConfidenceState.start(agent, policy.confidence)
        )


def reported_window(
    stats: StatsState,
    fleet: FleetState,
    as_of: datetime | None = None,
    strategy_class: str | None = None,
) -> AgentStats | None:
    """The full window figures a report shows, as of `as_of` (default: the newest fact),
    under the policy in force then, with PSR/DSR against the trials of `strategy_class`
    (an agent's class; none for a pooled group: one trial); None before any fact."""
    at = as_of or stats.watermark
    if at is None:
        return None
    window = stats_at(stats, at, policy_at(fleet, at).thresholds.window_days)
    return with_significance(window, trials_of(fleet, strategy_class))


def _pending_kill(state: AgentState, fleet: FleetState, at: datetime) -> KillEntry | None:
    """The agent's own kill while the kill list does not show it yet and it applies at `at`
    (a pause applies until its `until`, folded or not)."""
    unseen = state.unseen_kill
    if unseen is None or not unseen.active(at):
        return None
    if any(r.event_id == unseen.event_id for r in fleet.kills.history):
        return None
    return unseen


def _stopped_by(
    state: AgentState, fleet: FleetState, strategy_class: str | None, at: datetime
) -> str | None:
    """Why the agent may not act at `at` (a kill on the list, or its own pending kill), or
    None when it may."""
    reason = kill_reason(fleet.kills, state.agent, strategy_class, at)
    pending = _pending_kill(state, fleet, at) if reason is None else None
    return reason if pending is None else pending.describe()


def assess(
    state: AgentState, policy: Policy, fleet: FleetState, at: datetime, cause: Event
) -> tuple[AgentState, list[Event]]:
    """Decide on the current window stats; report the assessment to the fleet processor."""
    days = policy.thresholds.window_days
    # PSR and DSR come from the window's totals (O(1)), deflated by the agents tried in the
    # class: every decision reports them, and the significance gate decides on them.
    trials = trials_of(fleet, state.strategy_class)
    window = with_significance(rule_stats_at(state.stats, at, days), trials)
    kill = _stopped_by(state, fleet, state.strategy_class, at)
    outcome = decide(state.agent, window, state.confidence.mult, kill, policy)
    # A decision that changes is reported with the full window figures (tails, IC): only
    # then, since they cost a pass over the window.
    reported = (
        window
        if outcome.decision == state.decision
        else with_significance(stats_at(state.stats, at, days), trials)
    )
    events = decision_events(state.decision, outcome, reported, at, cause.event_id)
    auto_kill = next((KillEntry.of(e) for e in events if isinstance(e, AgentKilled)), None)
    unseen = auto_kill or _pending_kill(state, fleet, at)
    over_error_limit = (window.error_rate or 0.0) > policy.allocation.max_error_rate
    state = state.model_copy(update={"unseen_kill": unseen})
    # The fleet hears of every trade (inside the assessment it caused); of a run only when
    # the run changes what it decides on at once (the decision, or the error-rate bar of
    # the allocator). The rest of what runs change (cost, latency) reaches it with the
    # agent's next trade: the fleet processor's input is a single partition.
    if not (
        isinstance(cause, SignalReconciled)
        or outcome.decision != state.decision
        or over_error_limit != state.over_error_limit
    ):
        return state, events
    assessed = AgentAssessed.create(
        event_id=derived_event_id("assessed", state.agent, cause.event_id),
        ts=at,
        producer=PRODUCER,
        agent=state.agent,
        strategy_class=state.strategy_class,
        stats=window,
        mult=state.confidence.mult,
        decision=outcome.decision,
        seq=state.assessments + 1,
        trade=cause if isinstance(cause, SignalReconciled) else None,
    )
    state = state.model_copy(
        update={
            "decision": outcome.decision,
            "over_error_limit": over_error_limit,
            "assessments": state.assessments + 1,
        }
    )
    return state, [*events, assessed]


def _next_midnight(at: datetime) -> datetime:
    return datetime.combine(to_utc(at).date() + timedelta(days=1), time(), UTC)


def _budget_pause(
    state: AgentState, run: RunCompleted, policy: Policy, fleet: FleetState
) -> tuple[AgentState, list[Event]]:
    """Pause the agent until the next UTC midnight once its LLM cost on the run's UTC day
    exceeds the daily budget: once a day, while that day is not over in event time.

    Never over a kill in force: the pause would replace it on the kill list, and the
    expiry at midnight would then lift a kill that had no end. The cost is the day's
    run totals: a day that is not over lies inside any window (>= 1 day), so the
    window has not evicted any of it.
    """
    budget = policy.thresholds.daily_budget_usd
    now = state.stats.watermark or run.ts  # the newest fact time: now, in event time
    day = day_of(run.ts)
    until = _next_midnight(run.ts)
    bucket = state.stats.run_days.get(day)
    if (
        budget is None
        or bucket is None
        or bucket.totals.cost_usd <= budget
        or state.budget_paused_day == day
        or until <= now
        or _stopped_by(state, fleet, state.strategy_class, now) is not None
    ):
        return state, []
    pause = kill_fact(
        AgentKilled,
        target=state.agent,
        source="budget",
        at=run.ts,
        causes=(run.event_id,),
        reason=(
            f"LLM cost {bucket.totals.cost_usd:.2f} USD today ({day} UTC) "
            f"> daily budget {budget:.2f} USD"
        ),
        until=until,
        cause_id=run.event_id,
    )
    state = state.model_copy(update={"unseen_kill": KillEntry.of(pause), "budget_paused_day": day})
    return state, [pause]


def apply_agent_event(
    state: AgentState, event: Event, fleet: FleetState, mode: TradingMode
) -> tuple[AgentState, list[Event]]:
    """Fold one event of this agent; return the new state and the events to emit."""
    policy = policy_at(fleet, event.ts)
    if isinstance(event, SignalEmitted):
        signal_id = str(event.event_id)
        if signal_id in state.signal_ids:
            return state, []
        state = state.model_copy(
            update={
                "strategy_class": state.strategy_class or event.strategy_class,
                "signal_ids": (*state.signal_ids, signal_id)[-SIGNAL_IDS_KEPT:],
            }
        )
        drawdown_bps = window_drawdown_bps(
            state.stats,
            max(event.ts, state.stats.watermark or event.ts),
            policy.thresholds.window_days,
        )
        killed = _stopped_by(state, fleet, event.strategy_class or state.strategy_class, event.ts)
        order = order_for_signal(
            event, weight_of(fleet, state.agent), drawdown_bps, killed, mode, policy
        )
        return state, [order]
    if not isinstance(event, RunCompleted | SignalReconciled):
        return state, []
    stats = apply_event(state.stats, event, policy.thresholds)
    if stats is state.stats:
        return state, []  # a duplicate, or a horizon the stats do not use
    state = state.model_copy(
        update={
            "stats": stats,
            "strategy_class": event.strategy_class or state.strategy_class,
        }
    )
    emitted: list[Event] = []
    if isinstance(event, RunCompleted):
        state, emitted = _budget_pause(state, event, policy, fleet)
    if isinstance(event, SignalReconciled):
        updated_confidence, update = confidence.apply_reconciled(
            state.confidence, event, policy.confidence, policy.thresholds.focus_horizon_hours
        )
        state = state.model_copy(update={"confidence": updated_confidence})
        if update is not None:
            emitted.append(update)
    state, assessment = assess(state, policy, fleet, stats.watermark or event.ts, event)
    return state, emitted + assessment

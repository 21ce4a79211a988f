"""What-if: the governance rules re-run over a recorded log under another policy (SPEC 10).

Reconciliation does not depend on governance, so its recorded outcomes
(`signal.reconciled`) are taken as they are (recomputing them would add about a fifth
to each run on a 100-agent fleet, and the prices would have to be read). They are fed,
with the runs, signals, regimes, lineage, recorded policy changes and the operator's own
kill facts (outside decisions, kept as they were), in event-time order through the
same pure processors the live pipeline decides with (the agent and fleet processors,
wired by `InMemoryPipeline` without the reconcile processor: the reconciliations enter
where its outputs go). Derived kills, allocations and trials are not fed: they are
what gets decided again.

Two runs over the same inputs in the same order: the baseline under the recorded
policies, the what-if under the file's policy from `start` on (the recorded policies
before it; nothing after `end` is fed). Both get the policy in force at `start` as a
fact at `start` (the recorded one, or the file's), so with the file equal to the policy
in force they are fed the very same events. Differences are taken between these two,
so they come from the policy alone: live, a processor's input interleaves as the hops
deliver (see `projections.pipeline`), so even the baseline need not repeat every
recorded decision; the agreement line says how many it does.

What no policy changes is the source events: an agent the live kill list stopped was
refused by its SDK guard and made no trades meanwhile, and a what-if cannot invent them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from projections.pipeline import InMemoryPipeline
from projections.processors import processors
from schemas.envelope import Event, UtcDatetime, WireModel, derived_event_id
from schemas.events import (
    AgentKilled,
    AgentSpawned,
    AllocationUpdated,
    Decision,
    DecisionMade,
    KillFact,
    PolicyUpdated,
    RegimeChanged,
    RunCompleted,
    SignalEmitted,
    SignalReconciled,
    StrategyKilled,
)
from schemas.policy import Policy, PolicyChangeError, check_keys
from streams.agents.stats import TradeTotals
from streams.core.fleet_state import FleetState, apply_fleet_event, default_policy, policy_at
from streams.fleet.deployed import DeployedTrade, WeightsAt, signal_time, weights_at

# The log's topics a what-if reads: what it feeds, and what was decided to compare with.
WHATIF_TOPICS = (
    "policy",
    "regimes",
    "lineage",
    "kills",
    "runs",
    "signals",
    "reconciled",
    "decisions",
    "allocations",
)
PRODUCER = "metasup.whatif"
# Reconciliation keys: the outcomes are taken as recorded, so a change of these has no effect.
RECONCILE_KEYS = frozenset(
    {
        "thresholds.horizons_hours",
        "thresholds.max_exit_staleness_hours",
        "thresholds.max_signal_age_days",
        "thresholds.stale_exit",
    }
)
_KILL_TYPES = ("agent.killed", "agent.revived", "strategy.killed", "strategy.revived")
# Among events of one time, the order live delivery gives them: the facts in force then,
# the trades the hour's price closed (a reconciliation's time is its signal's plus the
# horizon), then the agents' turns (a signal before the run that ends it).
_RANK: dict[str, int] = {
    "policy.updated": 0,
    "regime.changed": 1,
    **dict.fromkeys(_KILL_TYPES, 2),
    "agent.spawned": 3,
    "signal.reconciled": 4,
    "signal.emitted": 5,
    "run.completed": 6,
}
# Source events and fleet facts fed as recorded (besides the operator's kill facts).
_INPUTS = (
    PolicyUpdated,
    RegimeChanged,
    AgentSpawned,
    SignalReconciled,
    SignalEmitted,
    RunCompleted,
)


class WhatIfError(ValueError):
    """A what-if that cannot run as asked; the message says what to change."""


# --- the policy file -------------------------------------------------------------------


def _without_empty_objects(document: dict[str, Any]) -> dict[str, Any]:
    """The document without its empty objects, for `check_keys`: in a change an empty
    object changes nothing and is refused, in a whole policy it is a value (no
    `class_regimes`)."""
    return {
        key: _without_empty_objects(value) if isinstance(value, dict) else value
        for key, value in document.items()
        if value != {}
    }


def policy_from_json(data: bytes) -> Policy:
    """A policy document (the form of streams/config/policy-v1.json; keys left out take
    their defaults), checked key by key (a misspelt key would otherwise be ignored) and
    within every bound."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise WhatIfError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise WhatIfError("a policy is a JSON object, like streams/config/policy-v1.json")
    try:
        check_keys(list(_without_empty_objects(document).items()))
        return Policy.model_validate(document)
    except PolicyChangeError as error:
        raise WhatIfError(str(error)) from None
    except ValidationError as errors:
        problems = [
            f"{'.'.join(str(part) for part in e['loc']) or 'policy'}: {e['msg']} "
            f"(got {orjson.dumps(e['input'], default=str).decode()})"
            for e in errors.errors()
        ]
        raise WhatIfError("invalid policy: " + "; ".join(problems)) from None


def _leaves(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            leaves.update(_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


class PolicyChange(WireModel):
    key: str
    in_force: Any = None  # None: not set
    what_if: Any = None


def policy_changes(in_force: Policy, what_if: Policy) -> list[PolicyChange]:
    """What the what-if changes, key by key (the version aside)."""
    before = _leaves(in_force.model_dump(mode="json", exclude={"version"}))
    after = _leaves(what_if.model_dump(mode="json", exclude={"version"}))
    return [
        PolicyChange(key=key, in_force=before.get(key), what_if=after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


# --- the log, split --------------------------------------------------------------------


def _weights_only(allocation: AllocationUpdated) -> AllocationUpdated:
    """What a column reads of an allocation (time, weights, cash): its capital and
    contributions hold two more entries per agent, and a year holds an allocation an hour."""
    return allocation.model_copy(update={"capital": {}, "contributions": {}})


def _order(event: Event) -> tuple[datetime, int]:
    """Event time, then `_RANK`; a stable sort keeps the log's order among the rest."""
    return event.ts, _RANK.get(event.type, len(_RANK))


@dataclass(frozen=True)
class RecordedLog:
    """A log split for what-ifs: what they feed, and what was decided."""

    # Runs, signals, reconciliations, regimes, lineage, policy changes and the operator's
    # kill facts (with the expiry revives of their timed kills), in event-time order.
    inputs: tuple[Event, ...]
    # The derived decisions, kill facts and allocations, and the operator's kill facts, in
    # event-time order.
    recorded: tuple[Event, ...]

    @property
    def start(self) -> datetime:
        if not self.inputs:
            raise WhatIfError(
                "the log holds no runs, signals or reconciliations: nothing to re-run"
            )
        return self.inputs[0].ts


def focus_horizons(policies: Iterable[Policy]) -> frozenset[int]:
    """The horizons that decide under any of `policies` or the default one: the agent
    processor passes over a trade of any other horizon."""
    return frozenset(p.thresholds.focus_horizon_hours for p in (default_policy(), *policies))


def split_log(events: Iterable[Event], horizons: Collection[int] | None = None) -> RecordedLog:
    """Keep, once each (a redelivered record is a copy), what a what-if feeds or compares;
    reconciliations only at `horizons` when given (`focus_horizons`: a large log holds
    two other horizons' worth, each event some 3 KB decoded)."""
    seen: set[uuid.UUID] = set()
    inputs: list[Event] = []
    kills: list[KillFact] = []
    recorded: list[Event] = []
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        if isinstance(event, KillFact):
            kills.append(event)
        elif isinstance(event, DecisionMade):
            recorded.append(event)
        elif isinstance(event, AllocationUpdated):
            recorded.append(_weights_only(event))
        elif isinstance(event, _INPUTS) and (
            horizons is None
            or not isinstance(event, SignalReconciled)
            or event.horizon_hours in horizons
        ):
            inputs.append(event)
    operator = {kill.event_id for kill in kills if kill.source == "operator"}
    for kill in kills:
        if kill.source == "operator" or (kill.source == "expiry" and kill.cause_id in operator):
            inputs.append(kill)
            if kill.source == "operator":
                recorded.append(kill)
        else:
            recorded.append(kill)
    return RecordedLog(tuple(sorted(inputs, key=_order)), tuple(sorted(recorded, key=_order)))


def recorded_log(read: Callable[[Sequence[str]], Iterable[Event]], policy: Policy) -> RecordedLog:
    """The log as a what-if of `policy` needs it, from `read` (the verified events of the
    topics named): the policy topic first (small), so that only reconciliations of a
    horizon that decides are kept from the rest."""
    recorded = [e for e in read(["policy"]) if isinstance(e, PolicyUpdated)]
    return split_log(read(WHATIF_TOPICS), focus_horizons([policy, *recorded]))


# --- the runs --------------------------------------------------------------------------


def _pipeline() -> InMemoryPipeline:
    """The agent and fleet processors; runs and signals go to the agent input, and so do
    the recorded reconciliations, as the reconcile processor forwards its outcomes."""
    return InMemoryPipeline(
        processors={p.input_topic: p for p in processors() if p.input_topic != "reconcile-input"},
        routes={topic: ("agent-input",) for topic in ("runs", "signals", "reconciled")},
    )


def _fork(pipeline: InMemoryPipeline) -> InMemoryPipeline:
    """A pipeline that goes on from this one's states (frozen values: shared, never changed)."""
    return InMemoryPipeline(
        processors=pipeline.processors,
        facts=dict(pipeline.facts),
        states={name: dict(states) for name, states in pipeline.states.items()},
        routes=pipeline.routes,
    )


def _policy_fact(policy: Policy, at: datetime) -> PolicyUpdated:
    """`policy` in force from `at`; its id from what it says, so the same policy at the same
    time is the same fact, and both runs are fed the same events when the policies agree."""
    document = policy.model_dump()
    return PolicyUpdated.create(
        event_id=derived_event_id(
            "whatif-policy",
            at.isoformat(),
            orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode(),
        ),
        ts=at,
        producer=PRODUCER,
        actor=PRODUCER,
        reason="the policy a what-if runs under",
        **document,
    )


RunName = Literal["baseline", "what_if"]


@dataclass(frozen=True)
class RunOutcome:
    """What one run decided (its outcomes in the order made, with the operator's facts it
    was fed), and the policy changes it ran under."""

    outcomes: tuple[Event, ...]
    policies: tuple[PolicyUpdated, ...]

    def policy_at(self, at: datetime) -> Policy:
        return policy_at(FleetState(policies=self.policies), at)


class Run:
    """One pipeline and what it decided so far."""

    def __init__(self, pipeline: InMemoryPipeline, outcomes: list[Event]) -> None:
        self.pipeline = pipeline
        self.outcomes = outcomes

    def feed(self, event: Event) -> None:
        pipeline = self.pipeline
        pipeline.feed((event,))
        for routed in pipeline.emitted:
            if isinstance(routed.event, AllocationUpdated):
                self.outcomes.append(_weights_only(routed.event))
            elif isinstance(routed.event, DecisionMade | AgentKilled | StrategyKilled):
                self.outcomes.append(routed.event)
        pipeline.emitted.clear()
        if isinstance(event, KillFact):
            self.outcomes.append(event)

    def fork(self) -> Run:
        return Run(_fork(self.pipeline), list(self.outcomes))

    def outcome(self) -> RunOutcome:
        facts = self.pipeline.facts.get("agent-input", FleetState())
        return RunOutcome(tuple(self.outcomes), facts.policies)


# --- the result ------------------------------------------------------------------------


class Milestone(WireModel):
    """When something first happened to an agent, and by which rule."""

    at: UtcDatetime
    source: str  # auto, breach, operator
    rule: str  # KILL, RETIRE, drawdown (a breach), class <name>, operator
    reason: str = ""


class AgentOutcome(WireModel):
    killed: Milestone | None = None  # the first kill with no end (its own, or its class's)
    promoted: UtcDatetime | None = None
    retired: UtcDatetime | None = None
    final_decision: Decision | None = None
    pauses: int = 0  # timed kills (a daily budget, an operator's pause)
    avg_weight: float = 0.0  # time-weighted over the period
    final_weight: float = 0.0
    deployed_pnl_bps: float = 0.0  # its trades' PnL times its weight at signal time


class Column(WireModel):
    """What one run (or the log) decided, and the portfolio it deployed over the period."""

    agents: dict[str, AgentOutcome]
    decisions: int  # decision changes
    kills: int  # kills with no end, of agents and of classes
    pauses: int  # timed kills
    allocations: int
    avg_cash: float
    final_cash: float
    deployed_pnl_bps: float
    deployed_max_drawdown_bps: float


class AgentChange(WireModel):
    """The what-if against the baseline: '', same, earlier by X, later by X, never, new."""

    killed: str
    promoted: str
    retired: str
    avg_weight: float  # what-if minus baseline
    deployed_pnl_bps: float


class Agreement(WireModel):
    """How much of what the log recorded the baseline reproduces: the same fact (same id,
    so the same decision from the same event)."""

    recorded_kills: int
    reproduced_kills: int
    baseline_kills_not_recorded: int
    recorded_promotions: int
    reproduced_promotions: int
    baseline_promotions_not_recorded: int


class WhatIfResult(WireModel):
    """The log, the baseline and the what-if side by side over the period [start, end]
    (weights and deployed PnL over the period; first verdicts over everything fed)."""

    start: UtcDatetime
    end: UtcDatetime
    fed: dict[str, int]  # input events fed, by type
    policy_changes: list[PolicyChange]
    recorded: Column
    baseline: Column
    what_if: Column
    changes: dict[str, AgentChange]
    agreement: Agreement
    notes: list[str]

    @property
    def differs(self) -> bool:
        return self.baseline != self.what_if


# --- outcomes --------------------------------------------------------------------------


def _killed(event: Event, classes: Mapping[str, str | None]) -> Iterable[tuple[str, Milestone]]:
    """The agents a kill with no end stops, and how."""
    if isinstance(event, StrategyKilled) and event.until is None:
        rule = f"class {event.target}"
        for agent, strategy_class in classes.items():
            if strategy_class == event.target:
                yield (
                    agent,
                    Milestone(at=event.ts, source=event.source, rule=rule, reason=event.reason),
                )
    elif isinstance(event, AgentKilled) and event.until is None:
        rule = {"breach": "drawdown", "operator": "operator"}.get(
            event.source, event.reason.partition(":")[0]
        )
        yield (
            event.target,
            Milestone(at=event.ts, source=event.source, rule=rule, reason=event.reason),
        )


def _allocations(events: Iterable[Event], end: datetime) -> list[AllocationUpdated]:
    return sorted(
        (e for e in events if isinstance(e, AllocationUpdated) and e.ts <= end),
        key=lambda e: e.ts,
    )


def _time_weighted(
    allocations: Sequence[AllocationUpdated], start: datetime, end: datetime
) -> tuple[dict[str, float], float]:
    """Each agent's weight, and the cash, averaged over time from `start` to `end` (all cash
    before the first allocation; the weights at `end` if the period is an instant)."""
    spells: list[tuple[float, AllocationUpdated | None]] = []  # (seconds, weights in force)
    since: datetime = start
    current: AllocationUpdated | None = None
    for allocation in allocations:  # in time order, none after `end`
        if allocation.ts > since:
            spells.append(((allocation.ts - since).total_seconds(), current))
            since = allocation.ts
        current = allocation
    spells.append(((end - since).total_seconds(), current))
    span = sum(seconds for seconds, _ in spells)
    if span <= 0:
        spells, span = [(1.0, current)], 1.0
    weights: dict[str, float] = {}
    cash = 0.0
    for seconds, in_force in spells:
        share = seconds / span
        cash += share * (1.0 if in_force is None else in_force.cash_weight)
        for agent, weight in in_force.weights.items() if in_force is not None else ():
            weights[agent] = weights.get(agent, 0.0) + share * weight
    return weights, cash


def _column(
    events: Sequence[Event],
    trades: Sequence[SignalReconciled],
    classes: Mapping[str, str | None],
    start: datetime,
    end: datetime,
) -> Column:
    """Fold one run's outcomes (in time order) and deploy its weights over the period."""
    agents: dict[str, dict[str, Any]] = {agent: {} for agent in classes}
    decisions = kills = pauses = 0
    for event in events:
        if event.ts > end:
            continue
        if isinstance(event, DecisionMade):
            decisions += 1
            outcome = agents.setdefault(event.agent, {})
            outcome["final_decision"] = event.decision
            if event.decision == Decision.PROMOTE:
                outcome.setdefault("promoted", event.ts)
            elif event.decision == Decision.RETIRE:
                outcome.setdefault("retired", event.ts)
        elif isinstance(event, AgentKilled | StrategyKilled):
            if event.until is not None:
                pauses += 1
                if isinstance(event, AgentKilled):
                    outcome = agents.setdefault(event.target, {})
                    outcome["pauses"] = outcome.get("pauses", 0) + 1
                continue
            kills += 1
            for agent, milestone in _killed(event, classes):
                agents.setdefault(agent, {}).setdefault("killed", milestone)
    allocations = _allocations(events, end)
    averages, avg_cash = _time_weighted(allocations, start, end)
    history = tuple(WeightsAt(ts=a.ts, weights=a.weights) for a in allocations)
    deployed = sorted(
        (
            DeployedTrade.of(t, weights_at(history, signal_time(t)).get(t.agent, 0.0))
            for t in trades
        ),
        key=DeployedTrade.sort_key,
    )
    by_agent: dict[str, float] = {}
    for trade in deployed:
        by_agent[trade.agent] = by_agent.get(trade.agent, 0.0) + trade.pnl_bps
    series = TradeTotals().plus(trade.pnl_bps for trade in deployed)
    final = allocations[-1] if allocations else None
    return Column(
        agents={
            agent: AgentOutcome(
                **outcome,
                avg_weight=averages.get(agent, 0.0),
                final_weight=final.weights.get(agent, 0.0) if final else 0.0,
                deployed_pnl_bps=by_agent.get(agent, 0.0),
            )
            for agent, outcome in sorted(agents.items())
        },
        decisions=decisions,
        kills=kills,
        pauses=pauses,
        allocations=len(allocations),
        avg_cash=avg_cash,
        final_cash=final.cash_weight if final else 1.0,
        deployed_pnl_bps=series.pnl_sum_bps,
        deployed_max_drawdown_bps=series.max_drawdown_bps,
    )


def _span(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
    ]
    return " ".join(part for part in parts if part) or "0m"


def change(baseline: datetime | None, what_if: datetime | None) -> str:
    """How a milestone moves from the baseline to the what-if."""
    if baseline is None:
        return "" if what_if is None else "new"
    if what_if is None:
        return "never"
    if what_if < baseline:
        return f"earlier by {_span(baseline - what_if)}"
    if what_if > baseline:
        return f"later by {_span(what_if - baseline)}"
    return "same"


def _agent_change(baseline: AgentOutcome, what_if: AgentOutcome) -> AgentChange:
    killed = change(
        baseline.killed.at if baseline.killed else None,
        what_if.killed.at if what_if.killed else None,
    )
    if (
        killed == "same"
        and baseline.killed is not None
        and what_if.killed is not None
        and (baseline.killed.source, baseline.killed.rule)
        != (what_if.killed.source, what_if.killed.rule)
    ):
        killed = "same time, other rule"  # the same rule's reason may quote other figures
    return AgentChange(
        killed=killed,
        promoted=change(baseline.promoted, what_if.promoted),
        retired=change(baseline.retired, what_if.retired),
        avg_weight=what_if.avg_weight - baseline.avg_weight,
        deployed_pnl_bps=what_if.deployed_pnl_bps - baseline.deployed_pnl_bps,
    )


def _agreement(recorded: Sequence[Event], baseline: Sequence[Event], end: datetime) -> Agreement:
    def kills(events: Iterable[Event]) -> set[uuid.UUID]:
        return {
            e.event_id
            for e in events
            if isinstance(e, AgentKilled | StrategyKilled)
            and e.source != "operator"
            and e.ts <= end
        }

    def promotions(events: Iterable[Event]) -> set[uuid.UUID]:
        return {
            e.event_id
            for e in events
            if isinstance(e, DecisionMade) and e.decision == Decision.PROMOTE and e.ts <= end
        }

    recorded_kills, baseline_kills = kills(recorded), kills(baseline)
    recorded_promotions, baseline_promotions = promotions(recorded), promotions(baseline)
    return Agreement(
        recorded_kills=len(recorded_kills),
        reproduced_kills=len(recorded_kills & baseline_kills),
        baseline_kills_not_recorded=len(baseline_kills - recorded_kills),
        recorded_promotions=len(recorded_promotions),
        reproduced_promotions=len(recorded_promotions & baseline_promotions),
        baseline_promotions_not_recorded=len(baseline_promotions - recorded_promotions),
    )


# --- the what-if -----------------------------------------------------------------------


def _classes(inputs: Iterable[Event]) -> dict[str, str | None]:
    """Every agent of the inputs and its strategy class (the first one named)."""
    classes: dict[str, str | None] = {}
    for event in inputs:
        if isinstance(event, RunCompleted | SignalEmitted | SignalReconciled):
            agent, strategy_class = event.agent, event.strategy_class
        elif isinstance(event, AgentSpawned):
            agent, strategy_class = event.child, event.strategy_class
        else:
            continue
        if classes.get(agent) is None:
            classes[agent] = strategy_class
    return dict(sorted(classes.items()))


def _focus_trades(trades: Iterable[SignalReconciled], run: RunOutcome) -> list[SignalReconciled]:
    """The trades of the horizon `run` focused on when each settled."""
    return [
        t for t in trades if t.horizon_hours == run.policy_at(t.ts).thresholds.focus_horizon_hours
    ]


def _notes(changes: Sequence[PolicyChange], fed: Sequence[Event]) -> list[str]:
    notes = []
    ignored = sorted(c.key for c in changes if c.key in RECONCILE_KEYS)
    if ignored:
        notes.append(
            "reconciliation is not re-run (its outcomes are taken as recorded): "
            f"{', '.join(ignored)} changed here but have no effect"
        )
    refused = sum(1 for e in fed if isinstance(e, RunCompleted) and e.skipped_reason)
    if refused:
        notes.append(
            f"{refused} runs were refused live (killed or paused): those agents made no "
            "trades meanwhile, under any policy"
        )
    return notes


@dataclass(frozen=True)
class Plan:
    """What the two runs are fed: the inputs up to `end` in event-time order, shared before
    `start`; from `start` on, each under its policy."""

    log: RecordedLog
    policy: Policy  # the what-if's, from `start` on
    in_force: Policy  # the recorded policy in force at `start`
    start: datetime
    end: datetime
    fed: tuple[Event, ...]
    split: int  # the first input at or after `start`

    def period(self, run: RunName) -> Iterator[Event]:
        """What `run` is fed from `start` on: its policy at `start`, then the inputs (the
        what-if's policy replaces the recorded changes)."""
        yield _policy_fact(self.policy if run == "what_if" else self.in_force, self.start)
        for event in self.fed[self.split :]:
            if not isinstance(event, PolicyUpdated) or (
                run == "baseline" and event.ts > self.start
            ):
                yield event

    def steps(self) -> tuple[int, int]:
        """Inputs fed before `start` (once, shared) and from `start` on (by each run)."""
        return self.split, len(self.fed) - self.split + 1


def plan(
    log: RecordedLog, policy: Policy, start: datetime | None = None, end: datetime | None = None
) -> Plan:
    """The what-if of `policy` over `log` from `start` (default: the start of the log) to
    `end` (default: its end), or WhatIfError saying why it cannot run."""
    start = log.start if start is None else start
    if end is not None and end <= start:
        raise WhatIfError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    fed = [e for e in log.inputs if end is None or e.ts <= end]
    if not fed or fed[-1].ts < start:
        raise WhatIfError(
            f"no events at or after --from ({start.isoformat()}); the log runs from "
            f"{log.start.isoformat()} to {log.inputs[-1].ts.isoformat()}"
        )
    horizons = {e.horizon_hours for e in fed if isinstance(e, SignalReconciled)}
    focus = policy.thresholds.focus_horizon_hours
    if horizons and focus not in horizons:
        raise WhatIfError(
            f"thresholds.focus_horizon_hours is {focus} h, but the log reconciled only "
            f"{sorted(horizons)} h: a what-if does not re-run reconciliation"
        )
    # Trades of other horizons need not travel through the pipeline.
    deciding = focus_horizons([policy, *(e for e in fed if isinstance(e, PolicyUpdated))])
    fed = [e for e in fed if not isinstance(e, SignalReconciled) or e.horizon_hours in deciding]
    recorded_policies = FleetState()
    for event in fed:
        if isinstance(event, PolicyUpdated) and event.ts <= start:
            recorded_policies = apply_fleet_event(recorded_policies, event)
    return Plan(
        log=log,
        policy=policy,
        in_force=policy_at(recorded_policies, start),
        start=start,
        end=fed[-1].ts if end is None else end,
        fed=tuple(fed),
        split=next(index for index, event in enumerate(fed) if event.ts >= start),
    )


def run_prefix(plan: Plan, progress: Callable[[int], object] | None = None) -> Run:
    """Both runs before `start`: one run, shared."""
    run = Run(_pipeline(), [])
    for event in plan.fed[: plan.split]:
        run.feed(event)
        if progress:
            progress(1)
    return run


def run_period(
    plan: Plan, shared: Run, run: RunName, progress: Callable[[int], object] | None = None
) -> RunOutcome:
    """One run from `start` on, going on from the shared run (left as it was)."""
    going = shared.fork()
    for event in plan.period(run):
        going.feed(event)
        if progress:
            progress(1)
    return going.outcome()


def compare(plan: Plan, baseline: RunOutcome, what_if: RunOutcome) -> WhatIfResult:
    """The result: both runs and the log side by side, and what the what-if changes."""
    start, end, fed = plan.start, plan.end, plan.fed
    classes = _classes(fed)
    trades = [t for t in fed if isinstance(t, SignalReconciled) and t.ts >= start]
    baseline_trades = _focus_trades(trades, baseline)
    baseline_column = _column(baseline.outcomes, baseline_trades, classes, start, end)
    what_if_column = _column(what_if.outcomes, _focus_trades(trades, what_if), classes, start, end)
    changes = policy_changes(plan.in_force, plan.policy)
    counts: dict[str, int] = {}
    for event in fed:
        counts[event.type] = counts.get(event.type, 0) + 1
    return WhatIfResult(
        start=start,
        end=end,
        fed=dict(sorted(counts.items())),
        policy_changes=changes,
        recorded=_column(plan.log.recorded, baseline_trades, classes, start, end),
        baseline=baseline_column,
        what_if=what_if_column,
        changes={
            agent: _agent_change(outcome, what_if_column.agents.get(agent, AgentOutcome()))
            for agent, outcome in baseline_column.agents.items()
        },
        agreement=_agreement(plan.log.recorded, baseline.outcomes, end),
        notes=_notes(changes, fed),
    )


def what_if(
    log: RecordedLog,
    policy: Policy,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Callable[[int], object] | None = None,
) -> WhatIfResult:
    """Re-run the rules over `log` under `policy` from `start` to `end`, beside the baseline
    under the recorded policies, one run after the other. `progress` is told of each input
    fed (`Plan.steps`: the shared ones once, the others once per run)."""
    the_plan = plan(log, policy, start, end)
    shared = run_prefix(the_plan, progress)
    return compare(
        the_plan,
        run_period(the_plan, shared, "baseline", progress),
        run_period(the_plan, shared, "what_if", progress),
    )

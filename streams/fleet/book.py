"""The fleet-level rules as one pure fold: portfolio stats, allocation, breach, classes.

A single processor (one partition of `fleet-input`) folds every agent assessment
(with the focus-horizon trade that caused it, if any) and every regime change into a
`FleetBook`, and returns the events that follow: `allocation.updated` when the
weights move (with each agent's contribution), `agent.killed` (source breach) while
the deployed portfolio's drawdown is over the limit, and `strategy.killed` when a
class meets 2 of the 4 conditions. Kill facts it emits are remembered until they come
back on its input (the kill list holds them then), so a re-evaluation before that
never emits a second copy.

Two portfolios: `portfolio` sums every focus-horizon trade unweighted (the fleet's
figures, reported, never acted on); `deployed` scales each by its agent's weight at
entry (streams.fleet.deployed), which is what the breach watches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import compress
from operator import is_not

from pydantic import Field

from schemas.envelope import Event, UtcDatetime, WireModel
from schemas.events import (
    AgentAssessed,
    AgentSpawned,
    Decision,
    KillFact,
    PolicyUpdated,
    RegimeChanged,
    SignalReconciled,
)
from schemas.policy import Policy
from streams.agents.stats import (
    StatsState,
    apply_event,
    window_cvar95_bps,
    window_drawdown_bps,
)
from streams.core.day_window import day_of, evict_days, put_day
from streams.core.fleet_state import FleetState, policy_at, regime_at
from streams.core.processing import Routed, routed
from streams.fleet.allocation import (
    AllocationResult,
    allocate,
    allocation_changed,
    allocation_event,
    with_portfolio_cvar,
)
from streams.fleet.breach import BreachEvidence, breach_kills, breach_targets
from streams.fleet.deployed import (
    DeployedDay,
    DeployedTrade,
    WeightsAt,
    attribute_drawdown,
    contributions_bps,
    drawdown_bps,
    signal_time,
    weights_at,
    weights_kept_from,
    with_deployed,
    with_weights,
)
from streams.fleet.strategy import (
    ClassDay,
    ClassTrade,
    evaluate_class,
    strategy_kill_events,
    summarise_class,
)
from streams.fleet.trials import with_member

PORTFOLIO = "portfolio"
FLEET_KEY = "fleet"


class FleetBook(WireModel):
    agents: dict[str, AgentAssessed] = Field(default_factory=dict)
    # Every focus-horizon trade, unweighted: the fleet's figures for reports.
    portfolio: StatsState = Field(default_factory=StatsState)
    # The same trades scaled by their agents' weights at entry, by ISO day of exit: the
    # portfolio as deployed, evicted with `portfolio`'s window.
    deployed: dict[str, DeployedDay] = Field(default_factory=dict)
    # The allocations this processor emitted, in time order, back to the oldest entry a
    # trade the window still accepts can need (streams.fleet.deployed.weights_kept_from).
    weights_in_force: tuple[WeightsAt, ...] = ()
    # Each class's window of trades by ISO day (streams.core.day_window).
    class_trades: dict[str, dict[str, ClassDay]] = Field(default_factory=dict)
    # The agents whose latest assessment is PROMOTE, in name order: a breach stops them.
    promoted: tuple[str, ...] = ()
    allocation: AllocationResult | None = None
    rebalanced_at: UtcDatetime | None = None  # event time of the last reallocation
    # Agents this processor has killed for a breach, by the id of the kill, until the kill
    # comes back on its input: meanwhile the kill list may not show it.
    breach_pending: dict[str, uuid.UUID] = Field(default_factory=dict)
    classes_killed: tuple[str, ...] = ()
    # Every agent ever seen per strategy class, by name: the trials of the deflated Sharpe.
    class_members: dict[str, tuple[str, ...]] = Field(default_factory=dict)


def _window_start(at: datetime, window_days: int) -> datetime | None:
    """The start of the window (start, at]; none for the lifetime (0 days)."""
    return None if window_days == 0 else at - timedelta(days=window_days)


def _add_class_trade(
    book: FleetBook, rec: SignalReconciled, policy: Policy, fleet: FleetState
) -> FleetBook:
    """The book with the trade in its class's window (one day touched, whole days evicted),
    under the regime in force when it was signalled."""
    if rec.strategy_class is None:
        return book
    trade = ClassTrade(
        signal_id=rec.signal_id,
        exit_ts=rec.exit_ts,
        pnl_bps=rec.realized_pnl_bps,
        regime=rec.regime or regime_at(fleet, signal_time(rec)),
    )
    days = book.class_trades.get(rec.strategy_class, {})
    day = day_of(trade.exit_ts)
    bucket = days.get(day)
    days = put_day(days, day, ClassDay.of((trade,)) if bucket is None else bucket.with_fact(trade))
    start = _window_start(rec.exit_ts, policy.thresholds.window_days)
    if start is not None:
        days = evict_days(days, start)
    return book.model_copy(update={"class_trades": {**book.class_trades, rec.strategy_class: days}})


@dataclass
class _Members:
    """What `_ClassFigures` remembers of one class: each member's assessment (by name, in
    name order) and, for those that count, its multiplier and cost."""

    names: tuple[str, ...]
    assessed: list[AgentAssessed | None]
    counts: list[bool]
    mults: list[float]
    costs: list[float]


class _ClassFigures:
    """The multipliers and the summed cost of a class's members, as judging the class reads
    them, remembered by the identity of each member's assessment.

    A trade changes one agent's assessment, yet its class is judged on all of its members
    (250 per class in a fleet of 1,000), and reading each one's figures (a cold object
    apiece) was most of what judging cost, per trade. Assessments are frozen: one that is
    the same object has the same figures, so only the members whose assessment changed are
    read again. The cost is summed in the same order over the same floats, so to the same
    bits. Holding the assessments (not ids) makes an identity test safe; a second book in
    the process only makes a rebuild.
    """

    def __init__(self) -> None:
        self._by_class: dict[str, _Members] = {}

    def of(
        self,
        strategy_class: str,
        names: tuple[str, ...],
        agents: Mapping[str, AgentAssessed],
    ) -> tuple[dict[str, float], float]:
        """The multipliers by name (in name order) and the summed cost of the class's members
        that count: assessed, and still in the class (spawned agents not yet assessed have
        nothing to add)."""
        current = list(map(agents.get, names))
        known = self._by_class.get(strategy_class)
        if known is None or known.names != names:
            known = _Members(names, [None] * len(names), [False] * len(names), [], [])
            known.mults = [0.0] * len(names)
            known.costs = [0.0] * len(names)
            changed: Iterable[int] = range(len(names))
            self._by_class[strategy_class] = known
        else:
            changed = list(compress(range(len(names)), map(is_not, current, known.assessed)))
        for index in changed:
            assessed = current[index]
            known.assessed[index] = assessed
            counts = assessed is not None and assessed.strategy_class == strategy_class
            known.counts[index] = counts
            if assessed is not None and counts:
                known.mults[index] = assessed.mult
                known.costs[index] = assessed.stats.cost_usd
        mults = dict(compress(zip(names, known.mults, strict=True), known.counts))
        return mults, sum(compress(known.costs, known.counts))


_CLASS_FIGURES = _ClassFigures()


def _judge_class(
    book: FleetBook,
    strategy_class: str,
    policy: Policy,
    fleet: FleetState,
    at: datetime,
    cause: Event,
) -> tuple[FleetBook, list[Event]]:
    if strategy_class in book.classes_killed:
        return book, []
    mults, cost_usd = _CLASS_FIGURES.of(
        strategy_class, book.class_members.get(strategy_class, ()), book.agents
    )
    inputs = summarise_class(
        strategy_class,
        book.class_trades.get(strategy_class, {}),
        mults,
        cost_usd,
        at,
        policy,
        policy.class_regimes.get(strategy_class, ()),
    )
    kills = strategy_kill_events(evaluate_class(inputs, policy), fleet.kills, at, cause.event_id)
    if kills:
        book = book.model_copy(update={"classes_killed": (*book.classes_killed, strategy_class)})
    return book, list(kills)


def _newest(book: FleetBook, at: datetime) -> datetime:
    """Where the fleet's windows end: at the newest exit the book holds, if later than `at`
    (a trade that arrives after later ones, another symbol's prices lagging, does not hide
    them)."""
    return max(at, book.portfolio.watermark or at)


def deployed_drawdown_bps(book: FleetBook, at: datetime, window_days: int) -> float:
    """The deployed portfolio's current drawdown from its running peak over the window
    ending at `at` (0: lifetime): what the breach judges."""
    return drawdown_bps(book.deployed, _window_start(at, window_days), at)


def contribution_bps(book: FleetBook, at: datetime, window_days: int) -> dict[str, float]:
    """Each agent's leave-one-out contribution over the window ending at `at` (0: lifetime):
    the deployed portfolio's PnL minus that of the same portfolio with the agent's weight
    left in cash, which is the agent's weighted PnL. Exact for `at` at or after the newest
    exit booked (earlier windows may lack evicted trades)."""
    return contributions_bps(book.deployed, _window_start(at, window_days), at)


def _check_breach(
    book: FleetBook, policy: Policy, fleet: FleetState, at: datetime, cause: Event
) -> tuple[FleetBook, list[Event]]:
    days = policy.thresholds.window_days
    newest = _newest(book, at)
    drawdown = deployed_drawdown_bps(book, newest, days)
    decisions = {
        name: Decision.PROMOTE for name in book.promoted if name not in book.breach_pending
    }
    targets = breach_targets(drawdown, decisions, fleet.kills, policy, at)
    if not targets:
        return book, []
    attribution = attribute_drawdown(book.deployed, _window_start(newest, days), newest)
    evidence = BreachEvidence(
        drawdown_bps=drawdown,
        limit_bps=policy.thresholds.max_drawdown_bps,
        peak_at=attribution.peak_at,
        trough_at=attribution.trough_at,
        peak_to_trough_bps=attribution.peak_to_trough_bps,
        attribution_bps=attribution.by_agent_bps,
        fleet_max_drawdown_bps=window_drawdown_bps(book.portfolio, newest, days),
    )
    kills = breach_kills(targets, evidence, at, cause.event_id)
    pending = {**book.breach_pending, **{kill.target: kill.event_id for kill in kills}}
    return book.model_copy(update={"breach_pending": pending}), list(kills)


def _reallocate(
    book: FleetBook, policy: Policy, fleet: FleetState, at: datetime, cause: Event
) -> tuple[FleetBook, list[Event]]:
    last = book.rebalanced_at
    book = book.model_copy(update={"rebalanced_at": at if last is None else max(last, at)})
    weighed = allocate(
        {name: a.stats for name, a in book.agents.items()},
        {name: a.mult for name, a in book.agents.items()},
        {name: a.decision for name, a in book.agents.items()},
        fleet.kills,
        {name: a.strategy_class for name, a in book.agents.items()},
        regime_at(fleet, at),
        policy,
        at,
    )
    if not allocation_changed(book.allocation, weighed):
        return book, []
    # Capital at risk needs the portfolio CVaR, a tail over the whole window, and the report
    # the contributions: computed only for an allocation that is emitted.
    days = policy.thresholds.window_days
    result = with_portfolio_cvar(weighed, window_cvar95_bps(book.portfolio, at, days), policy)
    history = with_weights(
        book.weights_in_force,
        at,
        result.weights,
        weights_kept_from(_horizon(book, policy), policy.thresholds.focus_horizon_hours),
    )
    contributions = contribution_bps(book, _newest(book, at), days)
    return book.model_copy(update={"allocation": result, "weights_in_force": history}), [
        allocation_event(result, at, cause.event_id, contributions)
    ]


def _horizon(book: FleetBook, policy: Policy) -> datetime | None:
    """The portfolio window's horizon: trades exiting at or before it are no longer booked."""
    watermark = book.portfolio.watermark
    return None if watermark is None else _window_start(watermark, policy.thresholds.window_days)


def _book_trade(
    book: FleetBook, trade: SignalReconciled, fleet: FleetState
) -> tuple[FleetBook, list[Event]]:
    """Add a focus-horizon trade to both portfolios and its class; judge breach and class."""
    policy = policy_at(fleet, trade.ts)
    portfolio = apply_event(book.portfolio, trade, policy.thresholds)
    if portfolio is book.portfolio:
        return book, []  # duplicate, late, or not the focus horizon
    book = book.model_copy(update={"portfolio": portfolio})
    weight = weights_at(book.weights_in_force, signal_time(trade)).get(trade.agent, 0.0)
    deployed = with_deployed(book.deployed, DeployedTrade.of(trade, weight), _horizon(book, policy))
    book = _add_class_trade(book.model_copy(update={"deployed": deployed}), trade, policy, fleet)
    at = trade.ts
    book, kills = _check_breach(book, policy, fleet, at, trade)
    if trade.strategy_class is None:
        return book, list(kills)
    book, class_kills = _judge_class(book, trade.strategy_class, policy, fleet, at, trade)
    return book, [*kills, *class_kills]


def apply_fleet_input(
    book: FleetBook, event: Event, fleet: FleetState
) -> tuple[FleetBook, list[Event]]:
    """Fold one fleet input; return the new book and the events to emit."""
    policy = policy_at(fleet, event.ts)
    at = event.ts
    emitted: list[Event] = []
    urgent = False
    if isinstance(event, AgentSpawned):
        return _with_trial(book, event.strategy_class, event.child, at)
    if isinstance(event, AgentAssessed):
        known = book.agents.get(event.agent)
        if known is not None and known.seq >= event.seq:
            return book, []  # an older or repeated assessment
        urgent = known is None or known.decision != event.decision
        promoted = _promoted(book.promoted, event)
        book = book.model_copy(
            update={"agents": {**book.agents, event.agent: event}, "promoted": promoted}
        )
        book, emitted = _with_trial(book, event.strategy_class, event.agent, at)
        # After the assessment it caused, so a breach the trade deepens judges the fresh
        # decisions.
        if event.trade is not None:
            book, booked = _book_trade(book, event.trade, fleet)
            emitted += booked
        elif event.agent in promoted and (known is None or known.decision != Decision.PROMOTE):
            # Promoted by a run: a breach in force stops it now, not at its next trade.
            book, kills = _check_breach(book, policy, fleet, at, event)
            emitted += kills
    elif isinstance(event, RegimeChanged | PolicyUpdated | KillFact):
        urgent = True  # `fleet` already holds the change
        if isinstance(event, KillFact) and event.target in book.breach_pending:
            book = _kill_returned(book, event)
    else:
        return book, []
    if not (urgent or _rebalance_due(book, policy, at)):
        return book, emitted
    book, allocation = _reallocate(book, policy, fleet, at, event)
    return book, emitted + allocation


def _kill_returned(book: FleetBook, fact: KillFact) -> FleetBook:
    """Forget a breach kill once it is back on the input: the kill list now holds it."""
    if book.breach_pending.get(fact.target) != fact.event_id:
        return book
    pending = {name: kill for name, kill in book.breach_pending.items() if name != fact.target}
    return book.model_copy(update={"breach_pending": pending})


def _with_trial(
    book: FleetBook, strategy_class: str | None, agent: str, at: datetime
) -> tuple[FleetBook, list[Event]]:
    members, facts = with_member(book.class_members, strategy_class, agent, at)
    if members is None:
        return book, []
    return book.model_copy(update={"class_members": members}), list(facts)


def _promoted(promoted: tuple[str, ...], assessed: AgentAssessed) -> tuple[str, ...]:
    """The promoted agents after `assessed`: kept as the assessments arrive, so a breach
    looks at them, not at every agent of the fleet."""
    now = assessed.decision == Decision.PROMOTE
    if (assessed.agent in promoted) == now:
        return promoted
    if now:
        return tuple(sorted((*promoted, assessed.agent)))
    return tuple(name for name in promoted if name != assessed.agent)


def _rebalance_due(book: FleetBook, policy: Policy, at: datetime) -> bool:
    """Whether the cadence (`Allocation.rebalance_minutes` of event time) has come round."""
    last = book.rebalanced_at
    return last is None or at >= last + timedelta(minutes=policy.allocation.rebalance_minutes)


class FleetProcessor:
    """The fleet processor as a pure step over `fleet-input` (one partition, one order):
    focus-horizon trades and assessments from the agent processors, and every regime,
    policy and kill fact from the relays."""

    name = "supervise_fleet"
    input_topic = "fleet-input"
    state_model = FleetBook

    def key_of(self, event: Event) -> str | None:
        return FLEET_KEY

    def step(
        self, facts: FleetState, state: FleetBook | None, event: Event
    ) -> tuple[FleetBook, list[Routed]]:
        book, events = apply_fleet_input(state or FleetBook(), event, facts)
        return book, routed(events)
